"""The command line (`python -m benchmarks.mechanism`): the held-out split, the units (base first, then every arm
seed-major), each cached as it finishes, then the report from the cache."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import benchmarks.mechanism as package
from benchmarks.ablation_v2.config import MODEL, REFERENCE, unit_name
from benchmarks.ablation_v2.data import sha, supervised_alpha
from benchmarks.ablation_v2.options import add_unit_options, check_unit_options, refuse_emulated_bf16, units_command
from benchmarks.ablation_v2.unit_cache import UnitCache
from benchmarks.ablation_v2.units import peak_rss_mb, train_unit
from benchmarks.common import machine

ARMS = ("sft", "ssb", "ssb_lr")  # ablation v2's arms of these names
BASE_ANSWER_BATCH = 8  # left padding of a batch can flip a greedy token: part of the base unit's config


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mechanism", description=package.__doc__.split("\n")[0])
    add_unit_options(p, arms=ARMS, seeds="0,1,2", work="outputs/mechanism", data_help="long-CoT data (checked here)",
                     max_length_help="longer training rows are dropped (and counted)",
                     bf16_help="scoring stays fp32")
    p.add_argument("--heldout-percent", type=int, default=20, help="share of the base set held out (by id hash)")
    p.add_argument("--epochs", type=int, default=1, help="epochs over the training rows")
    p.add_argument("--steps", type=int, default=0, help="cap on optimizer steps (0: --epochs); `make evidence` caps at 16 to fit 3 h of CPU")
    p.add_argument("--forgetting-prompts", type=int, default=50, help="first N BFCL irrelevance questions")
    p.add_argument("--forgetting-max-new-tokens", type=int, default=128, help="length of the base model's answers")
    p.add_argument("--score-batch", type=int, default=2, help="sequences per teacher-forced forward")
    opts = p.parse_args(argv)
    check_unit_options(p, opts)
    if set(opts.arm_list) - set(ARMS) or REFERENCE not in opts.arm_list:
        p.error(f"--arms: a subset of {list(ARMS)} that includes {REFERENCE}")
    if not 0 < opts.heldout_percent < 100:
        p.error("--heldout-percent must be in 1..99")
    opts.fixed_delta = 0.0  # read by ablation v2's lambda_settings for its fixed-λ arms only
    return opts


def held_out(record_id: str, percent: int) -> bool:
    """Whether the record of this id is held out: a fixed function of the id, so of nothing a run produces."""
    return int(hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:8], 16) % 100 < percent


def build_data(opts, tokenizer) -> dict:
    """The split of --data's checked base set: training rows (`supervised_alpha`'s, over --max-length dropped), the
    held-out items and their tokens as training tokenizes them, and a record of both."""
    from balancetrl.eval.heldout import load_items, segment_tokens
    from balancetrl.segments import SegmentSpec

    items, skipped = load_items(opts.data)
    base = [it for it in items if it.check == "base"]
    heldout = [it for it in base if held_out(it.id, opts.heldout_percent)]
    if not heldout or len(heldout) == len(base):
        raise SystemExit(f"--heldout-percent {opts.heldout_percent} holds out {len(heldout)} of {len(base)} records")
    train, dropped, sup = supervised_alpha([it.record for it in base if not held_out(it.id, opts.heldout_percent)],
                                           tokenizer, opts.max_length)
    tokens = [segment_tokens(it, tokenizer, tokenizer.chat_template, SegmentSpec()) for it in heldout]
    info = {
        "path": str(opts.data), "sha256": hashlib.sha256(Path(opts.data).read_bytes()).hexdigest()[:16],
        "checked_base": len(base), "checked_hard": sum(it.check == "hard" for it in items), "skipped": len(skipped),
        "heldout": len(heldout), "heldout_ids": [it.id for it in heldout],
        "heldout_tokens_mean": sum(len(t["input_ids"]) for t in tokens) / len(tokens),
        "train_used": len(train), "train_over_max_length": len(dropped), **sup,
    }
    info["fingerprint"] = sha({"train": train, "heldout": info["heldout_ids"]})
    return {"base": train, "heldout": heldout, "heldout_tokens": tokens, "info": info}


def step_plan(opts, n_train: int) -> dict:
    """Optimizer steps of every trained arm (one process, no accumulation: one batch a step)."""
    steps = opts.epochs * -(-n_train // opts.batch)
    return {"base_used": n_train, "total_steps": min(steps, opts.steps) if opts.steps else steps}


def unit_config(arm: str, seed: int | None, opts, data: dict, plan: dict) -> dict:
    from benchmarks.ablation_v2.config import lambda_settings

    cfg = {"arm": arm, "model": MODEL, "data": data["info"]["fingerprint"],
           "forgetting": {"prompts": opts.forgetting_prompts, "max_new_tokens": opts.forgetting_max_new_tokens,
                          "batch": BASE_ANSWER_BATCH}}
    if arm == "base":
        return cfg
    cfg.update(seed=seed, plan=plan, batch=opts.batch, lr=opts.lr, max_length=opts.max_length, bf16=opts.bf16,
               device=opts.device, lam=lambda_settings(arm, opts, data["info"]["alpha_supervised"]))
    return cfg


def heldout_rows(model, data: dict, batch_size: int) -> list[dict]:
    """Per held-out item: id, CoT / call token counts and mean NLLs (`balancetrl.eval.heldout.segment_nll`)."""
    from balancetrl.eval.heldout import segment_nll

    out = []
    for item, nll in zip(data["heldout"], segment_nll(model, data["heldout_tokens"], batch_size), strict=True):
        out.append({"id": item.id, "n_cot": nll.n_cot, "n_call": nll.n_call,
                    "L_c": nll.nll_cot_sum / nll.n_cot if nll.n_cot else None,
                    "L_f": nll.nll_call_sum / nll.n_call if nll.n_call else None})
    return out


def run_base(opts, data: dict) -> dict:
    """The untrained model: its held-out losses and its greedy answers to the forgetting prompts (every unit scores
    those answers)."""
    from balancetrl.eval.forgetting import PROMPT_SET, base_answers, irrelevance_prompts
    from balancetrl.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(MODEL)
    t0 = time.perf_counter()
    prompts = irrelevance_prompts(opts.forgetting_prompts)
    answers = base_answers(model, tokenizer, [p["messages"] for p in prompts], opts.forgetting_max_new_tokens,
                           batch_size=BASE_ANSWER_BATCH)
    return {"arm": "base", "seed": None, "heldout": heldout_rows(model, data, opts.score_batch),
            "forgetting_prompt_set": PROMPT_SET,
            "base_answers": [{"id": p["id"], "prompt_ids": a.prompt_ids, "answer_ids": a.answer_ids, "text": a.text}
                             for p, a in zip(prompts, answers, strict=True)],
            "wall_seconds": time.perf_counter() - t0}


def run_trained(arm: str, seed: int, opts, data: dict, plan: dict, base_unit: dict, work: Path) -> dict:
    """Train `arm` on seed `seed`, then score the held-out items and the base model's answers."""
    from transformers import set_seed

    from balancetrl.eval.forgetting import BaseAnswer, score_answers
    from balancetrl.models import load_model, load_model_and_tokenizer

    t0 = time.perf_counter()
    set_seed(seed)
    peak_rss_mb(reset=True)
    model, tokenizer = load_model_and_tokenizer(MODEL)
    model, result = train_unit(arm, seed, model, tokenizer, opts, data, plan, work)
    peak_rss_mb(reset=True)
    t_score = time.perf_counter()
    model.to("cpu").float()
    base_model = load_model(MODEL, dtype="float32")
    answers = [BaseAnswer(a["prompt_ids"], a["answer_ids"], a["text"]) for a in base_unit["base_answers"]]
    forgetting = score_answers(base_model, model, answers, opts.score_batch)
    result.update({
        "heldout": heldout_rows(model, data, opts.score_batch),
        "forgetting": [{"id": a["id"], "answer_tokens": r["answer_tokens"], "kl_mean": r["kl_mean"],
                        "tuned_nll_mean": r["tuned_nll_mean"], "base_nll_mean": r["base_nll_mean"]}
                       for a, r in zip(base_unit["base_answers"], forgetting, strict=True)],
        "score_seconds": time.perf_counter() - t_score, "score_peak_rss_mb": peak_rss_mb(),
        "wall_seconds": time.perf_counter() - t0,
    })
    result.pop("step_seconds", None)  # per-step list: the median stays
    return result


def main(argv=None):
    opts = parse_args(argv)
    import torch

    from balancetrl.models import load_tokenizer
    from benchmarks.mechanism.report import build_report, write_report

    if opts.threads:
        torch.set_num_threads(opts.threads)
    work = Path(opts.work)
    cache = UnitCache(Path(opts.units) if opts.units else work / "units")
    data = build_data(opts, load_tokenizer(MODEL))
    plan = step_plan(opts, len(data["base"]))
    print(json.dumps({k: v for k, v in data["info"].items() if k != "heldout_ids"}, default=str), flush=True)
    expected = [("base", None)] + [(a, s) for s in opts.seeds for a in opts.arm_list]
    configs = {unit_name(a, s): unit_config(a, s, opts, data, plan) for a, s in expected}
    print(f"plan {plan}; {len(expected)} units", flush=True)
    units = {unit_name(a, s): (a, s) for a, s in expected}
    for name in [] if opts.report_only else cache.pending(list(units), configs, opts.max_units):
        arm, seed = units[name]
        if arm != "base":
            refuse_emulated_bf16(opts)
        print(f"== {name}", flush=True)
        if arm == "base":
            result = run_base(opts, data)
        else:
            base_unit = cache.load("base", configs["base"])
            result = run_trained(arm, seed, opts, data, plan, base_unit, work / name)
        result.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"), machine=machine())
        cache.save(name, configs[name], result)
        print(json.dumps({k: result.get(k) for k in ("final_lambda", "step_seconds_median", "wall_seconds")}),
              flush=True)
    done = {n: u for n in configs if (u := cache.load(n, configs[n]))}
    res = build_report(opts, plan, data["info"], expected, done, units_command("benchmarks.mechanism", argv))
    write_report(res, done, Path(opts.out))
    print(f"wrote {Path(opts.out) / 'mechanism.md'}: {len(res['units_done'])} units done, "
          f"{len(res['units_missing'])} missing", flush=True)
