"""`balance_sft_summary.json`: what a finished run records next to its model (data counts, SSB settings, final λ
and losses, the HDR summary), read again by `balancetrl push` and the model card, and printed at the end of training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SUMMARY_FILE = "balance_sft_summary.json"
SSB_KEYS = ("ssb", "ssb_lambda_init", "ssb_lambda_mode", "ssb_lambda_lr", "ssb_lambda_min", "ssb_lambda_max",
            "cot_start", "cot_end")


def build_summary(trainer, data_counts: dict, base_model: str, dataset: str, seconds: float,
                  chat_template: str | None = None) -> dict:
    args, history = trainer.args, trainer.state.log_history
    losses = [e["loss"] for e in history if "loss" in e]
    evals = [e["eval_loss"] for e in history if "eval_loss" in e]
    hdr_file = Path(args.output_dir) / "hdr" / "summary.json"
    hdr = json.loads(hdr_file.read_text()) if hdr_file.is_file() else None
    return {
        "base_model": base_model,
        "dataset": dataset,
        # the format the model answers in: the model card's quick start parses calls the way this template writes them
        "chat_template": chat_template,
        "ssb_settings": {k: getattr(args, k) for k in SSB_KEYS},
        "final_lambda": trainer.ssb_lambda,
        "final_train_loss": losses[-1] if losses else None,
        "final_eval_loss": evals[-1] if evals else None,
        "global_steps": trainer.state.global_step,
        "data": data_counts,
        "hdr": hdr,
        "train_seconds": round(seconds, 1),
        "engine": getattr(trainer, "engine", None),  # what really trained (balancetrl/runtime/engines.py)
        "training": {k: getattr(args, k) for k in (
            "learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
            "warmup_steps", "max_length", "seed", "world_size")},
    }


def write_summary(output_dir: str | os.PathLike, summary: dict) -> Path:
    path = Path(output_dir) / SUMMARY_FILE
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path


def read_summary(output_dir: str | os.PathLike) -> dict:
    path = Path(output_dir) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {output_dir} the output_dir of a finished balance-sft run?")
    return json.loads(path.read_text())


def format_summary(summary: dict, output_dir: str) -> str:
    d, hdr = summary["data"], summary.get("hdr")
    lam = summary["final_lambda"]
    lines = [
        "BalanceSFT finished",
        f"  data      : {d.get('base', 0)} base, {d.get('hard', 0)} hard, {d.get('rejected', 0)} rejected "
        f"-> trained on {d.get('train', 0)} base, HDR on {d.get('hdr_hard', 0)} hard",
        f"  loss      : {summary['final_train_loss']}  (eval {summary['final_eval_loss']})  after "
        f"{summary['global_steps']} steps, {summary['train_seconds']} s",
        f"  λ         : {lam if lam is None else round(lam, 4)}  (init {summary['ssb_settings']['ssb_lambda_init']}, "
        f"{'SSB' if summary['ssb_settings']['ssb'] else 'plain SFT'})",
    ]
    if hdr:
        lines.append(f"  HDR       : {len(hdr['rounds'])} round(s), accepted {hdr['accepted_total']} of "
                     f"{hdr['initial_hard']} hard, {hdr['hard_remaining']} still hard")
    if summary.get("engine"):
        engine = summary["engine"]
        lines.append(f"  engine    : {engine['engine']} on {engine['processes']} process(es), {engine['device']}")
    lines += [
        f"  model     : {output_dir}",
        f"  plot      : {Path(output_dir) / 'training.png'}" + (f", {Path(output_dir) / 'hdr' / 'rounds.png'}" if hdr else ""),
        f"  summary   : {Path(output_dir) / SUMMARY_FILE}",
        f"  data split: {Path(output_dir) / 'data'} (base/hard/rejected.jsonl, report.json)",
    ]
    return "\n".join(lines)
