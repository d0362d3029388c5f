"""The private transformers/TRL surface balancetrl builds on, in one place, checked before training starts.

`BalanceSFTTrainer` overrides or calls methods that transformers' `Trainer` and TRL's `SFTTrainer` do not promise
to keep: underscore names, and `set_initial_training_values`, whose 7-tuple the HDR epoch plan rewrites. A release
that renames, reorders or adds a parameter would otherwise break the HDR epoch plan or λ's checkpointing in the
middle of a run, or silently. `check_private_api` compares each method's parameters with the ones tested here and
refuses, naming the method and the tested versions. setup.cfg bounds the three packages at the tested versions and
constraints.txt pins the whole tested set; this check is for an environment that got around both.

Also relied upon (attributes, not checked here because they exist only on instances): `SFTTrainer._tokenizer`,
`SFTTrainer._tp_size` (TP degree the logged token counts are divided by), `SFTTrainer.aux_loss_enabled` (the MoE
router loss term), `Trainer._signature_columns`, `PreTrainedModel._keys_to_ignore_on_save`. TRL's private CLI helper
`_subtract_subsequence` is vendored (balancetrl/vendor/trl_cli.py) rather than imported.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

# The versions the test suite ran against (setup.cfg's upper bounds, constraints.txt's pins).
TESTED_VERSIONS = {"transformers": "5.23.0", "trl": "1.16.0", "accelerate": "1.15.0"}


@dataclass(frozen=True)
class PrivateMethod:
    name: str  # looked up on trl.SFTTrainer, i.e. what `super()` reaches from BalanceSFTTrainer
    params: tuple[str, ...]  # the parameter names after `self`, in order
    used_by: str  # where balancetrl overrides or calls it, and what for


PRIVATE_API: tuple[PrivateMethod, ...] = (
    PrivateMethod("set_initial_training_values", ("args", "dataloader"),
                  "hdr/epochs.py overrides it: the HDR epoch plan's max_steps and epoch count"),
    PrivateMethod("_init_training_state",
                  ("max_steps", "num_update_steps_per_epoch", "num_train_epochs", "resume_from_checkpoint", "trial"),
                  "hdr/epochs.py overrides it: resuming inside an HDR epoch"),
    PrivateMethod("_run_epoch",
                  ("model", "epoch", "train_dataloader", "steps_in_epoch", "num_update_steps_per_epoch", "trial",
                   "ignore_keys_for_eval", "start_time", "resume_from_checkpoint", "epochs_trained",
                   "steps_trained_in_current_epoch"),
                  "hdr/epochs.py overrides it: each HDR epoch's own step count"),
    PrivateMethod("_save_checkpoint", ("model", "trial"), "trainer.py overrides it: λ saved in every checkpoint"),
    PrivateMethod("_load_from_checkpoint", ("resume_from_checkpoint", "model"),
                  "trainer.py overrides it: λ restored on resume"),
    PrivateMethod("_get_output_dir", ("trial",), "trainer.py calls it: the checkpoint folder λ is written to"),
    PrivateMethod("_set_signature_columns_if_needed", (),
                  "trainer.py overrides it: cot_mask survives the removal of unused columns"),
    PrivateMethod("get_batch_samples", ("epoch_iterator", "num_batches", "device"),
                  "trainer.py overrides it: |C| and |F| counted over the whole optimizer step"),
    PrivateMethod("_prepare_dataset",
                  ("dataset", "processing_class", "args", "packing", "formatting_func", "dataset_name"),
                  "trainer.py overrides it (tokenization with segment masks) and calls it in prepare_records (HDR)"),
)


class IncompatibleVersionError(RuntimeError):
    """A private transformers/TRL method balancetrl builds on changed its signature."""


def installed_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _params(function) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(function).parameters if p != "self")


def check_private_api(trainer_class=None) -> None:
    """Raise `IncompatibleVersionError` naming the first private method whose parameters differ from the tested ones.

    `trainer_class` is the class `super()` reaches (TRL's `SFTTrainer` by default).
    """
    if trainer_class is None:
        from trl import SFTTrainer as trainer_class
    tested = ", ".join(f"{name} {v}" for name, v in TESTED_VERSIONS.items())
    found = ", ".join(f"{name} {installed_version(name)}" for name in TESTED_VERSIONS)
    for method in PRIVATE_API:
        function = getattr(trainer_class, method.name, None)
        owner = f"{function.__module__}.{function.__qualname__}" if function is not None else method.name
        if function is None:
            problem = "no longer exists"
        elif _params(function) != method.params:
            problem = f"now takes ({', '.join(_params(function))}), tested with ({', '.join(method.params)})"
        else:
            continue
        raise IncompatibleVersionError(
            f"{owner} {problem}; {method.used_by}. balancetrl is tested with {tested} (installed: {found}): "
            "install the tested set with `pip install -c constraints.txt -e .` from a balancetrl checkout, or "
            f"`pip install {' '.join(f'{n}=={v}' for n, v in TESTED_VERSIONS.items())}`."
        )
