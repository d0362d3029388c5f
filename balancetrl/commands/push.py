"""`balancetrl push OUTPUT_DIR --hub-model-id ID`: upload a finished balance-sft run (model + BalanceSFT card).

The upload is `balancetrl.artifacts.hub_push.push_run`, which `push_to_hub: true` also calls at the end of training.
"""

from __future__ import annotations

import sys
from argparse import Namespace

from trl.cli.commands.base import Command, CommandContext

from ..artifacts.hub_push import push_run


class PushCommand(Command):
    def __init__(self):
        super().__init__("push", "Push a finished balance-sft run (model + BalanceSFT model card) to the Hub.")

    def register(self, subparsers) -> None:
        p = subparsers.add_parser(self.name, help=self.help_text, description=__doc__.split("\n\n")[0])
        p.add_argument("output_dir", help="output_dir of a finished `balancetrl balance-sft` run")
        p.add_argument("--hub-model-id", default=None, help="user/name of the repo (default: the folder name)")
        p.add_argument("--private", action="store_true", help="create the repo private")
        p.add_argument("--revision", default=None, help="branch to push to (created if needed)")
        p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")

    def run(self, args: Namespace, context: CommandContext | None = None) -> int:
        try:
            url = push_run(args.output_dir, args.hub_model_id, token=args.token, private=args.private,
                           revision=args.revision)
        except (FileNotFoundError, ValueError) as e:
            print(f"balancetrl push: error: {e}", file=sys.stderr)
            return 2
        print(f"pushed {args.output_dir} -> {url}")
        return 0
