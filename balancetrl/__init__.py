"""balancetrl: BalanceSFT (SSB loss + HDR loop) for Hugging Face TRL."""

import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise; these machines are offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
