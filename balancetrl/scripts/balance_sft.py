"""BalanceSFT training script: the counterpart of `trl/scripts/sft.py`, run by `balancetrl balance-sft`.

```bash
balancetrl balance-sft --config recipes/smollm2-135m/balance_sft_cpu.yaml            # CPU demo
balancetrl balance-sft --config recipes/qwen2.5-coder-7b-instruct/balance_sft.yaml \
    --accelerate_config zero3                                                        # 8 GPUs, ZeRO-3
python -m balancetrl.scripts.balance_sft --config RECIPE [--flag value ...]         # same, no launcher
```

The recipe holds `BalanceSFTScriptArguments` (data), TRL's `ModelConfig` (model, LoRA), `BalanceSFTConfig` (TRL's
`SFTConfig` + SSB) and an optional `hdr:` section (`HDRConfig`). The dataset is split with the Base Quality Check and
the Answer Check: base records train, hard ones feed HDR, rejected ones are written out with their reason.
"""

from __future__ import annotations

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
            `balancetrl check` reads (see docs/data.md). Set exactly one of `dataset_path`, `dataset_name` and the
            `datasets:` mixture (TRL's `DatasetMixtureConfig`). A relative path under `balancetrl/` that does not
            exist from the current directory is read from the installed package: `balancetrl/data/demo/train.jsonl`,
            the demo set, works from the repository root and from a wheel installed anywhere.
        dataset_name (`str`, *optional*):
            TRL's key: a Hub dataset id or a local dataset folder, loaded with `datasets.load_dataset` (a
            `save_to_disk` folder with `load_from_disk`, a local data file as its `train` split). Its rows are
            converted and checked like a local file; JSON / JSON-lines data files are read record-exact (as text,
            each line decoded with `json`: tools and arguments keep exactly their keys).
        dataset_config (`str`, *optional*):
            Configuration name of `dataset_name` (`name` of `datasets.load_dataset`).
        dataset_train_split (`str`, *optional*, defaults to `"train"`):
            Split of `dataset_name` (or of the mixture) to train on.
        dataset_test_split (`str`, *optional*, defaults to `"test"`):
            Split of `dataset_name` (or of the mixture, with `test_split_size`) to evaluate on when `eval_strategy`
            is not `"no"` and no `eval_dataset_path` is given.
        dataset_streaming (`bool`, *optional*, defaults to `False`):
            Stream `dataset_name` instead of downloading it whole (the check reads it once, in order).
        dataset_format (`str`, *optional*, defaults to `"auto"`):
            Format of the data (`auto` detects it from the first record).
        dataset_info (`str`, *optional*):
            LLaMA-Factory `dataset_info.json` (or one entry of it): its `formatting` (sharegpt / openai), `columns`
            and `tags` say how to read the data.
        dataset_info_name (`str`, *optional*):
            The entry of `dataset_info` to use, when the file holds several.
        dataset_mapping (`str`, *optional*):
            A mapping file (YAML or JSON) for rows of no built-in format: which columns hold the query (a string or
            a list of turns), tools, answer calls, system prompt and response; what the role tags mean; the answer
            calls' name / argument keys (`balancetrl.data.mapping.RowMapping`, docs/data.md). Read when the recipe
            is parsed, so an unknown key fails before anything loads. Leave `dataset_format` at `auto`.
        eval_dataset_path (`str`, *optional*):
            Evaluation data (same formats, and the same `balancetrl/` rule as `dataset_path`); only records passing
            both checks are used. Needs `eval_strategy`.
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
            turn), `qwen3`, `llama3_training` (balancetrl's Llama 3.1/3.2 template with tools, `<think>` reasoning and
            generation markers), or `keep` (the model's own; it must render `reasoning_content`).
        model_fsdp_size (`int`, *optional*):
            Shard the model with FSDP2 over this many processes as it loads (transformers'
            `from_pretrained(distributed_config=DistributedConfig(fsdp_size=N))`); Trainer then wraps nothing. This is
            FSDP2 without accelerate's FSDP plugin, the route that also runs on CPU ranks (launch with
            `--accelerate_config multi_cpu`); on GPUs the `fsdp2` accelerate config is the usual route. Set it to the
            number of processes. transformers cannot resume such a run: set `save_only_model: true` or
            `save_strategy: "no"`.
    """

    dataset_path: str | None = field(default=None, metadata={"help": "Training data file or save_to_disk folder."})
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id or local dataset folder/file."})
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration name of dataset_name."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(default="test", metadata={"help": "Split to evaluate on."})
    dataset_streaming: bool = field(default=False, metadata={"help": "Stream dataset_name."})
    dataset_format: str = field(default="auto", metadata={"help": "Format of the data ('auto' detects it)."})
    dataset_info: str | None = field(default=None, metadata={"help": "LLaMA-Factory dataset_info.json (or an entry)."})
    dataset_info_name: str | None = field(default=None, metadata={"help": "The entry of dataset_info to use."})
    dataset_mapping: str | None = field(default=None, metadata={"help": "Mapping file for rows of other shapes."})
    eval_dataset_path: str | None = field(default=None, metadata={"help": "Evaluation data (same formats)."})
    run_check: bool = field(default=True, metadata={"help": "Split into base / hard / rejected with the checks."})
    fix: bool = field(default=False, metadata={"help": "Repair fixable format defects during the check."})
    allow_missing_cot: bool = field(default=False, metadata={"help": "Keep assistant turns without CoT."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N base records."})
    max_hard_samples: int | None = field(default=None, metadata={"help": "Give HDR the first N hard records."})
    model_fsdp_size: int | None = field(
        default=None, metadata={"help": "Shard the model with FSDP2 at load time over N processes (transformers)."})
    chat_template: str = field(
        default="qwen3_training",
        metadata={"help": "qwen3_training, qwen3, llama3_training or keep.",
                  "choices": ["qwen3_training", "qwen3", "llama3_training", "keep"]},
    )

    def __post_init__(self):
        # argparse checks `choices` for flags only; a recipe's values arrive as defaults and are checked here
        from balancetrl.data.formats import FORMATS
        from balancetrl.models import CHAT_TEMPLATES
        from balancetrl.scripts.packaged import package_data_path

        # the shipped demo data by its repository path, from a wheel too (a path that exists here wins)
        self.dataset_path = package_data_path(self.dataset_path)
        self.eval_dataset_path = package_data_path(self.eval_dataset_path)

        if self.chat_template not in CHAT_TEMPLATES:
            raise ValueError(f"chat_template must be one of {', '.join(CHAT_TEMPLATES)}, got {self.chat_template!r} "
                             "(keep: the model's own template, which must render reasoning_content)")
        if self.dataset_format not in ("auto", *FORMATS):
            raise ValueError(f"dataset_format must be auto or one of {', '.join(FORMATS)}, got "
                             f"{self.dataset_format!r}")
        if self.dataset_mapping is not None and Path(self.dataset_mapping).is_file():
            from balancetrl.data.mapping import load_mapping

            load_mapping(self.dataset_mapping)  # a typo in the mapping fails with the recipe (a missing file: preflight)
        for name in ("max_train_samples", "max_hard_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an integer >= 0 or unset (all records), got {value!r}")


def make_parser(prog: str | None = None):
    from trl import DatasetMixtureConfig, ModelConfig

    from balancetrl.scripts.recipe import RecipeParser
    from balancetrl.trainer.balance_sft_config import BalanceSFTConfig

    return RecipeParser((BalanceSFTScriptArguments, BalanceSFTConfig, ModelConfig, DatasetMixtureConfig), prog=prog)


def dataset_label(script_args, mixture=None) -> str:
    """How reports and the model card name the training data."""
    if mixture is not None and mixture.datasets:
        return " + ".join(d.path for d in mixture.datasets)
    return script_args.dataset_name or script_args.dataset_path


def data_source(script_args, mixture=None, split: str = "train"):
    """The rows to check: `dataset_path` as is, or the `split` of `dataset_name` / the mixture as a `Dataset`."""
    from balancetrl.data.hub import (
        check_arrow_rows,
        load_mixture,
        load_named_dataset,
        pick_split,
    )

    train = split == script_args.dataset_train_split
    if mixture is not None and mixture.datasets:
        loaded = load_mixture(mixture)
    elif script_args.dataset_name:
        loaded = load_named_dataset(script_args.dataset_name, script_args.dataset_config,
                                    streaming=script_args.dataset_streaming)
    else:
        return script_args.dataset_path if train else None
    dataset = pick_split(loaded, split, "dataset_train_split" if train else "dataset_test_split")
    check_arrow_rows(dataset, dataset_label(script_args, mixture))
    return dataset


def conversation_tags(script_args):
    """(format, tags) from `dataset_info`, or (`dataset_format`, None)."""
    from balancetrl.data.formats import resolve_format

    return resolve_format(script_args.dataset_format, script_args.dataset_info, script_args.dataset_info_name)


def row_mapping(script_args):
    """The `dataset_mapping` file's `RowMapping`, or None."""
    from balancetrl.data.mapping import load_mapping

    return load_mapping(script_args.dataset_mapping) if script_args.dataset_mapping else None


def split_dataset(script_args, output_dir: str, cot: tuple[str, str], mixture=None) -> tuple[list, list, dict]:
    """Base and hard records (all processes) and the check report; the main process checks and writes the files."""
    from balancetrl.runtime.distributed import on_main_process

    return on_main_process(_check_and_read, script_args, Path(output_dir) / "data", cot, mixture)


def _check_and_read(script_args, data_dir: Path, cot: tuple[str, str], mixture=None) -> tuple[list, list, dict]:
    from balancetrl.data.split import read_split, run_check

    fmt, tags = conversation_tags(script_args)
    report = run_check(data_source(script_args, mixture, script_args.dataset_train_split), data_dir, format=fmt,
                       fix=script_args.fix, require_cot=not script_args.allow_missing_cot, cot_start=cot[0],
                       cot_end=cot[1], progress=False, tags=tags, label=dataset_label(script_args, mixture),
                       check=script_args.run_check, mapping=row_mapping(script_args))
    return read_split(data_dir / "base.jsonl"), read_split(data_dir / "hard.jsonl"), report


def _eval_records(script_args, mixture, cot: tuple[str, str]) -> list[dict] | None:
    """The eval set (main process): `eval_dataset_path`, else the test split of `dataset_name` / the mixture."""
    source = script_args.eval_dataset_path or data_source(script_args, mixture, script_args.dataset_test_split)
    return None if source is None else load_eval_records(script_args, source, cot)


def load_eval_records(script_args, source, cot: tuple[str, str]) -> list[dict]:
    from balancetrl.data.checks import check_record
    from balancetrl.data.formats import load_records

    fmt, tags = conversation_tags(script_args)
    records = []
    for row in load_records(source, format=fmt, tags=tags, cot=cot, mapping=row_mapping(script_args)):
        if row.error:
            continue
        # the normalised record, as base.jsonl holds the training records: eval renders the way training does
        result = check_record(row.data, fix=script_args.fix, require_cot=not script_args.allow_missing_cot,
                              cot_start=cot[0], cot_end=cot[1])
        if result.outcome == "base":
            records.append(result.record)
    return records


def model_and_tokenizer(model_args, script_args, training_args, local: bool):
    """A local spec (alias, .gguf, folder) is loaded here; a hub id is left to TRL (model_init_kwargs)."""
    from balancetrl.models import apply_tool_chat_template, load_model_and_tokenizer

    spec = model_args.model_name_or_path
    sharding = {}
    if script_args.model_fsdp_size is not None:
        from transformers.distributed import DistributedConfig

        sharding["distributed_config"] = DistributedConfig(fsdp_size=script_args.model_fsdp_size)
    if local:
        model, tokenizer = load_model_and_tokenizer(spec, dtype=model_args.dtype or "float32",
                                                    chat_template=script_args.chat_template,
                                                    attn_implementation=model_args.attn_implementation, **sharding)
        return model, tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec, revision=model_args.model_revision,
                                              trust_remote_code=training_args.trust_remote_code)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision, "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation, "dtype": model_args.dtype, **sharding,
        **(training_args.model_init_kwargs or {}),
    }
    return spec, apply_tool_chat_template(tokenizer, script_args.chat_template)


def main(script_args, training_args, model_args, hdr_config, mixture=None) -> dict:
    from accelerate import PartialState
    from trl import get_peft_config, get_quantization_config

    from balancetrl.artifacts.plots import plot_training
    from balancetrl.artifacts.run_summary import build_summary, format_summary, write_summary
    from balancetrl.data.training import to_training_dataset
    from balancetrl.runtime.distributed import on_main_process
    from balancetrl.scripts import preflight
    from balancetrl.trainer.balance_sft_trainer import BalanceSFTTrainer

    # Fail in seconds, not after the model load or the cold start. Only the main process reads the data files.
    if PartialState().is_main_process:
        preflight.check_data_source(script_args, mixture)
        if script_args.eval_dataset_path is not None:
            preflight.check_dataset_path(script_args.eval_dataset_path, "eval_dataset_path")
        if hdr_config is not None and hdr_config.hard_set is not None:
            preflight.check_dataset_path(hdr_config.hard_set, "hdr.hard_set")
    local = preflight.check_model_spec(model_args.model_name_or_path)
    preflight.check_quantization(model_args, training_args)
    preflight.check_judges(hdr_config)

    # The model (and its card) is pushed once, at the end, by balancetrl.artifacts.hub_push: the Trainer's own pushes
    # would upload TRL's card without the BalanceSFT section (and every checkpoint).
    push, training_args.push_to_hub = training_args.push_to_hub, False
    # transformers pickles the whole TrainingArguments into training_args.bin (and every checkpoint): the token
    # must not be in them. Only balancetrl.artifacts.hub_push, at the end, needs it.
    hub_token, training_args.hub_token = training_args.hub_token, None

    cot = (training_args.cot_start, training_args.cot_end)
    base, hard, report = split_dataset(script_args, training_args.output_dir, cot, mixture)
    if hdr_config is not None and hdr_config.hard_set is not None:
        # the recipe names its own hard set: HDR regenerates those records, not the check's hard ones
        from balancetrl.data.split import read_split

        hard = on_main_process(read_split, hdr_config.hard_set)
    train = base[: script_args.max_train_samples] if script_args.max_train_samples is not None else base
    hdr_hard = hard[: script_args.max_hard_samples] if script_args.max_hard_samples is not None else hard
    counts = {**report["outcomes"], "train": len(train), "hdr_hard": len(hdr_hard) if hdr_config else 0}
    state = PartialState()
    if state.is_main_process:
        print(f"data: {counts['base']} base, {counts['hard']} hard, {counts['rejected']} rejected "
              f"(written to {Path(training_args.output_dir) / 'data'}); training on {len(train)} base records")
    if not train:
        raise preflight.PreflightError(f"no base record left to train on in {report['input']} "
                                       f"(see {Path(training_args.output_dir) / 'data' / 'report.json'})")

    callbacks = []
    if hdr_config is not None:
        if hdr_hard:
            from balancetrl.hdr.callback import HDRCallback

            callbacks.append(HDRCallback(hdr_config, hard_set=hdr_hard))
        elif state.is_main_process:
            print("HDR: the hard set is empty; training on the base set only")

    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_records = on_main_process(_eval_records, script_args, mixture, cot)
        if eval_records is not None:
            eval_dataset = to_training_dataset(eval_records)

    # QLoRA as in trl/scripts/sft.py: TRL loads the model (a local folder too) with the bitsandbytes config
    quantization_config = get_quantization_config(model_args)
    model, tokenizer = model_and_tokenizer(model_args, script_args, training_args,
                                           local and quantization_config is None)
    if quantization_config is not None and training_args.use_cpu:
        # transformers' bitsandbytes quantizer places a model loaded without a device map on the GPU when there is
        # one (TRL passes none on the CPU); `use_cpu` trains on the CPU, so the quantised weights go there
        training_args.model_init_kwargs = {"device_map": {"": "cpu"}, **training_args.model_init_kwargs}
    trainer = BalanceSFTTrainer(
        model=model, args=training_args, train_dataset=to_training_dataset(train), eval_dataset=eval_dataset,
        processing_class=tokenizer, peft_config=get_peft_config(model_args), callbacks=callbacks,
        quantization_config=quantization_config,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    seconds = time.perf_counter() - start
    trainer.save_model(training_args.output_dir)

    summary = build_summary(trainer, counts, model_args.model_name_or_path, report["input"], seconds,
                            chat_template=script_args.chat_template)
    if trainer.accelerator.is_main_process:
        from balancetrl.artifacts.model_card import write_model_card

        plot_training(Path(training_args.output_dir) / "training.png", trainer.state.log_history)
        write_summary(training_args.output_dir, summary)
        write_model_card(training_args.output_dir, summary, hub_model_id=training_args.hub_model_id)
        if push:
            from balancetrl.artifacts.hub_push import push_run

            url = push_run(training_args.output_dir, training_args.hub_model_id, token=hub_token,
                           private=bool(training_args.hub_private_repo), revision=training_args.hub_revision)
            print(f"pushed to {url}")
        print(format_summary(summary, training_args.output_dir))
    trainer.accelerator.wait_for_everyone()
    trainer.end()  # trackers finished, the process group destroyed (transformers 5's Trainer.end)
    return summary


def cli(argv: list[str] | None = None) -> int:
    from balancetrl.data.io import InputError
    from balancetrl.scripts.preflight import PreflightError
    from balancetrl.scripts.recipe import RecipeError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog="balancetrl balance-sft")
    try:
        script_args, training_args, model_args, mixture, hdr_config, _, _ = parser.parse_recipe(argv)
        main(script_args, training_args, model_args, hdr_config, mixture)
    except (RecipeError, PreflightError, InputError) as e:
        print(f"balancetrl balance-sft: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
