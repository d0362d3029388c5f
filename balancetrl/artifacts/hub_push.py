"""Upload a finished balance-sft run (model, BalanceSFT card, plots, summary) to the Hub.

Serves both `balancetrl push` and `push_to_hub: true` at the end of training. The endpoint is read from
`HF_ENDPOINT` at call time (a mirror, a private Hub, or a loopback server in the tests); the token is the caller's
(`--token`, `HF_TOKEN` or the stored login), never from a recipe.
"""

from __future__ import annotations

import os
from pathlib import Path

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

    from .model_card import write_model_card
    from .run_summary import read_summary

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
