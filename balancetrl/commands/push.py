"""`balancetrl push OUTPUT_DIR --hub-model-id ID`: upload a finished balance-sft run (model + BalanceSFT card).

The same `push_run` serves `push_to_hub: true` at the end of training. The endpoint is read from `HF_ENDPOINT` at
call time (a mirror, a private Hub, or a loopback server in the tests); the token from `--token`, `HF_TOKEN` or the
stored login, never from a recipe.
"""

from __future__ import annotations

import os
import sys
from argparse import Namespace
from pathlib import Path

from trl.cli.commands.base import Command, CommandContext

# Training state and bulky by-products stay local: the Hub repo is the model, its card and the run's plots/summary.
IGNORE = ["checkpoint-*", "checkpoint-*/**", "hdr/judge_cache/**", "hdr/round_*/**", "data/**", "runs/**",
          "*.lock", "training_args.bin"]


def push_run(output_dir: str | os.PathLike, hub_model_id: str | None = None, token: str | None = None,
             private: bool = False, revision: str | None = None, commit_message: str = "Upload BalanceSFT model",
             refresh_card: bool = True) -> str:
    """Create the repo (if needed) and upload `output_dir`; returns the repo URL.

    With `refresh_card`, README.md is rebuilt from `balance_sft_summary.json` first, so the card names the repo.
    """
    from huggingface_hub import HfApi

    from ..model_card import write_model_card
    from ..scripts.report import read_summary

    output_dir = Path(output_dir)
    summary = read_summary(output_dir)  # also proves it is a finished run
    if not any(output_dir.glob("*.safetensors")) and not (output_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{output_dir} holds no model weights (*.safetensors or a LoRA adapter)")
    repo_id = hub_model_id or output_dir.name
    if refresh_card:
        write_model_card(output_dir, summary, hub_model_id=repo_id)
    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision:
        api.create_branch(repo.repo_id, branch=revision, exist_ok=True)
    api.upload_folder(repo_id=repo.repo_id, folder_path=str(output_dir), commit_message=commit_message,
                      ignore_patterns=IGNORE, revision=revision)
    return str(repo)


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
