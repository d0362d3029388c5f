"""SSB overhead: TRL's SFTTrainer vs BalanceSFTTrainer on the same model and batches, in one process, interleaved.

    python -m benchmarks.ssb_overhead [--steps 20] [--hidden 256] [--layers 4] [--batch 4]

Step time: median over interleaved optimizer steps (forward, loss, backward, optimizer) of the same batches.
Peak memory: `torch.cuda.max_memory_allocated` per path on a GPU; on CPU, where PyTorch keeps no allocator
statistics, the peak growth of resident memory over the same steps, one subprocess per path (`--memory-child`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer  # noqa: E402
from balancetrl.data.io import read_records  # noqa: E402
from balancetrl.data.training import to_training_dataset  # noqa: E402
from balancetrl.models import load_tokenizer  # noqa: E402
from benchmarks.common import RssSampler  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parents[1] / "balancetrl" / "data" / "demo"


def build(kind: str, opts, tokenizer, dataset, device):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=opts.hidden, intermediate_size=opts.hidden * 4,
                         num_hidden_layers=opts.layers, num_attention_heads=8, num_key_value_heads=4,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).to(device)
    common = dict(output_dir=f"/tmp/ssb_overhead_{kind}", report_to=[], per_device_train_batch_size=opts.batch,
                  max_length=512, seed=0, use_cpu=device.type == "cpu", shuffle_dataset=False)
    if kind == "trl":
        trainer = SFTTrainer(model=model, args=SFTConfig(assistant_only_loss=True, **common),
                             train_dataset=dataset, processing_class=tokenizer)
    else:
        trainer = BalanceSFTTrainer(model=model, args=BalanceSFTConfig(**common), train_dataset=dataset,
                                    processing_class=tokenizer)
    trainer.create_optimizer()
    batches = [b for _, b in zip(range(opts.steps), trainer.get_train_dataloader())]
    return trainer, batches


def step(trainer, batch, device):
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    samples, n_items = trainer.get_batch_samples(iter([batch]), 1, device)
    trainer.training_step(trainer.model, samples[0], n_items)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--memory-child", choices=["trl", "ssb"])
    opts = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    dataset = to_training_dataset(row.data for row in read_records(DEMO_DIR / "eval.jsonl"))

    if opts.memory_child:
        trainer, batches = build(opts.memory_child, opts, tokenizer, dataset, device)
        step(trainer, batches[0], device)  # optimizer state and allocator pools exist from here on
        gc.collect()
        # resident memory every 2 ms: ru_maxrss would be the peak of model loading, not of the training steps
        with RssSampler(("VmRSS",), interval=0.002) as sampler:
            for batch in batches[1:]:
                step(trainer, batch, device)
        start, peak = 1024 * sampler.start["VmRSS"], 1024 * sampler.peak["VmRSS"]
        print(json.dumps({"peak_growth_bytes": peak - start, "start_bytes": start}))
        return

    trainers = {kind: build(kind, opts, tokenizer, dataset, device) for kind in ("trl", "ssb")}
    times = {"trl": [], "ssb": []}
    peaks = {}
    for i in range(opts.steps):
        order = ("trl", "ssb") if i % 2 == 0 else ("ssb", "trl")
        for kind in order:
            trainer, batches = trainers[kind]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync(device)
            start = time.perf_counter()
            step(trainer, batches[i], device)
            sync(device)
            if i > 0:  # the first step warms up allocators and kernels
                times[kind].append(time.perf_counter() - start)
            if device.type == "cuda":
                peaks[kind] = max(peaks.get(kind, 0), torch.cuda.max_memory_allocated())
    if device.type != "cuda":
        for kind in ("trl", "ssb"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.ssb_overhead", "--memory-child", kind, "--steps", str(opts.steps),
                                  "--hidden", str(opts.hidden), "--layers", str(opts.layers),
                                  "--batch", str(opts.batch)], capture_output=True, text=True, check=True)
            peaks[kind] = json.loads(out.stdout.strip().splitlines()[-1])["peak_growth_bytes"]
    result = {
        "device": str(device), "model": f"llama h{opts.hidden} L{opts.layers} vocab {len(tokenizer)}",
        "batch": opts.batch, "steps_timed": len(times["trl"]),
        "median_step_s": {k: statistics.median(v) for k, v in times.items()},
        "step_time_ratio": statistics.median(times["ssb"]) / statistics.median(times["trl"]),
        "peak_memory_bytes": peaks, "peak_memory_ratio": peaks["ssb"] / peaks["trl"],
        "memory_measure": "cuda max_memory_allocated" if device.type == "cuda"
        else "peak RSS growth over the training steps, one subprocess per path",
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "ssb_overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
