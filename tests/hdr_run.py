"""An HDR job on a tiny model that can regenerate the answers of its hard set (used by test_hdr; runnable alone).

A tiny Llama first memorises two conversations (`memorise`). The hard set holds the same prompts with wrong shipped
answers, plus one prompt it never saw; so after the cold start the model answers two hard samples right, and the
judges decide what is accepted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer, HDRCallback, HDRConfig  # noqa: E402
from conftest import WEATHER_TOOL, as_dataset, build_tiny_model, build_tokenizer, make_conversations  # noqa: E402


def hard_records(unseen: bool = True) -> list[dict]:
    single, parallel, _, _ = make_conversations()
    records = []
    for i, conv in enumerate((single, parallel)):
        rec = copy.deepcopy(conv)
        correct = [c["function"] for c in rec["messages"][1]["tool_calls"]]
        rec["reference"] = copy.deepcopy([[{"name": c["name"], "arguments": c["arguments"]} for c in correct]])
        rec["messages"][1]["tool_calls"][0]["function"]["arguments"]["city"] = "Berlin"  # the shipped answer is wrong
        rec["id"] = f"hard-{i}"
        records.append(rec)
    if unseen:
        records.append({
            "id": "hard-unseen", "tools": [WEATHER_TOOL],
            "messages": [{"role": "user", "content": "Weather in Quito?"},
                         {"role": "assistant", "reasoning_content": "Quito.",
                          "tool_calls": [{"type": "function",
                                          "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}]}],
            "reference": [[{"name": "get_weather", "arguments": {"city": "Quito"}}]],
        })
    return records


def memorise(out_dir: str | Path) -> Path:
    """A tiny model that answers the two base prompts verbatim (150 steps, a few seconds)."""
    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    single, parallel, _, _ = make_conversations()
    args = BalanceSFTConfig(
        output_dir=str(out_dir / "run"), report_to=[], use_cpu=True, per_device_train_batch_size=2,
        learning_rate=1e-2, max_steps=150, save_strategy="no", lr_scheduler_type="cosine", warmup_steps=10,
        disable_tqdm=True, ssb=False, seed=0,
    )
    trainer = BalanceSFTTrainer(model=build_tiny_model(tokenizer), args=args,
                                train_dataset=as_dataset([single, parallel]), processing_class=tokenizer)
    trainer.train()
    trainer.model.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    return out_dir / "model"


def build(output_dir: str, model_dir: str | Path, judges: list, *, max_rounds: int = 2, unseen: bool = True,
          save_steps: int | None = None, seed: int = 7, judge_timeout: float = 2.0, judge_retries: int = 1,
          per_device_train_batch_size: int = 2, max_new_tokens: int = 160, generation_batch_size: int = 8):
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    single, parallel, _, _ = make_conversations()
    args = BalanceSFTConfig(
        output_dir=output_dir, report_to=[], use_cpu=True, per_device_train_batch_size=per_device_train_batch_size,
        learning_rate=1e-3,
        ssb_lambda_lr=1e-2, logging_steps=1, seed=seed, lr_scheduler_type="constant", disable_tqdm=True,
        save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
    )
    hdr = HDRConfig(
        cold_start_epochs=1, max_rounds=max_rounds, num_generations=3, temperature=0.3, max_new_tokens=max_new_tokens,
        judges=judges, generation_batch_size=generation_batch_size, judge_timeout=judge_timeout,
        judge_retries=judge_retries, round_size=4, replay_ratio=0.5,
    )
    callback = HDRCallback(hdr, hard_set=hard_records(unseen))
    return BalanceSFTTrainer(model=model, args=args, train_dataset=as_dataset([single, parallel] * 2),
                             processing_class=tokenizer, callbacks=[callback])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--judges", default="[]", help="JSON list of judge specs")
    parser.add_argument("--resume", action="store_true")
    opts = parser.parse_args()
    trainer = build(opts.output_dir, opts.model_dir, json.loads(opts.judges), save_steps=1)
    resume = None
    if opts.resume:
        checkpoints = sorted(Path(opts.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        resume = str(checkpoints[-1]) if checkpoints else None
    trainer.train(resume_from_checkpoint=resume)
