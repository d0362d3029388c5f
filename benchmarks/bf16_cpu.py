"""fp32 vs bf16 on this CPU for the ablation's two costs: a BalanceSFTTrainer step and greedy decoding.

    python -m benchmarks.bf16_cpu [--steps 5] [--rows 20] [--json benchmarks/results/bf16_cpu.json]

Why: `make ablation` runs with `--bf16` (autocast training, bf16 decoding) to fit a CPU session; this is the figure
behind that choice, on SmolLM2-135M-Instruct and the ablation's own rows (batch 4, rows of up to 1,024 tokens).
Training: median optimizer step of `--steps` steps, fp32 and bf16 each in a fresh subprocess, alternated `--pairs`
times. Decoding: 8 prompts × 128 new tokens (min_new_tokens pins the length), the same model cast to each dtype.
The CPU must have bf16 matrix units (AMX / avx512_bf16) for bf16 to pay; the flags are recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "toolrl_xlam_cot.jsonl"


def train_child(bf16: bool, opts) -> list[float]:
    """Seconds of each of `opts.steps` BalanceSFTTrainer steps (batch 4 of the ablation's first `opts.rows` rows) on
    `opts.threads` threads, in a fresh model (also used by parallel_units_cpu.py)."""
    import torch

    from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
    from balancetrl.data.training import to_training_dataset
    from balancetrl.models import load_model_and_tokenizer
    from benchmarks.ablation_v2.data import check_file, supervised_alpha
    from benchmarks.common import StepTimer

    torch.set_num_threads(opts.threads)
    model, tok = load_model_and_tokenizer("smollm2-135m-instruct")
    base, _, _ = supervised_alpha(check_file(opts.data)["base"], tok, 1024)
    # per process: parallel_units_cpu.py trains in several processes at once
    args = BalanceSFTConfig(output_dir=str(Path(opts.tmp) / f"trainer-{os.getpid()}"), report_to=[], use_cpu=True, seed=0,
                            per_device_train_batch_size=4, learning_rate=5e-5, max_length=1024, logging_steps=1,
                            save_strategy="no", max_steps=opts.steps, bf16=bf16, disable_tqdm=True)
    timer = StepTimer()
    BalanceSFTTrainer(model=model, args=args, train_dataset=to_training_dataset(base[: opts.rows]),
                      processing_class=tok, callbacks=[timer]).train()
    return timer.step_seconds


def decode(opts) -> dict:
    import torch

    from balancetrl.models import load_model_and_tokenizer

    torch.set_num_threads(opts.threads)
    model, tok = load_model_and_tokenizer("smollm2-135m-instruct")
    model.eval()
    batch = tok(["Which tool gives the weather in Paris tomorrow, and with which arguments? " * 12] * 8,
                return_tensors="pt")
    out = {}
    for _ in range(opts.pairs):
        for dtype in (torch.float32, torch.bfloat16):
            model.to(dtype)
            t0 = time.perf_counter()
            with torch.no_grad():
                model.generate(**batch, max_new_tokens=128, min_new_tokens=128, do_sample=False)
            out.setdefault(str(dtype).split(".")[1], []).append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--tmp", default="outputs/bf16_cpu")
    p.add_argument("--json", default="benchmarks/results/bf16_cpu.json")
    p.add_argument("--train-child", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.train_child:
        print(json.dumps(train_child(opts.train_child == "bf16", opts)))
        return
    train = {"fp32": [], "bf16": []}
    for _ in range(opts.pairs):
        for kind in ("fp32", "bf16"):
            cmd = [sys.executable, "-m", "benchmarks.bf16_cpu", "--train-child", kind, "--steps", str(opts.steps), "--rows",
                   str(opts.rows), "--threads", str(opts.threads), "--data", opts.data, "--tmp", opts.tmp]
            lines = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()
            train[kind] += json.loads(lines[-1])[1:]  # the first step pays for allocations: left out
    dec = decode(opts)
    from balancetrl.runtime.cpu import cpu_bf16_flags
    from benchmarks.common import machine

    res = {
        "train_step_seconds_median": {k: statistics.median(v) for k, v in train.items()},
        "decode_seconds_median": {k: statistics.median(v) for k, v in dec.items()},
        "train_steps": train, "decode_runs": dec, "cpu_bf16_flags": cpu_bf16_flags(),
        "cpu_model": machine()["cpu_model"], "nproc": os.cpu_count(), "threads": opts.threads,
        "loadavg": os.getloadavg(),
    }
    res["train_speedup"] = res["train_step_seconds_median"]["fp32"] / res["train_step_seconds_median"]["bf16"]
    res["decode_speedup"] = res["decode_seconds_median"]["float32"] / res["decode_seconds_median"]["bfloat16"]
    Path(opts.json).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("train_step_seconds_median", "decode_seconds_median", "train_speedup",
                                          "decode_speedup", "cpu_bf16_flags", "loadavg")}, indent=1))


if __name__ == "__main__":
    main()
