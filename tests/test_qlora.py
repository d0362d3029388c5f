"""QLoRA: `load_in_4bit` is handed to TRL as trl/scripts/sft.py does, or refused before anything slow on the CPU."""

from pathlib import Path

import pytest
import torch

from balancetrl.scripts import balance_sft, preflight
from conftest import build_tiny_model

ROOT = Path(__file__).resolve().parent.parent
CPU_RECIPE = ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml"
DATA = ROOT / "tests" / "data" / "xlam_cot_sample.jsonl"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _flags(model_dir, out, *extra):
    return ["--config", str(CPU_RECIPE), "--model_name_or_path", str(model_dir), "--dataset_path",
            str(DATA), "--output_dir", str(out), "--use_peft", "true", "--run_check", "false", *extra]


# balance_sft.cli is what `balancetrl balance-sft` runs inside `accelerate launch`
def test_load_in_4bit_on_cpu_stops_before_anything_slow_naming_the_cause(model_dir, tmp_path, capsys):
    assert balance_sft.cli(_flags(model_dir, tmp_path / "run", "--load_in_4bit", "true")) == 2
    err = capsys.readouterr().err
    assert "`load_in_4bit: true` cannot be honoured" in err
    assert "runs on CUDA GPUs and this run is on the CPU" in err
    assert "drop `load_in_4bit` to train in `dtype`" in err
    assert not (tmp_path / "run").exists()  # no data split, no model load, no training


def test_load_in_8bit_without_peft_is_refused(model_dir, tmp_path, capsys):
    assert balance_sft.cli(_flags(model_dir, tmp_path / "run", "--load_in_8bit", "true", "--use_peft", "false")) == 2
    err = capsys.readouterr().err
    assert "`load_in_8bit: true` cannot be honoured" in err and "set `use_peft: true` (QLoRA)" in err


class Built(Exception):
    pass


def test_quantization_config_is_trls_and_trl_loads_the_model(model_dir, tmp_path, monkeypatch):
    # The GPU part cannot run here; this checks the wiring up to the trainer: TRL's get_quantization_config, and the
    # model handed to TRL by path so that it loads it with that config (as trl/scripts/sft.py does).
    from balancetrl import trainer as trainer_module

    seen = {}

    def capture(self, model, args=None, *pos, **kwargs):
        seen.update(model=model, args=args, **kwargs)
        raise Built

    monkeypatch.setattr(preflight, "check_quantization", lambda model_args, training_args: None)
    monkeypatch.setattr(trainer_module.BalanceSFTTrainer, "__init__", capture)
    parser = balance_sft.make_parser()
    script_args, training_args, model_args, _, hdr, _, _ = parser.parse_recipe(
        _flags(model_dir, tmp_path / "run", "--load_in_4bit", "true", "--dtype", "bfloat16"))
    with pytest.raises(Built):
        balance_sft.main(script_args, training_args, model_args, hdr)
    config = seen["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.bnb_4bit_quant_type == model_args.bnb_4bit_quant_type
    assert seen["model"] == str(model_dir)  # loaded by TRL with the config, not by us in full precision
    assert seen["args"].model_init_kwargs["dtype"] == "bfloat16"
    assert seen["peft_config"] is not None
