"""Each rank in its own working directory (a node without a shared filesystem): the data split reaches every rank;
with `--hdr-state`, so do the HDR rounds that only node 0 has on disk (what a resumed job restores)."""

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
    parser.add_argument("--hdr-state", action="store_true")
    opts = parser.parse_args()
    rank = int(os.environ["RANK"])
    node = Path(opts.base) / f"node{rank}"
    node.mkdir(parents=True)
    if rank == 0:  # only the main node holds the data file; every rank gets the same (relative) paths
        shutil.copy(opts.data, node / "train.jsonl")
    os.chdir(node)

    from accelerate import PartialState

    PartialState(cpu=True)
    if opts.hdr_state:
        return restore_hdr_rounds(rank, Path(opts.base))
    from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments, split_dataset

    script_args = BalanceSFTScriptArguments(dataset_path="train.jsonl", fix=True)
    base, hard, report = split_dataset(script_args, "run", ("<think>", "</think>"))
    digest = hashlib.sha256(json.dumps([base, hard], sort_keys=True).encode()).hexdigest()
    out = {"base": len(base), "hard": len(hard), "outcomes": report["outcomes"], "sha256": digest,
           "data_files": sorted(p.name for p in (node / "run" / "data").glob("*"))
           if (node / "run" / "data").exists() else []}
    (Path(opts.base) / f"rank{rank}.json").write_text(json.dumps(out))


def restore_hdr_rounds(rank: int, base: Path) -> None:
    from types import SimpleNamespace

    from balancetrl.hdr.state import HDRState
    from balancetrl.runtime.distributed import on_main_process

    state = HDRState("run")  # the same relative output_dir on every node
    if rank == 0:  # the rounds a killed job finished, on node 0's disk only
        for k in (1, 2):
            state.write_round(SimpleNamespace(round=k, accepted=[{"id": f"a{k}"}], still_hard=[{"id": f"h{k}"}],
                                              candidates=[], judge_totals={}), {"round": k})
    out = {"local": HDRState("run").finished_rounds(), "restored": on_main_process(state.load_finished)}
    (base / f"rank{rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main()
