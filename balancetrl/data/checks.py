"""`check_record`: the Base Quality Check, then the Answer Check (paper §3.3; reason codes in docs/data.md).

`check_record` sends every canonical record to exactly one outcome:

- `rejected`: fails the Base Quality Check (`balancetrl.data.quality`: unusable, no query, bad tool schemas, no
  assistant turn, CoT missing or unclosed, call block that does not parse) — `reason` says which;
- `hard`: usable, but the produced calls fail the Answer Check (`balancetrl.data.answers`) against the reference
  (wrong function, missing or unknown parameter, wrong value, format defect) — the HDR loop's hard set;
- `base`: passes both.

Every failure has a stable code (`balancetrl.data.reasons.REASONS`) and a human message naming the turn, call and
parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cot import DEFAULT_COT
from .answers import answer_check_parsed
from .calls import CallParseError
from .quality import quality_check
from .record import Record


@dataclass
class CheckOutcome:
    outcome: str  # "base" | "hard" | "rejected"
    record: dict  # the normalised record (base/hard) or the input record (rejected)
    reason: str | None = None
    message: str | None = None
    fixes: list[str] = field(default_factory=list)


def check_record(
    record: Record,
    fix: bool = False,
    require_cot: bool = True,
    cot_start: str = DEFAULT_COT[0],
    cot_end: str = DEFAULT_COT[1],
) -> CheckOutcome:
    """Run the Base Quality Check, then the Answer Check of every assistant turn.

    Args:
        record: a canonical record (`balancetrl.data.record.Record`, docs/data.md), as the loaders produce it.
        fix: repair fixable format defects (the xlam `[ func(...)]` space) instead of failing; repaired
            defects are listed in `outcome.fixes`.
        require_cot: every assistant turn must carry a CoT (the paper's data); set False for data without CoT.
        cot_start, cot_end: CoT markers inside raw assistant text.

    Returns:
        `CheckOutcome(outcome="base"|"hard"|"rejected", record, reason, message, fixes)`; for base/hard the record
        is normalised (CoT in `reasoning_content`, calls as `tool_calls` with dict arguments).
    """
    usable, passed = quality_check(record, require_cot, cot_start, cot_end)
    if not usable:
        return CheckOutcome("rejected", record, usable.reason, usable.message)
    reference = record.get("reference")
    out = dict(record)
    out["messages"] = passed.messages
    fixes: list[str] = []
    for turn, (issues, calls) in enumerate(zip(passed.issues, passed.calls), start=1):
        ref = reference[turn - 1] if reference is not None else None
        try:
            result = answer_check_parsed(calls, ref, out.get("tools", []), issues, fix, f"turn {turn}")
        except (CallParseError, KeyError, TypeError, AttributeError, RecursionError) as e:  # a malformed reference
            return CheckOutcome("rejected", record, "reference_mismatch", f"turn {turn}: malformed reference ({e})")
        if fix:
            fixes.extend(issues)  # repaired even if the turn then fails on content
        if not result.ok:
            return CheckOutcome("hard", out, result.reason, result.message, fixes)
    return CheckOutcome("base", out, fixes=fixes)
