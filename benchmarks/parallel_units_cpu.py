"""On a small CPU: one ablation unit at a time on every core, or one unit per core at once?

    python -m benchmarks.parallel_units_cpu [--pairs 2] [--steps 3] [--json benchmarks/results/parallel_units_cpu.json]

`make ablation` runs its units one after the other with `--threads 2` on 2 cores. Small matrices (SmolLM2-135M,
eval batch 16, batch 4 training) use threads poorly, so two units side by side at one thread each might finish two
units sooner. This measures both layouts on the ablation's own work, in bf16 as `make ablation` runs it:

- decoding: 16 BFCL `simple_python` prompts (fc style, the training chat template), greedy, up to 128 new tokens
  through the eval's own engine (batch 16, sorted by length);
- training: `--steps` BalanceSFTTrainer steps of 4 of the ablation's rows (bf16 autocast), the first left out.

Sequential: one process with all cores does the work twice (two units); parallel: one process per core, each doing
it once, started together. Each child is a fresh interpreter (model load not timed). Also records whether one and two
threads give the same greedy tokens: if not, the thread count is part of a unit's numbers and parallel units would
have to be a separate experiment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "toolrl_xlam_cot.jsonl"
MODEL = "smollm2-135m-instruct"


def child_decode(opts) -> dict:
    import torch

    from balancetrl.eval import bfcl
    from balancetrl.generation import TransformersGeneration, tokenize_prompt_texts
    from balancetrl.models import load_model_and_tokenizer

    torch.set_num_threads(opts.threads)
    model, tok = load_model_and_tokenizer(MODEL)
    model.eval().to(torch.bfloat16)
    items = bfcl.load_category("simple_python", 16)
    ids = tokenize_prompt_texts(tok, [bfcl.build_prompt(tok, it["prompt_entry"], "fc") for it in items])
    engine = TransformersGeneration(model, tok, batch_size=16, sort_by_length=True)
    seconds, texts = [], []
    for _ in range(opts.repeat):
        t0 = time.perf_counter()
        rows = engine.complete(ids, max_new_tokens=128)
        seconds.append(time.perf_counter() - t0)
        texts = [r[0].text for r in rows]
    return {"seconds": seconds, "digest": hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16],
            "tokens": sum(r[0].completion_tokens for r in rows)}


def child_train(opts) -> dict:
    from benchmarks.bf16_cpu import train_child

    opts.rows = 4 * opts.steps  # one batch of 4 per step
    # the first step pays for allocations: left out
    return {"seconds": [sum(train_child(True, opts)[1:]) for _ in range(opts.repeat)]}


def run_children(what: str, layout: str, opts) -> tuple[float, list[dict]]:
    """Wall seconds of the timed work: sequential = one child, all cores, twice; parallel = one child per core."""
    cores = os.cpu_count() or 1
    base = [sys.executable, "-m", "benchmarks.parallel_units_cpu", "--child", what, "--steps", str(opts.steps), "--data", opts.data,
            "--tmp", opts.tmp]
    if layout == "sequential":
        cmds = [base + ["--threads", str(cores), "--repeat", "2"]]
    else:
        cmds = [base + ["--threads", "1", "--repeat", "1"] for _ in range(cores)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in cmds]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a {what} child failed")
    # children load the model at different speeds: the timed work of the slowest bounds the layout
    return max(sum(o["seconds"]) for o in outs), outs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--tmp", default="outputs/parallel_units_cpu")
    p.add_argument("--json", default="benchmarks/results/parallel_units_cpu.json")
    p.add_argument("--child", choices=["decode", "train"], help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        print(json.dumps(child_decode(opts) if opts.child == "decode" else child_train(opts)))
        return
    res: dict = {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg(), "pairs": opts.pairs, "steps": opts.steps}
    digests = {}
    for what in ("decode", "train"):
        walls = {"sequential": [], "parallel": []}
        for _ in range(opts.pairs):
            for layout in ("sequential", "parallel"):
                wall, outs = run_children(what, layout, opts)
                walls[layout].append(wall)
                if what == "decode":
                    digests.setdefault(layout, set()).update(o["digest"] for o in outs)
        med = {k: statistics.median(v) for k, v in walls.items()}
        res[what] = {"walls": walls, "median": med, "parallel_speedup": med["sequential"] / med["parallel"]}
    res["same_tokens_1_vs_all_threads"] = len(digests["sequential"] | digests["parallel"]) == 1
    res["digests"] = {k: sorted(v) for k, v in digests.items()}
    res["loadavg_end"] = os.getloadavg()
    Path(opts.json).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("decode", "train", "same_tokens_1_vs_all_threads", "loadavg_start",
                                          "loadavg_end")}, indent=1))


if __name__ == "__main__":
    main()
