"""One SSB optimizer step, run alone or under `accelerate launch`; rank 0 saves the update (used by test_distributed)."""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer  # noqa: E402
from conftest import as_dataset, build_tiny_model, build_tokenizer, make_conversations, tilt_toward_cot  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--gc", action="store_true", help="gradient checkpointing (SFTConfig turns it on by default)")
    opts = parser.parse_args()
    tokenizer = build_tokenizer()
    args = BalanceSFTConfig(
        output_dir=str(Path(opts.out).parent / "run"), report_to=[], use_cpu=True, save_strategy="no", seed=1,
        optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0, per_device_train_batch_size=opts.batch,
        max_steps=opts.steps, learning_rate=0.5, ssb_lambda_lr=5.0, logging_steps=1, average_tokens_across_devices=True,
        gradient_checkpointing=opts.gc,
    )
    model = build_tiny_model(tokenizer, dtype=torch.float64)
    trainer = BalanceSFTTrainer(model=model, args=args, train_dataset=as_dataset(make_conversations()),
                                processing_class=tokenizer)
    tilt_toward_cot(trainer)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    lam_before = trainer.ssb_lambda
    trainer.train()
    if trainer.accelerator.is_main_process:
        update = {k: v.detach() - before[k] for k, v in model.named_parameters()}
        log = next(e for e in reversed(trainer.state.log_history) if "ssb/lambda" in e)
        torch.save({"update": update, "dlambda": trainer.ssb_lambda - lam_before, "log": log,
                    "processes": trainer.accelerator.num_processes}, opts.out)


if __name__ == "__main__":
    main()
