"""Which distributed engine really trains: read off the prepared trainer (not off the config that asked for one),
and the requests the stack would silently run as something else, refused before the first step.

accelerate decides the engine from its config, the environment and the hardware, and does not always say when it
departs from the config: given `use_cpu` (or no GPU), an FSDP config runs as plain DDP (`MULTI_CPU`) or as unrelated
single processes (`NO`). `engine_report` names what runs — DeepSpeed's ZeRO stage as its engine reports it, FSDP2
from the parameters' type — and where λ's parameter group sits in the optimizer the engine steps.
"""

from __future__ import annotations

import os

SSB_PARAM_GROUP = "balancetrl_ssb_lambda"  # the name of λ's optimizer parameter group


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def refuse_silent_downgrade(accelerator) -> None:
    """Raise when the launch config asked for FSDP or DeepSpeed and accelerate set up something else."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if _env_flag("ACCELERATE_USE_FSDP") and kind != DistributedType.FSDP:
        raise ValueError(
            f"the accelerate config asks for FSDP, but accelerate set this run up as {kind.value} on "
            f"{accelerator.device.type} ({accelerator.num_processes} process(es)): its FSDP plugin needs GPUs, and with "
            "`use_cpu` it trains plain DDP (or independent processes) under the FSDP name. On CPU ranks, FSDP2 runs "
            "through transformers' own sharded loading: launch with `--accelerate_config multi_cpu` and set "
            "`model_fsdp_size: <processes>` in the recipe. Or use `zero3_cpu` (DeepSpeed ZeRO-3) or `multi_cpu` (DDP)"
        )
    if _env_flag("ACCELERATE_USE_DEEPSPEED") and kind != DistributedType.DEEPSPEED:
        raise ValueError(
            f"the accelerate config asks for DeepSpeed, but accelerate set this run up as {kind.value}: check that "
            "deepspeed is installed (`pip install deepspeed`) and that the config's use_cpu matches the recipe's"
        )


def lambda_group(trainer) -> dict | None:
    """λ's parameter group in the optimizer the engine steps (DeepSpeed's ZeRO optimizer flattens parameters but
    keeps each group's settings, so the group is found by its name there)."""
    weight = getattr(trainer, "_ssb_weight", None)
    if weight is None or trainer.optimizer is None:
        return None
    wrapped = trainer.model_wrapped
    stepped = getattr(wrapped, "optimizer", None) if hasattr(wrapped, "zero_optimization_stage") else None
    if stepped is None:
        stepped = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's AcceleratedOptimizer
    for group in stepped.param_groups:
        if group.get("name") == SSB_PARAM_GROUP or any(p is weight.phi for p in group["params"]):
            return {"optimizer": type(stepped).__name__, "lr": group.get("initial_lr", group["lr"]),
                    "weight_decay": group.get("weight_decay", 0.0)}
    return {"optimizer": type(stepped).__name__, "lr": None, "weight_decay": None}  # φ is not stepped: said, not hidden


def engine_name(trainer) -> str:
    from accelerate.utils import DistributedType

    kind = trainer.accelerator.distributed_type
    if kind == DistributedType.DEEPSPEED:
        return f"deepspeed-zero{trainer.model_wrapped.zero_optimization_stage()}"
    if getattr(trainer.model, "is_distributed_loading_by_transformers", False):
        return "fsdp2-transformers"  # sharded by from_pretrained(distributed_config=...), Trainer wraps nothing
    if kind == DistributedType.FSDP:
        return f"fsdp{getattr(trainer.accelerator.state.fsdp_plugin, 'fsdp_version', 1)}"
    if trainer.accelerator.num_processes > 1:
        return "ddp"
    return "single-process"


def engine_report(trainer) -> dict:
    """What trains this run, as the libraries report it once the model is prepared."""
    accelerator, wrapped = trainer.accelerator, trainer.model_wrapped
    report = {
        "engine": engine_name(trainer),
        "distributed_type": accelerator.distributed_type.value,
        "processes": accelerator.num_processes,
        "device": accelerator.device.type,
        "backend": accelerator.state.backend,
        "model_wrapper": type(wrapped).__name__,
    }
    if hasattr(wrapped, "zero_optimization_stage"):
        import deepspeed
        from deepspeed.accelerator import get_accelerator

        report["deepspeed"] = {"version": deepspeed.__version__, "zero_stage": wrapped.zero_optimization_stage(),
                               "accelerator": get_accelerator().device_name(),
                               "comm_backend": get_accelerator().communication_backend_name()}
    from torch.distributed.tensor import DTensor

    params = list(trainer.model.parameters())
    report["sharded_parameters"] = sum(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in params)
    report["parameters"] = len(params)
    report["lambda_group"] = lambda_group(trainer)
    return report


def format_engine(report: dict) -> str:
    group = report.get("lambda_group")
    lam = "" if group is None else (f"; λ's group in {group['optimizer']}: lr {group['lr']}, weight decay "
                                    f"{group['weight_decay']}")
    return (f"engine: {report['engine']} ({report['distributed_type']}, {report['processes']} process(es) on "
            f"{report['device']}, backend {report['backend']}, model in {report['model_wrapper']}, "
            f"{report['sharded_parameters']}/{report['parameters']} parameters sharded){lam}")
