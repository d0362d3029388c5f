"""Step time and peak memory of the distributed engines against DDP, on 2 CPU ranks (gloo), one run each.

    python -m benchmarks.engines_cpu [--steps 10] [--hidden 256] [--layers 4] [--json benchmarks/results/engines_cpu.json]

Each engine trains the same model (a random Llama of the given shape, saved once) on the same rows through the CLI
(`balancetrl balance-sft --accelerate_config ...`), as a user runs it, from its own benchmark process. Step time:
the wall time of `trainer.train()` (the run summary's `train_seconds`: the engine's set-up in `train()` included, the
model load not) over the steps; peak memory: the largest resident set of one process of that run
(`getrusage(RUSAGE_CHILDREN)` of the benchmark process: its largest descendant, i.e. the largest rank). CPU figures:
gloo collectives and fp32 on 2 cores say nothing about NCCL on GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from benchmarks.common import command_line, cpu_model

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "ddp": ["--accelerate_config", "multi_cpu"],
    "zero2": ["--accelerate_config", "zero2_cpu"],
    "zero3": ["--accelerate_config", "zero3_cpu"],
    "fsdp2": ["--accelerate_config", "multi_cpu", "--model_fsdp_size", "2"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(folder: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from balancetrl.models import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m-instruct")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=4,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    recipe = folder / "recipe.yaml"
    recipe.write_text(f"""
model_name_or_path: {folder / 'model'}
dtype: float32
chat_template: keep
dataset_path: {ROOT / 'balancetrl' / 'data' / 'demo' / 'train.jsonl'}
use_cpu: true
per_device_train_batch_size: 2
gradient_accumulation_steps: 1
learning_rate: 1.0e-4
max_length: 512
logging_steps: 1
save_strategy: "no"
report_to: none
seed: 0
gradient_checkpointing: false
bf16: false
""")
    return recipe


def run(name: str, flags: list[str], recipe: Path, out: Path, steps: int) -> dict:
    command = [str(Path(sys.executable).parent / "balancetrl"), "balance-sft", "--config", str(recipe),
               "--output_dir", str(out), "--max_steps", str(steps), "--max_train_samples", str(steps * 4), *flags,
               "--main_process_port", str(free_port())]
    start = time.perf_counter()
    r = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((out / "balance_sft_summary.json").read_text())
    return {"engine": summary["engine"]["engine"], "command": " ".join(command[1:]), "wall_s": round(wall, 1),
            "train_s": summary["train_seconds"], "s_per_step": round(summary["train_seconds"] / steps, 3),
            "peak_rss_gib": round(peak_kib / 2**20, 3), "final_loss": summary["final_train_loss"],
            "final_lambda": summary["final_lambda"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "engines_cpu.json"))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one engine per process: its own RUSAGE_CHILDREN
    opts = parser.parse_args()
    if opts.child:
        name, recipe, out = opts.child.split(",")
        print(json.dumps(run(name, ENGINES[name], Path(recipe), Path(out), opts.steps)))
        return
    import torch

    import balancetrl

    with tempfile.TemporaryDirectory() as tmp:
        recipe = prepare(Path(tmp), opts.hidden, opts.layers)
        results = {}
        for name in opts.engines.split(","):
            r = subprocess.run([sys.executable, "-m", "benchmarks.engines_cpu", "--steps", str(opts.steps),
                                "--child", f"{name},{recipe},{Path(tmp) / name}"],
                               capture_output=True, text=True, check=True)
            results[name] = json.loads(r.stdout.strip().splitlines()[-1])
            print(name, results[name], flush=True)
    ddp = results["ddp"]
    ratios = {name: {"step_time_vs_ddp": round(r["s_per_step"] / ddp["s_per_step"], 3),
                     "peak_rss_vs_ddp": round(r["peak_rss_gib"] / ddp["peak_rss_gib"], 3)}
              for name, r in results.items() if name != "ddp"}
    report = {
        "command": command_line("benchmarks.engines_cpu"),
        "what": "2 CPU ranks (gloo), fp32, one run per engine through the CLI; CPU figures, not GPU ones",
        "model": {"hidden": opts.hidden, "layers": opts.layers, "per_device_batch": 2, "max_length": 512,
                  "steps": opts.steps},
        "machine": {"cpu": cpu_model(default=platform.machine()), "cores": os.cpu_count(), "torch": torch.__version__,
                    "deepspeed": version("deepspeed"), "balancetrl": balancetrl.__version__},
        "results": results, "ratios": ratios,
    }
    Path(opts.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))


if __name__ == "__main__":
    main()
