"""Command-line options shared by several commands."""

from __future__ import annotations

import argparse

from ..cot import DEFAULT_COT


def add_cot_arguments(parser: argparse.ArgumentParser) -> None:
    """`--cot-start/--cot-end`: the CoT markers inside raw assistant text (the trainer's `cot_start`/`cot_end`)."""
    parser.add_argument("--cot-start", default=DEFAULT_COT[0], help=f"CoT opening marker (default: {DEFAULT_COT[0]})")
    parser.add_argument("--cot-end", default=DEFAULT_COT[1], help=f"CoT closing marker (default: {DEFAULT_COT[1]})")
