"""Each rank in its own working directory (a node without a shared filesystem): the data split reaches every rank."""

import argparse
import hashlib
import json
import os
import shutil
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--data", required=True)
    opts = parser.parse_args()
    rank = int(os.environ["RANK"])
    node = Path(opts.base) / f"node{rank}"
    node.mkdir(parents=True)
    if rank == 0:  # only the main node holds the data file; every rank gets the same (relative) paths
        shutil.copy(opts.data, node / "train.jsonl")
    os.chdir(node)

    from accelerate import PartialState

    PartialState(cpu=True)
    from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments, split_dataset

    script_args = BalanceSFTScriptArguments(dataset_path="train.jsonl", fix=True)
    base, hard, report = split_dataset(script_args, "run", ("<think>", "</think>"))
    digest = hashlib.sha256(json.dumps([base, hard], sort_keys=True).encode()).hexdigest()
    out = {"base": len(base), "hard": len(hard), "outcomes": report["outcomes"], "sha256": digest,
           "data_files": sorted(p.name for p in (node / "run" / "data").glob("*"))
           if (node / "run" / "data").exists() else []}
    (Path(opts.base) / f"rank{rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
