"""Token statistics of function-calling data: the paper's Table 1 and the implied plain-SFT weight α.

Per assistant turn (multi-turn conversations are split into turns, as in paper App. A.1):

- CoT tokens: the reasoning text (`reasoning_content`, or the text between the CoT markers of raw content),
- call tokens: the call block rendered as `<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>` (one
  block per call, newline-joined), or the plain content of a text answer.

α = |C| / (|C| + |F|) is the share of CoT tokens: plain SFT weights the CoT loss by α (README, "How it works": SSB).
Turns whose text does not parse are counted as `skipped_turns`, never guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..cot import DEFAULT_COT
from .calls import CallParseError, render_tool_call_block
from .quality import normalise_assistant


@dataclass
class Summary:
    n: int
    total: int
    mean: float
    median: float
    p90: float


@dataclass
class TokenStats:
    records: int = 0
    turns: int = 0
    skipped_turns: int = 0
    cot: list[int] = field(default_factory=list)
    call: list[int] = field(default_factory=list)

    @property
    def alpha(self) -> float:
        c, f = sum(self.cot), sum(self.call)
        return c / (c + f) if c + f else float("nan")

    def as_dict(self) -> dict:
        return {
            "records": self.records, "turns": self.turns, "skipped_turns": self.skipped_turns,
            "cot": summarize(self.cot).__dict__, "call": summarize(self.call).__dict__, "alpha": self.alpha,
        }


def _quantile(sorted_values: list[int], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), so the median of [1, 2] is 1.5."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: list[int]) -> Summary:
    s = sorted(values)
    total = sum(s)
    return Summary(len(s), total, total / len(s) if s else float("nan"), _quantile(s, 0.5), _quantile(s, 0.9))


def turn_texts(record: dict, cot_start: str = DEFAULT_COT[0], cot_end: str = DEFAULT_COT[1]):
    """Yield `(cot_text | None, result_text)` per assistant turn; raises `CallParseError` on unparsable turns."""
    for m in record.get("messages") or []:
        if not isinstance(m, dict) or m.get("role") != "assistant":
            continue
        new, _, _ = normalise_assistant(m, cot_start, cot_end)
        reasoning = new.get("reasoning_content") or None
        if new.get("tool_calls"):
            result = render_tool_call_block([c["function"] for c in new["tool_calls"]])
            if new.get("content"):
                result = new["content"] + "\n" + result
        else:
            result = new.get("content") or ""
        yield reasoning, result


def token_stats(
    records: Iterable[dict],
    tokenizer,
    cot_start: str = DEFAULT_COT[0],
    cot_end: str = DEFAULT_COT[1],
    batch_size: int = 512,
) -> TokenStats:
    """Count CoT and call tokens of every assistant turn with `tokenizer` (no special tokens added).

    Texts are tokenized in batches: a fast tokenizer then encodes them in parallel in Rust.
    """
    stats = TokenStats()
    cot_buf: list[str] = []
    call_buf: list[str] = []

    def flush(buf: list[str], out: list[int]) -> None:
        if buf:
            out.extend(len(ids) for ids in tokenizer(buf, add_special_tokens=False)["input_ids"])
            buf.clear()

    for record in records:
        stats.records += 1
        try:
            turns = list(turn_texts(record, cot_start, cot_end))
        except (CallParseError, TypeError, AttributeError, KeyError):
            stats.skipped_turns += sum(1 for m in record.get("messages") or [] if isinstance(m, dict)
                                       and m.get("role") == "assistant") if isinstance(record, dict) else 1
            continue
        for cot, result in turns:
            stats.turns += 1
            if cot is not None:
                cot_buf.append(cot)
            call_buf.append(result)
        if len(call_buf) >= batch_size:
            flush(cot_buf, stats.cot)
            flush(call_buf, stats.call)
    flush(cot_buf, stats.cot)
    flush(call_buf, stats.call)
    return stats


def format_table(stats: TokenStats, name: str = "dataset") -> str:
    """Markdown table in the layout of the paper's Table 1, plus p90, counts and α."""
    c, f = summarize(stats.cot), summarize(stats.call)
    lines = [
        "| Dataset | CoT mean | CoT median | CoT p90 | Call mean | Call median | Call p90 |",
        "|---|---|---|---|---|---|---|",
        f"| {name} | {c.mean:.2f} | {c.median:.2f} | {c.p90:.2f} | {f.mean:.2f} | {f.median:.2f} | {f.p90:.2f} |",
        "",
        (f"records {stats.records}, assistant turns {stats.turns} ({c.n} with CoT), skipped turns "
         f"{stats.skipped_turns}; tokens |C| = {c.total}, |F| = {f.total}"),
        f"alpha = |C| / (|C| + |F|) = {stats.alpha:.4f}  (plain SFT's weight on the CoT loss; SSB starts at 0.7)",
    ]
    return "\n".join(lines)
