"""`balancetrl stats INPUT --tokenizer SPEC`: the paper's Table 1 (CoT vs call tokens) and α for any dataset."""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

from trl.cli.commands.base import Command, CommandContext

from ..data.formats import FORMATS, load_records
from ..data.io import InputError, atomic_write
from ..data.mapping import load_mapping
from ..data.token_stats import format_table, token_stats
from .options import add_cot_arguments


def load_stats_tokenizer(spec: str):
    """A tokenizer directory, a `.gguf` file or the `smollm2-135m-instruct` alias (via balancetrl.models)."""
    from ..models import load_tokenizer

    # Only token counts matter here: keep the model's own template, no ChatML requirement.
    return load_tokenizer(spec, chat_template="keep")


class StatsCommand(Command):
    def __init__(self):
        super().__init__("stats", "Token statistics (CoT vs function call, Table 1 of the paper) and alpha.")

    def register(self, subparsers) -> None:
        p = subparsers.add_parser(self.name, help=self.help_text, description=__doc__)
        p.add_argument("input", help="a .jsonl / .json / .parquet file")
        p.add_argument("--tokenizer", required=True,
                       help="tokenizer folder, .gguf file, or smollm2-135m-instruct (offline only)")
        p.add_argument("--format", default="auto", choices=("auto", *FORMATS))
        p.add_argument("--mapping", default=None, metavar="FILE", help="a mapping file for rows of no built-in format")
        p.add_argument("--answers", default=None, help="BFCL possible-answer file")
        add_cot_arguments(p)
        p.add_argument("--json", default=None, help="also write the numbers to this JSON file")

    def run(self, args: Namespace, context: CommandContext | None = None, tokenizer=None) -> int:
        try:
            tokenizer = tokenizer or load_stats_tokenizer(args.tokenizer)
            rows = load_records(args.input, format=args.format, answers=args.answers,
                                cot=(args.cot_start, args.cot_end),
                                mapping=load_mapping(args.mapping) if args.mapping else None)
            stats = token_stats((r.data for r in rows if not r.error), tokenizer, args.cot_start, args.cot_end)
        except (InputError, OSError, ImportError) as e:
            print(f"balancetrl stats: error: {e}", file=sys.stderr)
            return 2
        print(format_table(stats, Path(args.input).name))
        if args.json:
            with atomic_write(args.json) as f:
                json.dump(stats.as_dict(), f, indent=2)
        return 0
