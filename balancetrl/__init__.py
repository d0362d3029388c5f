"""balancetrl: BalanceSFT (SSB loss + HDR loop) for Hugging Face TRL."""

import os
from importlib import import_module

# LiteLLM fetches its model cost map from the network at import unless told otherwise; these machines are offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

# Lazy (PEP 562): `balancetrl check` and the data tools should not pay for importing trl/transformers.
_EXPORTS = {
    "BalanceSFTConfig": ".trainer.balance_sft_config",
    "BalanceSFTTrainer": ".trainer.balance_sft_trainer",
    "HDRCallback": ".hdr.callback",
    "HDRConfig": ".hdr.hdr_config",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'balancetrl' has no attribute {name!r}")
