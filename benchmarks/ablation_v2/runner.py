"""The command line (`python -m benchmarks.ablation_v2`): which units this run expects, which the unit cache already
holds for their config (skipped), the others run one at a time, seed-major; then the report from the cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import benchmarks.ablation_v2 as package
from benchmarks.ablation_v2.config import ARMS, MODEL, step_plan, unit_configs, unit_name
from benchmarks.ablation_v2.data import build_data
from benchmarks.ablation_v2.options import add_unit_options, check_unit_options, refuse_emulated_bf16, units_command
from benchmarks.ablation_v2.report import plots, versions, write_markdown
from benchmarks.ablation_v2.stats import build_report
from benchmarks.ablation_v2.unit_cache import UnitCache, config_hash
from benchmarks.ablation_v2.units import release_work, run_unit


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation_v2", description=package.__doc__.split("\n")[0])
    add_unit_options(p, arms=ARMS, seeds="0,1", work="outputs/ablation_v2", data_help="training data (checked here)",
                     max_length_help="longer base rows are dropped (and counted)",
                     bf16_help="the eval decodes in bf16 too")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps per trained arm (0: --epochs over the base set)")
    p.add_argument("--epochs", type=int, default=2, help="cold-start epochs over the base set when --steps 0")
    p.add_argument("--fixed-delta", type=float, default=0.08, help="ssb_fixed_lo/hi: λ = α ∓ this")
    p.add_argument("--min-hard", type=int, default=32, help="hard set size; topped up with long-CoT synthetic rows")
    p.add_argument("--hard-seed", type=int, default=7)
    p.add_argument("--hard-alpha-min", type=float, default=0.85)
    p.add_argument("--hdr-rounds", type=int, default=1)
    p.add_argument("--round-size", type=int, default=0, help="samples per round epoch (0: |hard set|)")
    p.add_argument("--num-generations", type=int, default=2)
    p.add_argument("--hdr-max-new-tokens", type=int, default=512)
    p.add_argument("--gen-batch", type=int, default=8)
    p.add_argument("--limit", type=int, default=0, help="BFCL items per category (0: all 400 + 200); smoke runs only")
    p.add_argument("--max-new-tokens", type=int, default=512, help="eval generation length (long CoT + call)")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--multi-turn-limit", type=int, default=50, help="first N multi_turn_base items (0: off)")
    opts = p.parse_args(argv)
    check_unit_options(p, opts)
    unknown = set(opts.arm_list) - set(ARMS)
    if unknown:
        p.error(f"unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    if any(ARMS[a][3] for a in opts.arm_list) and opts.hdr_rounds < 1:
        p.error("HDR arms need --hdr-rounds >= 1")
    return opts


def main(argv=None):
    opts = parse_args(argv)
    import torch

    from balancetrl.models import load_tokenizer

    if opts.threads:
        torch.set_num_threads(opts.threads)
    command = units_command("benchmarks.ablation_v2", argv)
    work, out = Path(opts.work), Path(opts.out)
    cache = UnitCache(Path(opts.units) if opts.units else work / "units")
    data = build_data(opts, load_tokenizer(MODEL))
    print(json.dumps(data["info"], default=str)[:2000], flush=True)
    needs_hard = any(ARMS[a][3] for a in opts.arm_list)
    if needs_hard and not data["hard"]:
        raise SystemExit("HDR arms need hard samples and none were found")
    plan = step_plan(opts, len(data["base"]), len(data["hard"]))
    expected, configs = unit_configs(opts, data, plan)
    print(f"plan {plan}; {len(expected)} units", flush=True)
    units = {unit_name(a, s): (a, s) for a, s in expected}
    for name in [] if opts.report_only else cache.pending(list(units), configs, opts.max_units):
        arm, seed = units[name]
        refuse_emulated_bf16(opts)  # only when a unit is about to run: a run with every unit cached still reports
        print(f"== {name}" + (" (stale cache: config changed)" if cache.stale(name, configs[name]) else ""), flush=True)
        # the work folder's saved weights and journals resume only this config in this --units folder: a new folder
        # (after a code change) trains and evaluates again
        key = config_hash({**configs[name], "units": str(cache.directory.resolve())})
        result = run_unit(arm, seed, opts, data, plan, work / name, key=key)
        cache.save(name, configs[name], result)
        release_work(work / name)
        print(json.dumps({k: result.get(k) for k in ("accuracy", "global_step", "step_seconds_median",
                                                     "final_lambda", "eval_seconds_per_sample", "wall_seconds")}),
              flush=True)
    res = build_report(opts, plan, data["info"], expected, cache, configs, versions(), command)
    res["opts"].pop("arm_list", None)
    img_dir = out / "ablation_v2"
    img_dir.mkdir(parents=True, exist_ok=True)
    images = plots(res, {n: cache.load(n, configs[n]) for n in res["units_done"]}, img_dir)
    from balancetrl.data.io import atomic_write

    with atomic_write(out / "ablation_v2.json") as f:
        json.dump(res, f, indent=1, default=str)
    write_markdown(res, out / "ablation_v2.md", images)
    print(f"wrote {out / 'ablation_v2.md'}: {len(res['units_done'])} units done, {len(res['units_missing'])} missing",
          flush=True)
