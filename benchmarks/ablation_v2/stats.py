"""The report's numbers, from the cached units: pooled accuracy per arm with its CI, every trained arm against SFT
(and the secondary pairs) as paired comparisons, each arm against itself under another seed, the time estimate of
all units and the peak memory. The statistics themselves (item bootstrap, McNemar) are `paired_stats`."""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from pathlib import Path

from benchmarks.ablation_v2.config import (
    ARMS,
    CATEGORIES,
    MULTI_TURN,
    REFERENCE,
    SECONDARY,
    multi_turn_supported,
    unit_name,
)
from benchmarks.ablation_v2.evaluation import add_truncation
from benchmarks.ablation_v2.paired_stats import accuracy_ci, paired_bootstrap
from benchmarks.ablation_v2.unit_cache import UnitCache
from benchmarks.common import machine


def vectors(units: list[dict], categories: list[str]) -> tuple[list[str], list[list[int]]]:
    """Items (category/id) and one 0/1 vector per unit, in a fixed item order; all units must cover the same items."""
    keys = [f"{c}/{i}" for c in categories for i, _ in units[0]["samples"][c]]
    out = []
    for u in units:
        got = {f"{c}/{i}": v for c in categories for i, v in u["samples"][c]}
        if set(got) != set(keys):
            raise ValueError(f"unit {u['unit']} was scored on other items than {units[0]['unit']}")
        out.append([got[k] for k in keys])
    return keys, out


def load_done(opts, expected: list[tuple[str, int | None]], cache: UnitCache, configs: dict) -> dict[str, dict]:
    """The expected units the cache holds for their config, by name (a unit cached before its truncation was recorded
    gets it from its own samples files, and is saved again with it)."""
    done = {}
    for arm, seed in expected:
        u = cache.load(unit_name(arm, seed), configs[unit_name(arm, seed)])
        if u and add_truncation(u, Path(opts.work), opts.max_new_tokens):
            u = cache.save(unit_name(arm, seed), configs[unit_name(arm, seed)], u)
        if u:
            done[unit_name(arm, seed)] = u
    return done


def arm_summary(units: list[dict], cats: list[str], resamples: int) -> dict:
    """One arm over its units (seeds): pooled accuracy and CI, per category, truncation, λ, losses, timings, HDR."""
    row = {"units": [u["unit"] for u in units]}
    for group, cs in (("main", CATEGORIES), *((("multi_turn", [MULTI_TURN]),) if MULTI_TURN in cats else ())):
        if all(c in units[0]["samples"] for c in cs):
            _, vec = vectors(units, cs)
            acc, lo, hi = accuracy_ci(vec, resamples=resamples)
            row[group] = {"accuracy": acc, "ci": [lo, hi], "n_items": len(vec[0])}
    row["per_category"] = {c: statistics.mean(u["accuracy"][c] for u in units) for c in cats
                           if all(c in u["accuracy"] for u in units)}
    if all(u.get("truncation") for u in units):
        t = {k: sum(u["truncation"][c][k] for u in units for c in CATEGORIES)
             for k in ("items", "capped", "capped_valid", "finished_valid")}
        row["truncation"] = t | {"capped_share": t["capped"] / t["items"],
                                 "finished_accuracy": (t["finished_valid"] / (t["items"] - t["capped"])
                                                       if t["items"] > t["capped"] else None)}
    for key in ("final_lambda", "step_seconds_median", "train_seconds", "eval_seconds_per_sample"):
        vals = [u[key] for u in units if u.get(key) is not None]
        row[key] = statistics.mean(vals) if vals else None
    row["lambda_trajectories"] = {u["unit"]: [(h["step"], h["ssb/lambda"]) for h in u.get("log", [])
                                             if "ssb/lambda" in h] for u in units}
    logs = [u.get("log") or [] for u in units]
    if any(logs):
        row["loss_end"] = {k: statistics.mean(lg[-1][k] for lg in logs if lg) for k in ("ssb/loss_cot", "ssb/loss_call")}
    row["hdr"] = {u["unit"]: u["hdr"] for u in units if u.get("hdr")}
    return row


def compare(done: dict, seeds: list[int], arm: str, ref: str, resamples: int) -> dict | None:
    """`arm` against `ref` on the seeds where both are done: seed s paired with seed s, pooled (None: no such seed)."""
    pairs = [s for s in seeds if unit_name(arm, s) in done and unit_name(ref, s) in done]
    if not pairs:
        return None
    ua, ub = [done[unit_name(arm, s)] for s in pairs], [done[unit_name(ref, s)] for s in pairs]
    va, vb = vectors(ua, CATEGORIES)[1], vectors(ub, CATEGORIES)[1]
    r = paired_bootstrap(va, vb, resamples=resamples)
    # each seed's own difference: pooled CIs cannot show whether the seeds agree in sign
    per_seed = [statistics.mean(a) - statistics.mean(b) for a, b in zip(va, vb)]
    out = r.as_dict() | {"seeds": pairs, "per_seed_diff": per_seed}
    if all(MULTI_TURN in u["samples"] for u in ua + ub):  # reported beside, not pooled with, single-turn
        r = paired_bootstrap(vectors(ua, [MULTI_TURN])[1], vectors(ub, [MULTI_TURN])[1], resamples=resamples)
        out["multi_turn"] = r.as_dict()
    return out


def between_seeds(done: dict, arms: list[str], seeds: list[int], resamples: int) -> dict:
    """The same arm under another training seed, on the same items: how far the seed alone moves an arm, the scale an
    arm-vs-sft difference has to clear (the item bootstrap does not see it)."""
    out = {}
    for arm in arms:
        got = [s for s in seeds if ARMS[arm][0] and unit_name(arm, s) in done]
        for s in got[1:]:
            ua, ub = [done[unit_name(arm, s)]], [done[unit_name(arm, got[0])]]
            r = paired_bootstrap(vectors(ua, CATEGORIES)[1], vectors(ub, CATEGORIES)[1], resamples=resamples)
            out[f"{unit_name(arm, s)} vs {unit_name(arm, got[0])}"] = r.as_dict() | {"seeds": [s, got[0]]}
    return out


def estimate(opts, plan: dict, expected: list[tuple[str, int | None]], done: dict) -> dict | None:
    """Wall hours of all expected units at the measured speed (medians of the units done); None before one is done."""
    units_done = list(done.values())
    measured = {k: [u[k] for u in units_done if u.get(k)] for k in
                ("step_seconds_median", "eval_seconds_per_sample", "step_cpu_seconds", "eval_cpu_seconds_per_sample")}
    if not (measured["step_seconds_median"] and measured["eval_seconds_per_sample"]):
        return None
    n_trained = sum(1 for a, _ in expected if ARMS[a][0])
    n_eval = opts.limit * len(CATEGORIES) if opts.limit else 600  # the run's own eval size

    # an HDR unit's training time beyond its steps: the regeneration rounds and dataset swaps between epochs
    hdr_extra = [u["train_seconds"] - sum(u["step_seconds"]) for a, s in expected
                 if ARMS[a][3] and (u := done.get(unit_name(a, s))) and u.get("train_seconds")
                 and u.get("step_seconds")]
    hdr_s = statistics.median(hdr_extra) if hdr_extra else 0.0
    n_hdr = sum(1 for a, _ in expected if ARMS[a][3])

    def hours(step_s: float, sample_s: float) -> float:
        return (n_trained * plan["total_steps"] * step_s + len(expected) * n_eval * sample_s + n_hdr * hdr_s) / 3600

    med = {k: statistics.median(v) if v else None for k, v in measured.items()}
    hdr_note = (f"HDR rounds at the measured {hdr_s / 60:.1f} min per HDR unit (wall)" if hdr_extra
                else "HDR generation rounds not included (no HDR unit done)")
    out = {"step_seconds": med["step_seconds_median"], "eval_seconds_per_sample": med["eval_seconds_per_sample"],
           "hdr_seconds_per_unit": hdr_s if hdr_extra else None,
           "hours_all_units": hours(med["step_seconds_median"], med["eval_seconds_per_sample"]),
           "note": f"{hdr_note}; multi-turn eval not included; medians of the units done"}
    if med["step_cpu_seconds"] and med["eval_cpu_seconds_per_sample"]:
        # an idle machine runs the --threads threads in parallel: wall ≈ CPU seconds / threads at best
        threads = opts.threads or os.cpu_count() or 1
        out["hours_idle_cores"] = hours(med["step_cpu_seconds"] / threads,
                                        med["eval_cpu_seconds_per_sample"] / threads)
        out.update(step_cpu_seconds=med["step_cpu_seconds"],
                   eval_cpu_seconds_per_sample=med["eval_cpu_seconds_per_sample"], threads=threads)
    return out


def build_report(opts, plan: dict, data_info: dict, expected: list[tuple[str, int | None]], cache: UnitCache,
                 configs: dict, versions: dict, command: str) -> dict:
    done = load_done(opts, expected, cache, configs)
    missing = [unit_name(a, s) for a, s in expected if unit_name(a, s) not in done]
    seeds = sorted({s for _, s in expected if s is not None})
    arms = list(dict.fromkeys(a for a, _ in expected))
    cats = CATEGORIES + ([MULTI_TURN] if any(MULTI_TURN in u["samples"] for u in done.values()) else [])
    per_arm = {}
    for arm in arms:
        units = [done[unit_name(arm, s)] for s in ([None] if not ARMS[arm][0] else seeds) if unit_name(arm, s) in done]
        if units:
            per_arm[arm] = arm_summary(units, cats, opts.resamples)
    comparisons = {}
    if REFERENCE in arms:
        for arm in arms:
            if arm != REFERENCE and ARMS[arm][0] and (c := compare(done, seeds, arm, REFERENCE, opts.resamples)):
                comparisons[arm] = c
    secondary = {}
    for arm, ref in SECONDARY.items():
        if arm in arms and ref in arms and (c := compare(done, seeds, arm, ref, opts.resamples)):
            secondary[f"{arm} vs {ref}"] = c
    units_done = list(done.values())
    peaks = {k: max((u[k] for u in units_done if u.get(k)), default=None)
             for k in ("train_peak_rss_mb", "eval_peak_rss_mb")}
    peaks["units"] = sum(1 for u in units_done if u.get("eval_peak_rss_mb"))
    # where the units ran, from their own records: the machine rebuilding the report may be another one
    unit_machines = Counter(f"{m['nproc']} cores ({m['cpu_model']}), torch {m['torch']}, {m['torch_threads']} threads"
                            for u in units_done if (m := u.get("machine")))
    return {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "unit_machines": unit_machines, "versions": versions, "opts": {k: v for k, v in vars(opts).items()},
            "plan": plan, "data": data_info,
            "units_done": sorted(done), "units_missing": missing, "arms": per_arm, "vs_sft": comparisons,
            "secondary": secondary, "between_seeds": between_seeds(done, arms, seeds, opts.resamples),
            "peak_rss_mb": peaks, "wall_seconds_units": sum(u.get("wall_seconds", 0) for u in units_done),
            "estimate": estimate(opts, plan, expected, done),
            "multi_turn": multi_turn_supported()[1].rstrip(".") or "supported"}
