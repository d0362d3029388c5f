"""The training core: `BalanceSFTTrainer` (TRL's `SFTTrainer` with the SSB loss), its config `BalanceSFTConfig`, and
the SSB loss itself (`loss.py`). Imported from here or from `balancetrl` (both lazily: the data tools do not pay for
importing TRL)."""

from importlib import import_module

_EXPORTS = {"BalanceSFTConfig": ".balance_sft_config", "BalanceSFTTrainer": ".balance_sft_trainer"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'balancetrl.trainer.balance_sft_trainer' has no attribute {name!r}")
