"""balancetrl: BalanceSFT (SSB loss + HDR loop) for Hugging Face TRL."""

import os

# LiteLLM fetches its model cost map from the network at import unless told otherwise; these machines are offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from .config import BalanceSFTConfig  # noqa: E402
from .trainer import BalanceSFTTrainer  # noqa: E402

__version__ = "0.1.0"
__all__ = ["BalanceSFTConfig", "BalanceSFTTrainer"]
