"""`balancetrl check INPUT --output-dir DIR`: split a dataset into base / hard / rejected.

Writes `DIR/base.jsonl`, `DIR/hard.jsonl`, `DIR/rejected.jsonl` and `DIR/report.json` with
`balancetrl.data.split.run_check`.
"""

from __future__ import annotations

import sys
from argparse import Namespace

from trl.cli.commands.base import Command, CommandContext

from ..data.formats import FORMATS, resolve_format
from ..data.io import InputError
from ..data.mapping import load_mapping
from ..data.split import run_check
from .options import add_cot_arguments


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
        p.add_argument("--mapping", default=None, metavar="FILE",
                       help="a mapping file (YAML/JSON) for rows of no built-in format: their columns, role tags and "
                            "call keys (docs/data.md, 'Mapping other rows')")
        p.add_argument("--answers", default=None,
                       help="BFCL possible-answer file (default: possible_answer/<same name> next to INPUT)")
        p.add_argument("--fix", action="store_true",
                       help="repair fixable format defects (the xlam '[ func(...)]' space) and count them")
        p.add_argument("--allow-missing-cot", action="store_true",
                       help="accept assistant turns without CoT (e.g. plain xlam data)")
        add_cot_arguments(p)
        p.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    def run(self, args: Namespace, context: CommandContext | None = None) -> int:
        try:
            format, tags = resolve_format(args.format, args.dataset_info, args.dataset_info_name)
            mapping = load_mapping(args.mapping) if args.mapping else None
            report = run_check(
                args.input, args.output_dir, format=format, answers=args.answers, fix=args.fix,
                require_cot=not args.allow_missing_cot, cot_start=args.cot_start, cot_end=args.cot_end,
                progress=False if args.no_progress else None, tags=tags, mapping=mapping,
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
