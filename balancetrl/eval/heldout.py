"""Held-out evaluation of a function-calling dataset: per item, the model's teacher-forced L_c and L_f on the
reference turns and the Answer Check of its own greedy answer.

- Items: the records `balancetrl check` reads (`balancetrl.data.formats.load_records`), normalised by
  `balancetrl.data.checks.check_record`; a record that check rejects is skipped and reported with its reason.
- L_c / L_f: the record tokenized exactly as training tokenizes it (`balancetrl.data.training.to_training_row`, then
  `balancetrl.segments.tokenize_with_segments`): C = supervised tokens in a CoT span, F = every other supervised
  token (calls, text answers, end of turn), NLL from `balancetrl.eval.teacher_forced` (float64 log-softmax).
  Sums and counts per item, so a summary can weight by tokens or by items.
- Answer Check: the model answers the record's last assistant turn (the conversation before it as the prompt,
  greedy, through the same chat template); the answer is parsed and checked against the turn's reference by
  `balancetrl.data.answers.check_generated`, the check HDR's rule gate applies to a regenerated answer. The reference
  is the record's `reference` for that turn, or, where the record has none, the calls (or text answer) the record
  itself gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..cot import DEFAULT_COT
from ..data.answers import check_generated
from ..data.calls import from_tool_calls
from ..data.checks import check_record
from ..data.formats import load_records
from ..data.training import to_training_row
from ..generation import TransformersGeneration
from ..segments import COT_MASK, SampleError, SegmentSpec, tokenize_with_segments
from .teacher_forced import next_token_log_probs


@dataclass
class HeldOutItem:
    id: str
    line: int
    record: dict  # normalised by check_record
    check: str  # check_record's outcome: "base" or "hard"
    turn: int  # index in record["messages"] of the assistant turn answered
    reference: list | None
    reference_source: str  # "reference" (the record's field) or "record" (the turn's own calls / text)


@dataclass
class SegmentNLL:
    n_cot: int
    n_call: int
    nll_cot_sum: float
    nll_call_sum: float


def _item_id(data: Any, line: int) -> str:
    value = data.get("id") if isinstance(data, dict) else None
    return str(value) if value not in (None, "") else f"line-{line}"


def _turn_reference(record: dict, turn: int) -> tuple[list | None, str]:
    n = sum(m.get("role") == "assistant" for m in record["messages"][:turn])
    references = record.get("reference")
    if isinstance(references, list) and n < len(references) and references[n] is not None:
        return references[n], "reference"
    calls = record["messages"][turn].get("tool_calls")
    return (from_tool_calls(calls) if calls else []), "record"


def load_items(
    source, *, format: str = "auto", answers=None, tags=None, mapping=None, fix: bool = False,
    require_cot: bool = True, cot: tuple[str, str] = DEFAULT_COT,
) -> tuple[list[HeldOutItem], list[dict]]:
    """The evaluable records of `source` and the skipped ones (`{"id", "line", "reason", "message"}`)."""
    items, skipped = [], []
    for row in load_records(source, format=format, answers=answers, tags=tags, cot=cot, mapping=mapping):
        if row.error:
            skipped.append({"id": _item_id(row.data, row.line), "line": row.line, "reason": row.error,
                            "message": row.message})
            continue
        outcome = check_record(row.data, fix=fix, require_cot=require_cot, cot_start=cot[0], cot_end=cot[1])
        item_id = _item_id(row.data, row.line)
        if outcome.outcome == "rejected":
            skipped.append({"id": item_id, "line": row.line, "reason": outcome.reason, "message": outcome.message})
            continue
        record = outcome.record
        turn = max(i for i, m in enumerate(record["messages"]) if m.get("role") == "assistant")
        reference, source_kind = _turn_reference(record, turn)
        items.append(HeldOutItem(item_id, row.line, record, outcome.outcome, turn, reference, source_kind))
    return items, skipped


def segment_tokens(item: HeldOutItem, tokenizer, chat_template: str, spec: SegmentSpec) -> dict[str, list[int]]:
    """`input_ids`, `labels`, `cot_mask` of the item, exactly as the trainer tokenizes the record."""
    try:
        return tokenize_with_segments(to_training_row(item.record), tokenizer, chat_template, spec)
    except SampleError as e:
        raise SampleError(item.line, f"record {item.id!r}: {e.reason}", "held-out") from None


def segment_nll(model, rows: list[dict[str, list[int]]], batch_size: int = 4) -> list[SegmentNLL]:
    """Per tokenized row, the summed NLL and the count of its CoT tokens and of its other supervised tokens.

    Token `t` is scored from the logits at `t - 1` (as the trainer's shifted labels do), so a supervised first token
    (never the case with a chat template: the prompt comes first) would not count.
    """
    out = []
    log_probs = next_token_log_probs(model, [r["input_ids"] for r in rows], batch_size)
    for row, lp in zip(rows, log_probs, strict=True):
        targets = torch.tensor(row["input_ids"][1:], dtype=torch.long)
        supervised = torch.tensor(row["labels"][1:]) != -100
        cot = torch.tensor(row[COT_MASK][1:], dtype=torch.bool)
        nll = -lp.gather(1, targets[:, None]).squeeze(1)
        c, f = supervised & cot, supervised & ~cot
        out.append(SegmentNLL(int(c.sum()), int(f.sum()), float(nll[c].sum()), float(nll[f].sum())))
    return out


def answer_outputs(model, tokenizer, items: list[HeldOutItem], chat_template: str, *, batch_size: int = 8,
                   max_new_tokens: int = 512, progress: str | None = None) -> list[str]:
    """The model's greedy answer to each item's last assistant turn, rendered as training renders the record."""
    engine = TransformersGeneration(model, tokenizer, batch_size=batch_size, chat_template=chat_template,
                                    progress=progress)
    rows = [to_training_row(item.record) for item in items]
    texts = engine.generate([r["messages"][: item.turn] for r, item in zip(rows, items)],
                            [item.record.get("tools") or None for item in items],
                            num_generations=1, temperature=0.0, max_new_tokens=max_new_tokens)
    return [t[0] for t in texts]


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None


def item_row(item: HeldOutItem, nll: SegmentNLL, output: str, require_cot: bool, cot: tuple[str, str]) -> dict:
    """One line of items.jsonl: the item's token counts, NLL sums and means, and its Answer Check outcome."""
    answer = check_generated(output, item.reference, item.record.get("tools") or [], require_cot, cot)
    return {
        "id": item.id, "line": item.line, "check": item.check, "turn": item.turn, **asdict(nll),
        "nll_cot_mean": _mean(nll.nll_cot_sum, nll.n_cot), "nll_call_mean": _mean(nll.nll_call_sum, nll.n_call),
        "answer_ok": answer.verdict == "passed",
        "answer_reason": None if answer.verdict == "passed" else answer.verdict,
        "reference_source": item.reference_source, "output": output,
    }


def _segment_summary(rows: list[dict], part: str) -> dict:
    n = sum(r[f"n_{part}"] for r in rows)
    means = [r[f"nll_{part}_mean"] for r in rows if r[f"nll_{part}_mean"] is not None]
    return {"token_weighted": _mean(sum(r[f"nll_{part}_sum"] for r in rows), n), "item_mean": _mean(sum(means),
            len(means)), "tokens": n, "items": len(means)}


def summarize(rows: list[dict], skipped: list[dict]) -> dict:
    """L_c and L_f token-weighted (Σ NLL / Σ tokens) and item-mean (mean of per-item means, over items that have
    such tokens), Answer Check accuracy with the failure reasons, and the skipped records' reasons."""
    passed = sum(r["answer_ok"] for r in rows)
    return {
        "items": len(rows),
        "L_c": _segment_summary(rows, "cot"),
        "L_f": _segment_summary(rows, "call"),
        "answer_check": {"accuracy": _mean(passed, len(rows)), "passed": passed, "total": len(rows),
                         "reasons": dict(Counter(r["answer_reason"] for r in rows if not r["answer_ok"]))},
        "skipped": {"count": len(skipped), "reasons": dict(Counter(s["reason"] for s in skipped))},
    }


def evaluate_items(model, tokenizer, items: list[HeldOutItem], *, chat_template: str | None = None,
                   spec: SegmentSpec | None = None, require_cot: bool = True, batch_size: int = 4,
                   max_new_tokens: int = 512, progress: str | None = None) -> list[dict]:
    """items.jsonl rows of `items` (teacher-forced L_c / L_f, then the greedy answer and its Answer Check)."""
    spec = spec or SegmentSpec()
    template = chat_template or tokenizer.chat_template
    tokens = [segment_tokens(item, tokenizer, template, spec) for item in items]  # fails before any model time
    nlls = segment_nll(model, tokens, batch_size)
    outputs = answer_outputs(model, tokenizer, items, template, batch_size=batch_size,
                             max_new_tokens=max_new_tokens, progress=progress)
    cot = (spec.cot_start, spec.cot_end)
    return [item_row(item, nll, out, require_cot, cot) for item, nll, out in zip(items, nlls, outputs)]
