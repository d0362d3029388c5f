"""A unit's BFCL eval (single-turn, and multi_turn_base when asked) and the per-item verdicts read back from the eval
runner's files: what the report's paired comparisons are built on."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from benchmarks.ablation_v2.config import CATEGORIES, MULTI_TURN, multi_turn_supported


def read_samples(eval_dir: Path, category: str) -> list[dict]:
    """The runner's samples/<category>.jsonl rows, in BFCL order."""
    return [json.loads(line) for line in (eval_dir / "samples" / f"{category}.jsonl").read_text().splitlines()]


def read_entries(eval_dir: Path, category: str) -> list[dict]:
    """The runner's multi-turn verdicts, `entries/<category>/<id>.json`, in BFCL order (the id's number)."""
    files = sorted((eval_dir / "entries" / category).glob("*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [json.loads(f.read_text()) for f in files]


def per_sample(rows: list[dict]) -> list[list]:
    """[[id, 0/1], ...]: bfcl's verdict per item."""
    return [[r["id"], int(bool(r["valid"]))] for r in rows]


def truncation(rows: list[dict], max_new_tokens: int) -> dict:
    """Items whose generation stopped at max_new_tokens (a CoT that never reached its call), and of the others how
    many are right: tells "answers wrong calls" from "never finishes thinking"."""
    capped = [r for r in rows if (r.get("output_token_count") or 0) >= max_new_tokens]
    finished = [r for r in rows if (r.get("output_token_count") or 0) < max_new_tokens]
    return {"items": len(rows), "capped": len(capped), "capped_valid": sum(bool(r["valid"]) for r in capped),
            "finished_valid": sum(bool(r["valid"]) for r in finished)}


def add_truncation(unit: dict, work: Path, max_new_tokens: int) -> bool:
    """Fill `truncation` of a unit cached before it was recorded, from that unit's own samples files (same run's
    outputs, nothing re-generated); False when those files are not on this machine."""
    if "truncation" in unit:
        return False
    folder = work / unit["unit"] / "bfcl"
    if not all((folder / "samples" / f"{c}.jsonl").is_file() for c in CATEGORIES):
        return False
    unit["truncation"] = {c: truncation(read_samples(folder, c), max_new_tokens) for c in CATEGORIES}
    return True


def evaluate(model, tokenizer, name: str, work: Path, opts) -> dict:
    import torch

    from balancetrl.eval.runner import evaluate_bfcl

    model.eval()
    if opts.bf16:  # the trained fp32 weights, cast once: greedy decoding in bf16 (AMX) as the trainer's autocast
        model.to(torch.bfloat16)
    out = {"samples": {}, "accuracy": {}}
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        # resume: every finished batch is journaled, so a unit killed mid-eval goes on from its last batch
        report = evaluate_bfcl(name, categories=CATEGORIES, output_dir=work / "bfcl", limit=opts.limit or None,
                               model=model, tokenizer=tokenizer, max_new_tokens=opts.max_new_tokens,
                               batch_size=opts.eval_batch, progress=opts.progress, prompt_style="fc", resume=True)
        journal = report["journal"]
        # replayed batches count at the time they took when generated (by the attempt that was killed)
        out["eval_replayed_batches"] = journal["replayed_batches"]
        out["eval_replayed_seconds"] = journal["replayed_seconds"]
        out["eval_seconds"] = time.perf_counter() - t0 + journal["replayed_seconds"]
        out["eval_cpu_seconds"] = time.process_time() - c0 + journal["replayed_cpu_seconds"]
        out["generation_seconds"] = report.get("generation_seconds")
        rows = {c: read_samples(work / "bfcl", c) for c in CATEGORIES}
        for c in CATEGORIES:
            out["samples"][c] = per_sample(rows[c])
        # generated tokens: eval cost is about linear in them, so a smoke run's cost per token extrapolates
        out["truncation"] = {c: truncation(rows[c], opts.max_new_tokens) for c in CATEGORIES}
        out["output_tokens"] = sum(r.get("output_token_count") or 0 for c in CATEGORIES for r in rows[c])
        out["input_tokens"] = sum(r.get("input_token_count") or 0 for c in CATEGORIES for r in rows[c])
        ok, why = multi_turn_supported()
        if opts.multi_turn_limit and ok:
            t1 = time.perf_counter()
            mt = evaluate_bfcl(name, categories=[MULTI_TURN], output_dir=work / "bfcl_mt",
                               limit=opts.multi_turn_limit, model=model, tokenizer=tokenizer,
                               max_new_tokens=opts.max_new_tokens, batch_size=opts.eval_batch,
                               progress=opts.progress, prompt_style="fc", resume=True)
            out["samples"][MULTI_TURN] = per_sample(read_entries(work / "bfcl_mt", MULTI_TURN))
            out["multi_turn_replayed_seconds"] = mt["journal"]["replayed_seconds"]
            out["multi_turn_seconds"] = time.perf_counter() - t1 + out["multi_turn_replayed_seconds"]
        else:
            out["multi_turn_note"] = "not requested (--multi-turn-limit 0)" if not opts.multi_turn_limit else why
    n = sum(len(out["samples"][c]) for c in CATEGORIES)
    out["eval_samples"] = n
    out["eval_seconds_per_sample"] = out["eval_seconds"] / n if n else None
    out["eval_cpu_seconds_per_sample"] = out["eval_cpu_seconds"] / n if n else None
    out["accuracy"] = {c: statistics.mean(v for _, v in s) for c, s in out["samples"].items() if s}
    return out
