"""Every shipped recipe parses into BalanceSFTConfig / HDRConfig with no unknown key; typos are errors naming the key."""

from pathlib import Path

import pytest
import yaml

from balancetrl.hdr.hdr_config import HDRConfig
from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments, make_parser
from balancetrl.scripts.recipe import RecipeError
from balancetrl.trainer.balance_sft_config import BalanceSFTConfig

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted(p for p in (ROOT / "recipes").glob("*/*.yaml") if p.parent.name != "accelerate")
ACCELERATE = sorted((ROOT / "balancetrl" / "accelerate_configs").glob("*.yaml"))


def parse(path, *flags):
    # GPU recipes set bf16, which TrainingArguments refuses on a CPU-only machine unless use_cpu is set.
    return make_parser().parse_recipe(["--config", str(path), "--use_cpu", "true", *flags])


def test_recipe_set_is_complete():
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    assert "smollm2-135m/balance_sft_cpu" in names
    for model in ("qwen2.5-coder-7b-instruct", "llama-3.2-3b-instruct", "qwen3-4b-instruct-2507"):
        assert {f"{model}/{v}" for v in ("balance_sft", "balance_sft_lora", "sft", "sft_lora")} <= names
    assert {p.stem for p in ACCELERATE} >= {"multi_cpu", "ddp", "zero2", "zero3", "fsdp2"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses_with_every_key_used(path):
    script, training, model, mixture, hdr, config_launch, cli_launch = parse(path)
    assert isinstance(script, BalanceSFTScriptArguments) and isinstance(training, BalanceSFTConfig)
    assert (config_launch, cli_launch) == ([], [])  # no key left over for accelerate: every key is ours or TRL's
    raw = yaml.safe_load(path.read_text())
    for key, value in raw.items():  # each YAML value reached its dataclass field
        if key in ("hdr", "report_to"):  # report_to: "none" becomes []
            continue
        owner = next(o for o in (script, training, model) if hasattr(o, key))
        got = getattr(owner, key)
        if not isinstance(value, (dict, list)) and not hasattr(got, "value"):
            assert got == value or got == [value] or str(got) == str(value), key
    if raw.get("ssb", True) is False:
        assert not training.ssb and hdr is None
    if "hdr" in raw:
        assert isinstance(hdr, HDRConfig)
        for key, value in raw["hdr"].items():
            if key != "judges":
                assert getattr(hdr, key) == value, key


def test_paper_setup_numbers():
    path = ROOT / "recipes" / "qwen2.5-coder-7b-instruct" / "balance_sft.yaml"
    _, training, _, _, hdr, _, _ = parse(path)
    acc = yaml.safe_load((ROOT / "balancetrl" / "accelerate_configs" / "zero3.yaml").read_text())
    assert training.per_device_train_batch_size * training.gradient_accumulation_steps * acc["num_processes"] == 512
    assert training.warmup_steps == 0.05 and training.ssb_lambda_init == 0.7
    assert hdr.max_rounds == 10 and len(hdr.judges) == 3 and hdr.num_generations == 3 and hdr.temperature == 0.7
    assert all(isinstance(j, dict) and j["api_key_env"] and "api_key" not in j for j in hdr.judges)


def test_cpu_recipe_is_the_demo():
    _, training, model, _, hdr, _, _ = parse(ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml")
    assert model.model_name_or_path == "smollm2-135m-instruct" and training.use_cpu
    assert hdr.judges == [] and hdr.max_rounds >= 1 and training.max_steps == -1 and not training.packing


def test_typo_in_recipe_is_an_error_naming_it(tmp_path):
    text = (ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml").read_text()
    bad = tmp_path / "typo.yaml"
    bad.write_text(text.replace("ssb_lambda_init:", "ssb_lamda_init:"))
    with pytest.raises(RecipeError, match=r"unknown key 'ssb_lamda_init'.*did you mean 'ssb_lambda_init'"):
        make_parser().parse_recipe(["--config", str(bad)])
    bad.write_text(text.replace("  max_rounds:", "  max_round:"))
    with pytest.raises(RecipeError, match=r"unknown key 'hdr.max_round'.*did you mean 'max_rounds'"):
        make_parser().parse_recipe(["--config", str(bad)])
    with pytest.raises(RecipeError, match="unknown key 'learning_rat' in the command line"):
        make_parser().parse_recipe(["--config", str(path_of_cpu_recipe()), "--learning_rat", "1"])


def path_of_cpu_recipe():
    return ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml"


def test_flags_override_the_recipe_including_hdr():
    path = ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml"
    _, training, _, _, hdr, _, _ = make_parser().parse_recipe(
        ["--config", str(path), "--ssb_lambda_init", "0.6", "--hdr.max_rounds", "3", "--hdr.judges=[]"])
    assert training.ssb_lambda_init == 0.6 and hdr.max_rounds == 3


def test_accelerate_keys_in_a_recipe_go_to_accelerate(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("dataset_path: x.jsonl\noutput_dir: o\nuse_cpu: true\nnum_processes: 2\n")
    *_, config_launch, _ = make_parser().parse_recipe(["--config", str(path)])
    assert config_launch == ["--num_processes", "2"]


def test_judge_api_key_in_recipe_is_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("output_dir: o\nuse_cpu: true\nhdr:\n  judges:\n    - {model: openai/gpt-4o, api_key: not-a-real-key}\n")
    with pytest.raises(RecipeError, match="api_key_env"):
        make_parser().parse_recipe(["--config", str(path)])


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2
    if path.stem == "multi_cpu":  # the one that really starts two CPU ranks (see test_cli's 2-process run)
        assert config.use_cpu and config.distributed_type.value == "MULTI_GPU"
