"""Held-out L_c / L_f with the Answer Check (`balancetrl.eval.heldout`) and forgetting (`balancetrl.eval.forgetting`):
hand-built cases with known answers, and `balancetrl eval --dataset / --forgetting` end to end on a tiny model."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch

from balancetrl.eval import forgetting as fg
from balancetrl.eval import heldout
from balancetrl.segments import COT_MASK, SegmentSpec, tokenize_with_segments
from conftest import TRAINING_TEMPLATE, as_dataset, build_tiny_model, make_conversations


def _write_records(path, conversations, extra=()):
    with open(path, "w") as f:
        for i, conv in enumerate(conversations):
            f.write(json.dumps({"id": f"r{i}", **conv}) + "\n")
        for row in extra:
            f.write(json.dumps(row) + "\n")
    return path


def _training_counts(tokenizer):
    """(n_cot, n_call) per conversation from the trainer's own tokenization of the training dataset rows."""
    counts = []
    for row in as_dataset(make_conversations()):
        seg = tokenize_with_segments(row, tokenizer, TRAINING_TEMPLATE, SegmentSpec())
        n_sup = sum(label != -100 for label in seg["labels"])
        counts.append((sum(seg[COT_MASK]), n_sup - sum(seg[COT_MASK])))
    return counts


@pytest.fixture
def items(tmp_path):
    loaded, skipped = heldout.load_items(_write_records(tmp_path / "d.jsonl", make_conversations()),
                                         require_cot=False)
    assert skipped == []
    return loaded


class CallOracle(torch.nn.Module):
    """Puts all mass on the next token wherever that token is a supervised non-CoT (call) token of one of `rows`,
    and a uniform distribution everywhere else."""

    def __init__(self, rows, vocab_size):
        super().__init__()
        self.rows, self.vocab_size = rows, vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask):
        logits = torch.zeros(*input_ids.shape, self.vocab_size)
        for b in range(input_ids.shape[0]):
            ids = input_ids[b, : int(attention_mask[b].sum())].tolist()
            row = next(r for r in self.rows if r["input_ids"] == ids)
            for t in range(len(ids) - 1):
                if row["labels"][t + 1] != -100 and not row[COT_MASK][t + 1]:
                    logits[b, t, ids[t + 1]] = 1e4
        return SimpleNamespace(logits=logits)


def test_a_model_with_all_mass_on_the_call_tokens_has_call_nll_zero(tokenizer, items):
    rows = [heldout.segment_tokens(item, tokenizer, TRAINING_TEMPLATE, SegmentSpec()) for item in items]
    vocab = len(tokenizer)
    out = heldout.segment_nll(CallOracle(rows, vocab), rows, batch_size=3)  # a padded batch, then one more
    assert [o.nll_call_sum for o in out] == [0.0] * 4
    # uniform over the vocabulary on CoT tokens: ln V each
    for o in out:
        assert o.nll_cot_sum == pytest.approx(o.n_cot * math.log(vocab), rel=1e-12)
    assert [o.n_cot for o in out][3] == 0  # the record without CoT


def test_counts_equal_the_training_masks_and_nll_matches_an_explicit_log_softmax(tokenizer, items):
    model = build_tiny_model(tokenizer, seed=1)
    rows = [heldout.segment_tokens(item, tokenizer, TRAINING_TEMPLATE, SegmentSpec()) for item in items]
    batched = heldout.segment_nll(model, rows, batch_size=4)  # right-padded batch of 4 lengths
    assert [(o.n_cot, o.n_call) for o in batched] == _training_counts(tokenizer)
    for row, o in zip(rows, batched):
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
        nll = -lp[torch.arange(len(row["input_ids"]) - 1), ids[0, 1:]]
        cot = torch.tensor(row[COT_MASK][1:], dtype=torch.bool)
        sup = torch.tensor(row["labels"][1:]) != -100
        assert o.nll_cot_sum == pytest.approx(float(nll[sup & cot].sum()), rel=1e-5)
        assert o.nll_call_sum == pytest.approx(float(nll[sup & ~cot].sum()), rel=1e-5)


def test_item_rows_carry_the_answer_check_outcome(items):
    nll = heldout.SegmentNLL(n_cot=4, n_call=2, nll_cot_sum=2.0, nll_call_sum=3.0)
    paris = items[0]
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    cases = {
        f"<think>Weather.</think>\n{call}": (True, None),
        f"<think>Weather.</think>\n{call.replace('get_weather', 'get_time')}": (False, "wrong_function"),
        call: (False, "no_cot"),
        "<think>Weather.</think>\nIt is sunny.": (False, "expected_call"),
        '<think>x</think>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>':
            (False, "wrong_value"),
    }
    for output, (ok, reason) in cases.items():
        row = heldout.item_row(paris, nll, output, require_cot=True, cot=("<think>", "</think>"))
        assert (row["answer_ok"], row["answer_reason"]) == (ok, reason), output
    assert (row["id"], row["nll_cot_mean"], row["nll_call_mean"], row["reference_source"]) == ("r0", 0.5, 1.5,
                                                                                                "record")
    rows = [dict(row, answer_ok=True, answer_reason=None), row,
            dict(row, n_cot=0, nll_cot_sum=0.0, nll_cot_mean=None, nll_call_sum=5.0, nll_call_mean=2.5)]
    s = heldout.summarize(rows, [{"reason": "no_assistant_turn"}])
    assert s["L_c"] == {"token_weighted": 0.5, "item_mean": 0.5, "tokens": 8, "items": 2}
    assert s["L_f"] == {"token_weighted": 11.0 / 6, "item_mean": (1.5 + 1.5 + 2.5) / 3, "tokens": 6, "items": 3}
    assert s["answer_check"] == {"accuracy": 1 / 3, "passed": 1, "total": 3, "reasons": {"wrong_value": 2}}
    assert s["skipped"] == {"count": 1, "reasons": {"no_assistant_turn": 1}}


def test_the_reference_field_wins_over_the_records_own_calls(tmp_path):
    conv = make_conversations()[0]
    record = {"id": "h", **conv, "reference": [[{"name": "get_weather", "arguments": {"city": "Lyon"}}]]}
    loaded, _ = heldout.load_items(_write_records(tmp_path / "h.jsonl", [], [record]))
    assert (loaded[0].check, loaded[0].reference_source) == ("hard", "reference")
    assert loaded[0].reference == [{"name": "get_weather", "arguments": {"city": "Lyon"}}]


def test_kl_by_hand_on_two_tokens():
    lp_b = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.5, 0.5]], dtype=torch.float64))
    lp_t = torch.log(torch.tensor([[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]], dtype=torch.float64))
    m = fg.answer_measures(lp_b, lp_t, answer=[1, 0], prompt_len=2)  # rows 1 and 2 predict the answer
    kl_1 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert m["kl_sum"] == pytest.approx(kl_1, rel=1e-12) and m["kl_max"] == pytest.approx(kl_1, rel=1e-12)
    assert m["kl_mean"] == pytest.approx(kl_1 / 2, rel=1e-12)
    assert m["base_nll_sum"] == pytest.approx(2 * math.log(2), rel=1e-12)
    assert m["tuned_nll_sum"] == pytest.approx(math.log(1 / 0.75) + math.log(2), rel=1e-12)


PROMPTS = [[{"role": "user", "content": "What is the weather in Paris?"}],
           [{"role": "user", "content": "the time in a city please"}]]


def test_kl_of_a_model_with_itself_is_zero(tokenizer):
    model = build_tiny_model(tokenizer, seed=2)
    rows = fg.forgetting(model, model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2)
    assert torch.is_grad_enabled()  # the two interleaved scoring passes left grad mode as they found it
    assert [r["kl_sum"] for r in rows] == [0.0, 0.0]
    assert [r["tuned_nll_sum"] for r in rows] == [r["base_nll_sum"] for r in rows]
    assert all(r["answer_tokens"] >= 1 for r in rows)
    s = fg.summarize(rows)
    assert s["kl"] == {"token_weighted": 0.0, "prompt_mean": 0.0} and s["prompts"] == 2


def test_kl_of_a_perturbed_model_matches_a_hand_computation(tokenizer):
    from balancetrl.generation import render_prompts

    base = build_tiny_model(tokenizer, seed=3, initializer_range=0.2)
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        tuned.lm_head.weight.add_(0.05 * torch.randn(tuned.lm_head.weight.shape, generator=torch.Generator().manual_seed(0)))
    rows = fg.forgetting(base, tuned, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1)
    for prompt, row in zip(render_prompts(tokenizer, PROMPTS), rows):
        answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
        answer += [tokenizer.eos_token_id] * (row["answer_tokens"] - len(answer))  # the stop token, if reached
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            lb = torch.log_softmax(base(input_ids=ids).logits[0].double(), dim=-1)
            lt = torch.log_softmax(tuned(input_ids=ids).logits[0].double(), dim=-1)
        at = slice(len(prompt) - 1, len(prompt) - 1 + len(answer))
        kl = (lb[at].exp() * (lb[at] - lt[at])).sum(-1)
        nll_t = -lt[at].gather(1, torch.tensor(answer)[:, None]).sum()
        assert row["kl_sum"] > 0
        assert row["kl_sum"] == pytest.approx(float(kl.sum()), rel=1e-9)
        assert row["kl_max"] == pytest.approx(float(kl.max()), rel=1e-9)
        assert row["tuned_nll_sum"] == pytest.approx(float(nll_t), rel=1e-9)


def test_base_answers_generated_once_score_every_tuned_model_as_forgetting_does(tokenizer):
    # the mechanism experiment generates the base answers once and scores each trained unit against them
    base, other = build_tiny_model(tokenizer, seed=3), build_tiny_model(tokenizer, seed=4)
    answers = fg.base_answers(base, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2)
    for tuned in (base, other):
        assert fg.score_answers(base, tuned, answers, batch_size=2) == fg.forgetting(
            base, tuned, tokenizer, PROMPTS, max_new_tokens=6, batch_size=2)
    assert [r["kl_sum"] for r in fg.score_answers(base, base, answers)] == [0.0, 0.0]
    assert all(r["kl_sum"] > 0 for r in fg.score_answers(base, other, answers))


def test_irrelevance_prompts_are_bfcl_user_questions_without_tools():
    prompts = fg.irrelevance_prompts(3)
    assert [p["id"] for p in prompts] == ["irrelevance_0", "irrelevance_1", "irrelevance_2"]
    assert prompts[0]["messages"] == [{"role": "user", "content": "Calculate the area of a triangle given the base is "
                                                               "10 meters and height is 5 meters."}]


def _tiny_model_dir(tmp_path, tokenizer):
    model_dir = tmp_path / "tiny"
    build_tiny_model(tokenizer, seed=4).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def test_cli_dataset_end_to_end(tmp_path, tokenizer):
    from balancetrl.cli import main

    data = _write_records(tmp_path / "held_out.jsonl", make_conversations()[:3],
                          [{"id": "no-answer", "messages": [{"role": "user", "content": "hi"}], "tools": []}])
    out = tmp_path / "out"
    assert main(["eval", "--model", str(_tiny_model_dir(tmp_path, tokenizer)), "--dataset", str(data),
                 "--output-dir", str(out), "--max-new-tokens", "4", "--batch-size", "2", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "heldout" / "items.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    assert [(r["n_cot"], r["n_call"]) for r in rows] == _training_counts(tokenizer)[:3]
    assert set(rows[0]) == {"id", "line", "check", "turn", "n_cot", "n_call", "nll_cot_sum", "nll_call_sum",
                            "nll_cot_mean", "nll_call_mean", "answer_ok", "answer_reason", "reference_source",
                            "output"}
    for r in rows:
        assert r["nll_cot_mean"] == pytest.approx(r["nll_cot_sum"] / r["n_cot"], rel=1e-12)
        assert r["answer_ok"] == (r["answer_reason"] is None)
    summary = json.loads((out / "heldout" / "summary.json").read_text())
    assert summary["items"] == 3 and summary["skipped"] == {"count": 1, "reasons": {"no_assistant_turn": 1}}
    assert summary["skipped_records"][0]["id"] == "no-answer" and summary["skipped_records"][0]["line"] == 4
    assert summary["L_f"]["token_weighted"] == pytest.approx(
        sum(r["nll_call_sum"] for r in rows) / sum(r["n_call"] for r in rows), rel=1e-12)
    assert summary["answer_check"]["total"] == 3
    assert summary["answer_check"]["passed"] == sum(r["answer_ok"] for r in rows)
    assert not (out / "results.json").exists()  # no BFCL run without --categories


@pytest.mark.slow
def test_cli_forgetting_of_a_model_against_itself(tmp_path, tokenizer):
    from balancetrl.cli import main

    model_dir = _tiny_model_dir(tmp_path, tokenizer)
    out = tmp_path / "out"
    assert main(["eval", "--model", str(model_dir), "--base-model", str(model_dir), "--forgetting",
                 "--forgetting-limit", "2", "--forgetting-max-new-tokens", "4", "--output-dir", str(out),
                 "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "forgetting" / "prompts.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["irrelevance_0", "irrelevance_1"] and [r["kl_sum"] for r in rows] == [0.0, 0.0]
    summary = json.loads((out / "forgetting" / "summary.json").read_text())
    assert summary["prompt_set"] == "bfcl:irrelevance" and summary["kl"]["token_weighted"] == 0.0


def test_cli_refuses_forgetting_without_a_base_model():
    from balancetrl.cli import main

    with pytest.raises(SystemExit, match="--forgetting and --base-model go together"):
        main(["eval", "--model", "x", "--forgetting"])
