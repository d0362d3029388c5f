"""The data split: a dataset into `base.jsonl`, `hard.jsonl`, `rejected.jsonl` and `report.json` in one folder.

`run_check` sends every record through the Base Quality Check and the Answer Check (`balancetrl.data.checks`), or,
with `check=False` (the recipe's `run_check: false`), keeps every parseable record as base. Every input record lands in
exactly one file. Outputs are written to temporary files and renamed into place only after the whole input was
read, so a failure never leaves a partial or mixed set of outputs. `balancetrl check` and the training script both
call these.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from ..cot import DEFAULT_COT
from .checks import CheckOutcome, check_record
from .formats import load_records
from .io import AtomicJsonlWriter, atomic_write, read_records, why_unusable

OUTPUTS = ("base", "hard", "rejected")


def run_check(
    source,
    output_dir: str | Path,
    format: str = "auto",
    answers: str | None = None,
    fix: bool = False,
    require_cot: bool = True,
    cot_start: str = DEFAULT_COT[0],
    cot_end: str = DEFAULT_COT[1],
    progress: bool | None = None,
    tags=None,
    label: str | None = None,
    check: bool = True,
    mapping=None,
) -> dict:
    """Check every record of `source` and write the outputs; returns the report (also written as report.json).

    `check=False` skips both checks: every parseable record is base and `hard.jsonl` is empty. `tags` and `mapping`
    are `load_records`'.
    Raises `InputError` (nothing written) when the input as a whole is unusable.
    """
    from tqdm.auto import tqdm

    output_dir = Path(output_dir)
    writers = {name: AtomicJsonlWriter(output_dir / f"{name}.jsonl") for name in OUTPUTS}
    outcomes: Counter = Counter()
    reasons: dict[str, Counter] = {"hard": Counter(), "rejected": Counter()}
    fixed: Counter = Counter()
    start = time.perf_counter()
    try:
        # progress=None: tqdm shows a bar only on a terminal
        rows = tqdm(load_records(source, format=format, answers=answers, tags=tags, cot=(cot_start, cot_end),
                                 mapping=mapping),
                    unit=" rec", mininterval=0.5,
                    disable=None if progress is None else not progress, desc="check")
        for row in rows:
            if row.error:
                kept = dict(row.data) if isinstance(row.data, dict) else {"raw": row.raw}
                kept.update(reject_reason=row.error, reject_message=row.message, line=row.line)
                reason = _write_or_reject(writers["rejected"], kept, row) or row.error
                outcomes["rejected"] += 1
                reasons["rejected"][reason] += 1
                continue
            result = (check_record(row.data, fix=fix, require_cot=require_cot, cot_start=cot_start, cot_end=cot_end)
                      if check else CheckOutcome("base", row.data))
            record, outcome, reason = result.record, result.outcome, result.reason
            if result.outcome == "rejected":
                record = dict(record, reject_reason=result.reason, reject_message=result.message, line=row.line)
            elif result.outcome == "hard":
                record = dict(record, hard_reason=result.reason, hard_message=result.message)
            unwritable = _write_or_reject(writers[outcome], record, row, writers["rejected"])
            if unwritable:
                outcome, reason = "rejected", unwritable
            else:
                fixed.update(result.fixes)
            if outcome != "base":
                reasons[outcome][reason] += 1
            outcomes[outcome] += 1
        total = sum(outcomes.values())
        shown_format = "mapping" if mapping is not None else format
        seconds = time.perf_counter() - start
        report = {
            "input": label or (str(source) if isinstance(source, (str, Path)) else type(source).__name__),
            "total": total,
            "outcomes": {name: outcomes[name] for name in OUTPUTS},
            "reasons": {k: dict(v.most_common()) for k, v in reasons.items()},
            "fixed": dict(fixed),
            "options": {"format": shown_format, "fix": fix, "require_cot": require_cot} if check else
                       {"format": shown_format, "run_check": False},
            "seconds": round(seconds, 3),
            "records_per_second": round(total / seconds, 1) if seconds > 0 else None,
        }
        for w in writers.values():
            w.close()
        for w in writers.values():
            w.commit()
        _write_report(output_dir, report)
        return report
    except BaseException:
        for w in writers.values():
            w.abort()
        raise


def _write_or_reject(writer: AtomicJsonlWriter, record: dict, row, rejected: AtomicJsonlWriter | None = None):
    """Write `record`; when JSON cannot hold it (a parquet timestamp, nesting too deep for the encoder), write
    a stub naming the line to `rejected` (default: `writer`) instead and return the reason code."""
    try:
        writer.write(record)
        return None
    except (TypeError, ValueError, RecursionError) as e:
        why = f"{type(e).__name__}: {why_unusable(e)}"
        (rejected or writer).write({"line": row.line, "reject_reason": "unwritable_record",
                                    "reject_message": f"line {row.line}: cannot be written as JSON ({why})"})
        return "unwritable_record"


def read_split(path: str | Path) -> list[dict]:
    """The records of one output file (`base.jsonl`, `hard.jsonl`); `[]` for an empty one."""
    # An empty split is normal (clean data has no hard record), while `read_records` refuses an empty *input*.
    path = Path(path)
    return [r.data for r in read_records(path) if not r.error] if path.stat().st_size else []


def _write_report(output_dir: Path, report: dict) -> None:
    with atomic_write(output_dir / "report.json") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
