"""An HDR job on a tiny model that can learn the answers of its hard set (used by test_hdr; runnable alone).

The base set holds conversations with correct answers; the hard set holds the same prompts with wrong shipped
answers (plus one prompt the model never saw). After the cold start the model can regenerate the right answers.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer, HDRCallback, HDRConfig  # noqa: E402
from conftest import WEATHER_TOOL, as_dataset, build_tiny_model, build_tokenizer, make_conversations  # noqa: E402


def hard_records() -> list[dict]:
    single, parallel, _, _ = make_conversations()
    records = []
    for i, conv in enumerate((single, parallel)):
        rec = copy.deepcopy(conv)
        correct = [c["function"] for c in rec["messages"][1]["tool_calls"]]
        rec["reference"] = [[{"name": c["name"], "arguments": c["arguments"]} for c in correct]]
        rec["messages"][1]["tool_calls"][0]["function"]["arguments"]["city"] = "Berlin"  # the shipped answer is wrong
        rec["id"] = f"hard-{i}"
        records.append(rec)
    unseen = {
        "id": "hard-unseen", "tools": [WEATHER_TOOL],
        "messages": [{"role": "user", "content": "Weather in Quito?"},
                     {"role": "assistant", "reasoning_content": "Quito.",
                      "tool_calls": [{"type": "function", "function": {"name": "get_weather",
                                                                       "arguments": {"city": "Lima"}}}]}],
        "reference": [[{"name": "get_weather", "arguments": {"city": "Quito"}}]],
    }
    return records + [unseen]


def build(output_dir: str, judges: list, *, max_rounds: int = 2, cold_start_epochs: int = 40, save: bool = False,
          seed: int = 7):
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed)
    single, parallel, _, _ = make_conversations()
    base = [single, parallel] * 4
    args = BalanceSFTConfig(
        output_dir=output_dir, report_to=[], use_cpu=True, per_device_train_batch_size=4, learning_rate=3e-2,
        ssb_lambda_lr=1e-2, logging_steps=2, seed=seed, lr_scheduler_type="constant",
        save_strategy="epoch" if save else "no", save_only_model=False,
    )
    hdr = HDRConfig(
        cold_start_epochs=cold_start_epochs, max_rounds=max_rounds, num_generations=3, temperature=0.3,
        max_new_tokens=96, judges=judges, judge_timeout=2.0, judge_retries=1, round_size=8, replay_ratio=0.5,
    )
    callback = HDRCallback(hdr, hard_set=hard_records())
    return BalanceSFTTrainer(model=model, args=args, train_dataset=as_dataset(base), processing_class=tokenizer,
                             callbacks=[callback])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--judges", default="[]", help="JSON list of judge specs")
    parser.add_argument("--resume", action="store_true")
    opts = parser.parse_args()
    trainer = build(opts.output_dir, json.loads(opts.judges), save=True)
    resume = None
    if opts.resume:
        checkpoints = sorted(Path(opts.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        resume = str(checkpoints[-1]) if checkpoints else None
    trainer.train(resume_from_checkpoint=resume)
