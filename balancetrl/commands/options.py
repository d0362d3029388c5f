"""Command-line options shared by several commands."""

from __future__ import annotations

import argparse
import sys

from ..cot import DEFAULT_COT

# The CoT markers were `--cot-open/--cot-close` before they took the trainer's names (`cot_start`/`cot_end`);
# the old spellings are accepted, with a warning, for one release.
DEPRECATED_COT_FLAGS = {"--cot-open": "--cot-start", "--cot-close": "--cot-end"}


class _DeprecatedAlias(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {DEPRECATED_COT_FLAGS[option_string]} "
              "(the old flag goes in the next release)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_cot_arguments(parser: argparse.ArgumentParser) -> None:
    """`--cot-start/--cot-end`: the CoT markers inside raw assistant text (the trainer's `cot_start`/`cot_end`)."""
    parser.add_argument("--cot-start", default=DEFAULT_COT[0], help=f"CoT opening marker (default: {DEFAULT_COT[0]})")
    parser.add_argument("--cot-end", default=DEFAULT_COT[1], help=f"CoT closing marker (default: {DEFAULT_COT[1]})")
    for old, new in DEPRECATED_COT_FLAGS.items():
        parser.add_argument(old, dest=new[2:].replace("-", "_"), action=_DeprecatedAlias, default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)
