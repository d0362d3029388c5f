"""BalanceSFT training script: the counterpart of `trl/scripts/sft.py`, run by `balancetrl balance-sft`.

```bash
balancetrl balance-sft --config recipes/smollm2-135m/balance_sft_cpu.yaml            # CPU demo
balancetrl balance-sft --config recipes/qwen2.5-coder-7b-instruct/balance_sft.yaml \
    --accelerate_config recipes/accelerate/zero3.yaml                                # 8 GPUs, ZeRO-3
python -m balancetrl.scripts.balance_sft --config RECIPE [--flag value ...]         # same, no launcher
```

The recipe holds `BalanceSFTScriptArguments` (data), TRL's `ModelConfig` (model, LoRA), `BalanceSFTConfig` (TRL's
`SFTConfig` + SSB) and an optional `hdr:` section (`HDRConfig`). The dataset is split with the Base Quality Check and
the Answer Check: base records train, hard ones feed HDR, rejected ones are written out with their reason.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BalanceSFTScriptArguments:
    r"""
    Data arguments of the BalanceSFT script.

    Parameters:
        dataset_path (`str`):
            Training data: a `.jsonl`/`.json`/`.parquet` file or a `save_to_disk` folder, in any format
            `balancetrl check` reads (canonical records, xlam, xlam + CoT, messages + tools).
        dataset_format (`str`, *optional*, defaults to `"auto"`):
            Format of `dataset_path` (`auto` detects it from the first record).
        eval_dataset_path (`str`, *optional*):
            Evaluation data (same formats); only records passing both checks are used. Needs `eval_strategy`.
        run_check (`bool`, *optional*, defaults to `True`):
            Split the data with the Base Quality Check and the Answer Check into base / hard / rejected
            (`output_dir/data/*.jsonl`). `False`: every parseable record is base, there is no hard set.
        fix (`bool`, *optional*, defaults to `False`):
            Repair fixable format defects (the xlam `[ func(...)]` space) during the check.
        allow_missing_cot (`bool`, *optional*, defaults to `False`):
            Keep assistant turns without CoT (plain xlam data); they train the call part only.
        max_train_samples (`int`, *optional*):
            Train on the first N base records only (quick runs, the CPU demo).
        max_hard_samples (`int`, *optional*):
            Give HDR the first N hard records only (generation is the slow part on CPU).
        chat_template (`str`, *optional*, defaults to `"qwen3_training"`):
            Chat template given to the tokenizer: TRL's `qwen3_training` (ChatML with `<think>` in every assistant
            turn), `qwen3`, or `keep` (the model's own; it must render `reasoning_content`).
    """

    dataset_path: str | None = field(default=None, metadata={"help": "Training data file or save_to_disk folder."})
    dataset_format: str = field(default="auto", metadata={"help": "Format of the data ('auto' detects it)."})
    eval_dataset_path: str | None = field(default=None, metadata={"help": "Evaluation data (same formats)."})
    run_check: bool = field(default=True, metadata={"help": "Split into base / hard / rejected with the checks."})
    fix: bool = field(default=False, metadata={"help": "Repair fixable format defects during the check."})
    allow_missing_cot: bool = field(default=False, metadata={"help": "Keep assistant turns without CoT."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N base records."})
    max_hard_samples: int | None = field(default=None, metadata={"help": "Give HDR the first N hard records."})
    chat_template: str = field(
        default="qwen3_training",
        metadata={"help": "qwen3_training, qwen3 or keep.", "choices": ["qwen3_training", "qwen3", "keep"]},
    )


def make_parser(prog: str | None = None):
    from trl import ModelConfig

    from balancetrl.config import BalanceSFTConfig
    from balancetrl.scripts.recipe import RecipeParser

    return RecipeParser((BalanceSFTScriptArguments, BalanceSFTConfig, ModelConfig), prog=prog)


def split_dataset(script_args, output_dir: str, cot: tuple[str, str]) -> tuple[list, list, dict]:
    """Base and hard records (all processes) and the check report; only the main process writes the files."""
    from accelerate import PartialState

    from balancetrl.commands.check import run_check
    from balancetrl.data.io import read_records

    data_dir = Path(output_dir) / "data"
    state = PartialState()
    with state.main_process_first():
        if state.is_main_process:
            if script_args.run_check:
                report = run_check(script_args.dataset_path, data_dir, format=script_args.dataset_format,
                                   fix=script_args.fix, require_cot=not script_args.allow_missing_cot,
                                   cot_open=cot[0], cot_close=cot[1], progress=False)
            else:
                report = _copy_unchecked(script_args, data_dir)
    base = [r.data for r in read_records(data_dir / "base.jsonl") if not r.error]
    hard = [r.data for r in read_records(data_dir / "hard.jsonl") if not r.error] if script_args.run_check else []
    report = json.loads((data_dir / "report.json").read_text())
    return base, hard, report


def _copy_unchecked(script_args, data_dir: Path) -> dict:
    from balancetrl.data.formats import load_records
    from balancetrl.data.io import AtomicJsonlWriter, atomic_write

    writers = {name: AtomicJsonlWriter(data_dir / f"{name}.jsonl") for name in ("base", "rejected")}
    counts = {"base": 0, "hard": 0, "rejected": 0}
    for row in load_records(script_args.dataset_path, format=script_args.dataset_format):
        name = "rejected" if row.error else "base"
        writers[name].write(row.data if name == "base" else {"raw": row.raw, "reject_reason": row.error})
        counts[name] += 1
    for w in writers.values():
        w.close()
        w.commit()
    report = {"input": script_args.dataset_path, "total": sum(counts.values()), "outcomes": counts,
              "options": {"run_check": False}}
    with atomic_write(data_dir / "report.json") as f:
        json.dump(report, f, indent=2)
    return report


def load_eval_records(script_args, cot: tuple[str, str]) -> list[dict]:
    from balancetrl.data.checks import check_record
    from balancetrl.data.formats import load_records

    records = []
    for row in load_records(script_args.eval_dataset_path, format=script_args.dataset_format):
        if not row.error and check_record(row.data, require_cot=not script_args.allow_missing_cot,
                                          cot_open=cot[0], cot_close=cot[1]).outcome == "base":
            records.append(row.data)
    return records


def load_model(model_args, script_args, training_args, local: bool):
    """A local spec (alias, .gguf, folder) is loaded here; a hub id is left to TRL (model_init_kwargs)."""
    from balancetrl.models import apply_tool_chat_template, load_model_and_tokenizer

    spec = model_args.model_name_or_path
    if local:
        model, tokenizer = load_model_and_tokenizer(spec, dtype=model_args.dtype or "float32",
                                                    chat_template=script_args.chat_template,
                                                    attn_implementation=model_args.attn_implementation)
        return model, tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec, revision=model_args.model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation, "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    return spec, apply_tool_chat_template(tokenizer, script_args.chat_template)


def main(script_args, training_args, model_args, hdr_config) -> dict:
    from accelerate import PartialState
    from trl import get_peft_config

    from balancetrl.data.training import to_training_dataset
    from balancetrl.scripts import preflight
    from balancetrl.scripts.report import build_summary, format_summary, plot_training, write_summary
    from balancetrl.trainer import BalanceSFTTrainer

    # Fail in seconds, not after the model load or the cold start.
    preflight.check_dataset_path(script_args.dataset_path, "dataset_path")
    if script_args.eval_dataset_path is not None:
        preflight.check_dataset_path(script_args.eval_dataset_path, "eval_dataset_path")
    local = preflight.check_model_spec(model_args.model_name_or_path)
    preflight.check_judges(hdr_config)

    # The model (and its card) is pushed once, at the end, by push.py: the Trainer's own pushes would upload
    # TRL's card without the BalanceSFT section (and every checkpoint).
    push, training_args.push_to_hub = training_args.push_to_hub, False

    cot = (training_args.cot_start, training_args.cot_end)
    base, hard, report = split_dataset(script_args, training_args.output_dir, cot)
    train = base[: script_args.max_train_samples] if script_args.max_train_samples else base
    hdr_hard = hard[: script_args.max_hard_samples] if script_args.max_hard_samples is not None else hard
    counts = {**report["outcomes"], "train": len(train), "hdr_hard": len(hdr_hard) if hdr_config else 0}
    state = PartialState()
    if state.is_main_process:
        print(f"data: {counts['base']} base, {counts['hard']} hard, {counts['rejected']} rejected "
              f"(written to {Path(training_args.output_dir) / 'data'}); training on {len(train)} base records")
    if not train:
        raise preflight.PreflightError(f"no base record left to train on in {script_args.dataset_path} "
                                       f"(see {Path(training_args.output_dir) / 'data' / 'report.json'})")

    callbacks = []
    if hdr_config is not None:
        if hdr_hard:
            from balancetrl.hdr.callback import HDRCallback

            callbacks.append(HDRCallback(hdr_config, hard_set=hdr_hard))
        elif state.is_main_process:
            print("HDR: the hard set is empty; training on the base set only")

    eval_dataset = None
    if script_args.eval_dataset_path and training_args.eval_strategy != "no":
        eval_dataset = to_training_dataset(load_eval_records(script_args, cot))

    model, tokenizer = load_model(model_args, script_args, training_args, local)
    trainer = BalanceSFTTrainer(
        model=model, args=training_args, train_dataset=to_training_dataset(train), eval_dataset=eval_dataset,
        processing_class=tokenizer, peft_config=get_peft_config(model_args), callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(training_args.output_dir)

    summary = build_summary(trainer, counts, model_args.model_name_or_path, script_args.dataset_path, seconds)
    if trainer.accelerator.is_main_process:
        from balancetrl.model_card import write_model_card

        plot_training(Path(training_args.output_dir) / "training.png", trainer.state.log_history)
        write_summary(training_args.output_dir, summary)
        write_model_card(training_args.output_dir, summary, hub_model_id=training_args.hub_model_id)
        if push:
            from balancetrl.commands.push import push_run

            url = push_run(training_args.output_dir, training_args.hub_model_id, token=training_args.hub_token,
                           private=bool(training_args.hub_private_repo), revision=training_args.hub_revision)
            print(f"pushed to {url}")
        print(format_summary(summary, training_args.output_dir))
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):
        trainer.end()
    return summary


def cli(argv: list[str] | None = None) -> int:
    from balancetrl.scripts.preflight import PreflightError
    from balancetrl.scripts.recipe import RecipeError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog="balancetrl balance-sft")
    try:
        script_args, training_args, model_args, hdr_config, _, _ = parser.parse_recipe(argv)
        main(script_args, training_args, model_args, hdr_config)
    except (RecipeError, PreflightError) as e:
        print(f"balancetrl balance-sft: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
