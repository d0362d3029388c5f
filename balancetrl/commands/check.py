"""`balancetrl check INPUT --output-dir DIR`: split a dataset into base / hard / rejected.

Writes `DIR/base.jsonl`, `DIR/hard.jsonl`, `DIR/rejected.jsonl` and `DIR/report.json`. Every input record lands
in exactly one of the three files. Outputs are written to temporary files and renamed into place only after the
whole input was read, so a failure never leaves a partial or mixed set of outputs.
"""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from collections import Counter
from pathlib import Path

from trl.cli.commands.base import Command, CommandContext

from ..data.checks import check_record
from ..data.formats import FORMATS, load_dataset_info, load_records
from ..data.io import AtomicJsonlWriter, InputError, atomic_write, why_unusable

OUTPUTS = ("base", "hard", "rejected")


def run_check(
    source,
    output_dir: str | Path,
    format: str = "auto",
    answers: str | None = None,
    fix: bool = False,
    require_cot: bool = True,
    cot_open: str = "<think>",
    cot_close: str = "</think>",
    progress: bool | None = None,
    tags=None,
    label: str | None = None,
) -> dict:
    """Check every record of `source` and write the outputs; returns the report (also written as report.json).

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
        rows = tqdm(load_records(source, format=format, answers=answers, tags=tags), unit=" rec", mininterval=0.5,
                    disable=None if progress is None else not progress, desc="check")
        for row in rows:
            if row.error:
                kept = dict(row.data) if isinstance(row.data, dict) else {"raw": row.raw}
                kept.update(reject_reason=row.error, reject_message=row.message, line=row.line)
                reason = _write_or_reject(writers["rejected"], kept, row) or row.error
                outcomes["rejected"] += 1
                reasons["rejected"][reason] += 1
                continue
            result = check_record(row.data, fix=fix, require_cot=require_cot, cot_open=cot_open,
                                  cot_close=cot_close)
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
        seconds = time.perf_counter() - start
        report = {
            "input": label or (str(source) if isinstance(source, (str, Path)) else type(source).__name__),
            "total": total,
            "outcomes": {name: outcomes[name] for name in OUTPUTS},
            "reasons": {k: dict(v.most_common()) for k, v in reasons.items()},
            "fixed": dict(fixed),
            "options": {"format": format, "fix": fix, "require_cot": require_cot},
            "seconds": round(seconds, 3),
            "records_per_second": round(total / seconds, 1) if seconds > 0 else None,
        }
        for w in writers.values():
            w.close()
        for w in writers.values():
            w.commit()
        with atomic_write(output_dir / "report.json") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
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


class CheckCommand(Command):
    """Base Quality Check + Answer Check of a function-calling dataset (paper §3.3)."""

    def __init__(self):
        super().__init__("check", "Split a function-calling dataset into base / hard / rejected records.")

    def register(self, subparsers) -> None:
        p = subparsers.add_parser(self.name, help=self.help_text, description=__doc__.split("\n\n")[0])
        p.add_argument("input", help="a .jsonl / .json / .parquet file")
        p.add_argument("--output-dir", required=True, help="folder for base/hard/rejected.jsonl and report.json")
        p.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                       help="input format (default: detected from the first record)")
        p.add_argument("--dataset-info", default=None, metavar="FILE",
                       help="LLaMA-Factory dataset_info.json (or one entry of it): its formatting, columns and tags "
                            "say how to read INPUT (sharegpt/openai)")
        p.add_argument("--dataset-info-name", default=None, metavar="NAME",
                       help="the entry of --dataset-info to use (needed when the file has several)")
        p.add_argument("--answers", default=None,
                       help="BFCL possible-answer file (default: possible_answer/<same name> next to INPUT)")
        p.add_argument("--fix", action="store_true",
                       help="repair fixable format defects (the xlam '[ func(...)]' space) and count them")
        p.add_argument("--allow-missing-cot", action="store_true",
                       help="accept assistant turns without CoT (e.g. plain xlam data)")
        p.add_argument("--cot-open", default="<think>")
        p.add_argument("--cot-close", default="</think>")
        p.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    def run(self, args: Namespace, context: CommandContext | None = None) -> int:
        try:
            format, tags = args.format, None
            if args.dataset_info:
                format, tags = load_dataset_info(args.dataset_info, args.dataset_info_name)
                if args.format not in ("auto", format):
                    raise InputError(f"--format {args.format} contradicts the dataset_info formatting {format!r}")
            report = run_check(
                args.input, args.output_dir, format=format, answers=args.answers, fix=args.fix,
                require_cot=not args.allow_missing_cot, cot_open=args.cot_open, cot_close=args.cot_close,
                progress=False if args.no_progress else None, tags=tags,
            )
        except (InputError, OSError) as e:
            print(f"balancetrl check: error: {e}", file=sys.stderr)
            return 2
        o = report["outcomes"]
        print(f"{report['total']} records: {o['base']} base, {o['hard']} hard, {o['rejected']} rejected "
              f"({report['records_per_second']} rec/s) -> {args.output_dir}")
        for kind in ("rejected", "hard"):
            if report["reasons"][kind]:
                print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in report["reasons"][kind].items()))
        if report["fixed"]:
            print("  fixed: " + ", ".join(f"{k} {v}" for k, v in report["fixed"].items()))
        if report["total"] and report["reasons"]["rejected"].get("missing_cot") == report["total"]:
            print("  hint: no record has a CoT; pass --allow-missing-cot for data without reasoning")
        return 0
