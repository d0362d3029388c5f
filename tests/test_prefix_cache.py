"""Prefix reuse of the transformers backend: a conversation's KV cache kept across its steps gives the same greedy
texts as prefilling every prompt in full, and prefills fewer tokens."""

import json

import pytest
import torch

from balancetrl.generation import TransformersGeneration, render_prompts
from balancetrl.generation.prefix_cache import PrefixCache, _Kept
from conftest import build_tiny_model
from tests.fixtures.conversations import TIME_TOOL, WEATHER_TOOL

QUESTIONS = ["Is it raining in Rome?", "Time in Lima?", "Weather in Oslo in celsius and the time in Tokyo, please.",
             "What is the weather in Paris?"]


@pytest.fixture(scope="module")
def model(tokenizer):
    # initializer_range 0.1: outputs that depend on the prompt (at 0.02 a random model says much the same to all)
    return build_tiny_model(tokenizer, initializer_range=0.1)


def _conversations(engine, tokenizer, steps: int = 4, join_at: int = 2) -> tuple[list[str], list[dict]]:
    """Multi-step conversations through `engine.complete`, as multi-turn evaluation drives them: each step's output
    re-rendered by the chat template (as a tool call with its reasoning, or as plain content) and followed by a tool
    result or a user turn, so the next prompt's ids differ from the generated ones after the previous prompt. The last
    conversation joins at step `join_at`: a batch mixes rows with and without a kept cache. Returns every step's texts
    and, per step, the prompt lengths and the prefix-cache hits of that step."""
    conversations = [[{"role": "user", "content": q}] for q in QUESTIONS]
    texts, log = [], []
    for step in range(steps):
        live = [c for i, c in enumerate(conversations) if i < len(QUESTIONS) - 1 or step >= join_at]
        ids = render_prompts(tokenizer, live, [[WEATHER_TOOL, TIME_TOOL]] * len(live))
        hits = engine.prefix_cache()["hits"]
        outputs = engine.complete(ids, max_new_tokens=12)
        log.append({"lengths": [len(i) for i in ids], "hits": engine.prefix_cache()["hits"] - hits,
                    "live": [conversations.index(c) for c in live]})
        for k, (conversation, row) in enumerate(zip(live, outputs)):
            text = row[0].text
            texts.append(text)
            if (step + k) % 2:
                conversation += [{"role": "assistant", "content": text}, {"role": "user", "content": "And now?"}]
            else:
                call = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
                conversation += [{"role": "assistant", "reasoning_content": text, "content": "", "tool_calls": [call]},
                                 {"role": "tool", "name": "get_weather", "content": json.dumps({"rain": step})}]
    return texts, log


@pytest.mark.parametrize("batch_size", [1, 3])
def test_prefix_reuse_gives_the_same_greedy_texts_and_prefills_fewer_tokens(tokenizer, model, batch_size):
    off = TransformersGeneration(model, tokenizer, batch_size=batch_size, prefix_caching=False)
    on = TransformersGeneration(model, tokenizer, batch_size=batch_size, prefix_caching=True,
                                prefix_cache_size=len(QUESTIONS))
    texts_off, log_off = _conversations(off, tokenizer)
    texts_on, log_on = _conversations(on, tokenizer)

    assert texts_on == texts_off
    assert len(set(texts_off)) > len(QUESTIONS)  # the outputs depend on the conversation
    assert [s["lengths"] for s in log_on] == [s["lengths"] for s in log_off]  # the same conversations
    counts_off, counts_on = off.prefix_cache(), on.prefix_cache()
    queries = sum(sum(s["lengths"]) for s in log_off)
    assert counts_off == {"enabled": False, "queries": queries, "hits": 0, "hit_rate": 0.0}
    assert counts_on["enabled"] is True and counts_on["queries"] == queries
    assert counts_on["hit_rate"] == counts_on["hits"] / queries
    prefilled = counts_on["queries"] - counts_on["hits"]
    assert prefilled < 0.6 * queries, (prefilled, queries)
    if batch_size == 1:
        # a batch of one reuses at least the conversation's whole previous prompt: the template renders the
        # conversation so far unchanged, only the re-rendered assistant turn may differ from the generated ids
        for before, after in zip(log_on, log_on[1:]):
            previous = dict(zip(before["live"], before["lengths"]))
            assert after["hits"] >= sum(previous.get(i, 0) for i in after["live"])


def test_prefix_reuse_stacks_each_rows_kept_cache_at_its_padded_columns():
    """Rows are left-padded to the batch width as without reuse; all rows start computing at the column set by the
    row with most new tokens, each row's kept KV sits right-aligned before it, and its padding is zeros."""
    cache = PrefixCache(capacity=3)

    def kept_layers(ids, base):  # one layer, one head, head_dim 1: the value is base + position
        keys = (base + torch.arange(len(ids), dtype=torch.float32)).view(1, 1, -1, 1)
        return [(keys, -keys)]

    a_ids, b_ids = [1, 2, 3, 4, 5, 6], [1, 2, 9, 9]

    a = _Kept(torch.tensor(a_ids), 4, kept_layers(a_ids, 100.0))
    b = _Kept(torch.tensor(b_ids), 4, kept_layers(b_ids, 200.0))
    cache.kept = [a, b]
    batch = [[1, 2, 3, 4, 5, 7, 8], [1, 2, 9, 9, 9], [1, 2, 3, 3]]
    # matches: row 0 ↔ a (5 tokens), row 1 ↔ b (4: all but its last prompt token, always computed), row 2 ↔ a (3)
    past, matches = cache.past(batch)
    assert [(m[0] is a, m[1]) for m in matches] == [(True, 5), (False, 4), (True, 3)] and matches[1][0] is b
    # new tokens per row: 2, 1, 1 -> every row computes the last 2 columns of width 7; 5 columns come from the cache
    keys = past.layers[0].keys[:, 0, :, 0]
    assert keys.tolist() == [[100, 101, 102, 103, 104], [0, 0, 200, 201, 202], [0, 0, 0, 100, 101]]
    assert torch.equal(past.layers[0].values, -past.layers[0].keys)
    assert cache.counts() == {"enabled": True, "queries": 16, "hits": 5 + 3 + 2, "hit_rate": 10 / 16}

    # after generate: the batch cache holds width 7 + 2 fed completion tokens (3 generated, the last never fed)
    from transformers.cache_utils import DynamicCache

    batch_keys = torch.arange(3 * 9, dtype=torch.float32).view(3, 1, 9, 1)
    completions = [[50, 51, 52], [60, 0, 0], [70, 71, 72]]  # row 1 stopped at its first token (id 60)
    cache.keep(batch, 7, DynamicCache([(batch_keys, batch_keys + 0.5)]), completions, [3, 1, 3], matches)
    # a and b were continued (a row matched each one's whole prompt), so both give way; capacity 3 keeps the 3 rows
    assert [k.ids.tolist() for k in cache.kept] == [[1, 2, 3, 4, 5, 7, 8, 50, 51], [1, 2, 9, 9, 9, 60],
                                                   [1, 2, 3, 3, 70, 71]]
    assert [k.prompt_length for k in cache.kept] == [7, 5, 4]
    assert cache.kept[0].layers[0][0][0, 0, :, 0].tolist() == list(range(0, 9))  # columns 0..8 of row 0
    assert cache.kept[1].layers[0][0][0, 0, :, 0].tolist() == list(range(9 + 2, 9 + 8))  # columns 2..7 of row 1
    assert cache.kept[2].layers[0][0][0, 0, :, 0].tolist() == list(range(18 + 3, 18 + 9))  # columns 3..8 of row 2
    assert torch.equal(cache.kept[2].layers[0][1], cache.kept[2].layers[0][0] + 0.5)

    # another conversation sharing only a prefix reuses it and leaves it kept
    shared = PrefixCache(capacity=3)
    shared.kept = [_Kept(torch.tensor(a_ids), 4, kept_layers(a_ids, 100.0))]
    past, matches = shared.past([[1, 2, 8, 8]])
    assert past.layers[0].keys[0, 0, :, 0].tolist() == [100, 101] and matches[0][1] == 2
    shared.keep([[1, 2, 8, 8]], 4, DynamicCache([(torch.zeros(1, 1, 5, 1),) * 2]), [[5, 6]], [2], matches)
    assert [k.ids.tolist() for k in shared.kept] == [a_ids, [1, 2, 8, 8, 5]]


def test_prefix_reuse_skips_what_it_cannot_reuse_exactly(tokenizer, model):
    """Several samples per prompt (sampling) are generated without lookup; a model whose generate builds no plain
    full-attention cache (here a sliding window) gets a warning and no reuse, and the same texts."""
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:2]]
    engine = TransformersGeneration(model, tokenizer, batch_size=2, prefix_caching=True)
    engine.generate(prompts, [None, None], num_generations=2, temperature=1.0, max_new_tokens=4, seed=0)
    engine.generate(prompts, [None, None], num_generations=2, temperature=1.0, max_new_tokens=4, seed=0)
    counts = engine.prefix_cache()
    assert counts["hits"] == 0 and counts["queries"] > 0 and engine._prefix.kept == []

    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    sliding = MistralForCausalLM(MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, sliding_window=16, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, initializer_range=0.1,
    ))
    ids = render_prompts(tokenizer, prompts, [None, None])
    plain = TransformersGeneration(sliding, tokenizer, batch_size=1).complete(ids + ids, max_new_tokens=6)
    engine = TransformersGeneration(sliding, tokenizer, batch_size=1, prefix_caching=True)
    with pytest.warns(UserWarning, match="prefix reuse needs full-attention DynamicLayer caches"):
        reused = engine.complete(ids + ids, max_new_tokens=6)
    assert [r[0].text for r in reused] == [r[0].text for r in plain]
    assert engine.prefix_cache()["hits"] == 0 and engine.prefix_cache()["enabled"] is True

    # a wrapped generate that returns the ids alone (no cache): the same, with its own reason
    class IdsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.generation_config = inner, inner.generation_config

        def generate(self, **kwargs):
            kwargs.pop("return_dict_in_generate", None)
            return self.inner.generate(**kwargs)

    plain = TransformersGeneration(model, tokenizer, batch_size=1).complete(ids + ids, max_new_tokens=6)
    engine = TransformersGeneration(IdsOnly(model), tokenizer, batch_size=1, prefix_caching=True)
    with pytest.warns(UserWarning, match="this model's generate returned no cache: generating without reuse"):
        reused = engine.complete(ids + ids, max_new_tokens=6)
    assert [r[0].text for r in reused] == [r[0].text for r in plain] and engine.prefix_cache()["hits"] == 0
