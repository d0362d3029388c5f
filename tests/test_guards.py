"""Loss paths SSB cannot follow are refused at construction; a TRL that skips the fused forward fails loudly."""

import pytest
import torch
from accelerate.parallelism_config import ParallelismConfig
from trl import SFTTrainer

import balancetrl.trainer.balance_sft_trainer as trainer_module
from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from conftest import as_dataset, build_tiny_model


def build(tokenizer, conversations, tmp_path, trainer_kwargs=None, **kwargs):
    args = BalanceSFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no",
                            per_device_train_batch_size=4, **kwargs)
    return BalanceSFTTrainer(model=build_tiny_model(tokenizer), args=args, train_dataset=as_dataset(conversations),
                             processing_class=tokenizer, **(trainer_kwargs or {}))


def test_compute_loss_func_is_refused_with_ssb(tokenizer, conversations, tmp_path):
    def loss_func(outputs, labels, num_items_in_batch=None):
        return outputs.logits.sum()

    with pytest.raises(ValueError, match="compute_loss_func is not supported with ssb=True.*no gradient"):
        build(tokenizer, conversations, tmp_path, {"compute_loss_func": loss_func})
    # ssb=False is TRL's loss path, compute_loss_func included
    build(tokenizer, conversations, tmp_path / "plain", {"compute_loss_func": loss_func}, ssb=False)


@pytest.fixture
def parallelism(monkeypatch):
    """Make the trainer's accelerator report a parallelism layout, as an accelerate YAML would (undone afterwards)."""
    layout = {}
    create = BalanceSFTTrainer.create_accelerator_and_postprocess

    def patched(self):
        create(self)
        monkeypatch.setattr(self.accelerator.state, "parallelism_config", layout["config"])

    monkeypatch.setattr(BalanceSFTTrainer, "create_accelerator_and_postprocess", patched)
    return layout


@pytest.mark.parametrize(
    "config, ssb, message",
    [
        (ParallelismConfig(cp_size=2), False, r"context parallelism \(cp_size > 1\) is not supported"),
        (ParallelismConfig(sp_size=2, sp_backend="deepspeed"), True, r"sequence parallelism \(deepspeed Ulysses"),
        (ParallelismConfig(tp_size=2), True, r"tensor parallelism \(tp_size=2\) is not supported with ssb=True"),
    ],
    ids=["context", "ulysses", "tensor"],
)
def test_model_parallel_layouts_are_refused(tokenizer, conversations, tmp_path, parallelism, config, ssb, message):
    parallelism["config"] = config
    with pytest.raises(ValueError, match=message):
        build(tokenizer, conversations, tmp_path, ssb=ssb)


def test_tensor_parallel_plain_sft_counts_each_token_once(tokenizer, conversations, tmp_path, parallelism):
    parallelism["config"] = ParallelismConfig(tp_size=2)
    trainer = build(tokenizer, conversations, tmp_path, ssb=False)  # TRL's own loss and its num_processes // tp rule
    assert trainer._tp_size == 2


def test_liger_without_liger_kernel_is_refused(tokenizer, conversations, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "is_liger_kernel_available", lambda: False)
    with pytest.raises(ValueError, match=r"use_liger_kernel=True needs liger-kernel .*pip install liger-kernel"):
        build(tokenizer, conversations, tmp_path, use_liger_kernel=True)


def test_liger_fused_cross_entropy_is_refused(tokenizer, conversations, tmp_path, monkeypatch):
    # Liger's fused linear cross-entropy replaces the model's forward, and with it the fused LM head SSB reads
    monkeypatch.setattr(trainer_module, "is_liger_kernel_available", lambda: True)
    with pytest.raises(ValueError, match="fused_linear_cross_entropy.*not supported"):
        build(tokenizer, conversations, tmp_path, use_liger_kernel=True,
              liger_kernel_config={"fused_linear_cross_entropy": True})
    # layer kernels only: accepted, and TRL turns the fused cross-entropy off
    trainer = build(tokenizer, conversations, tmp_path / "layers", use_liger_kernel=True)
    assert trainer.args.liger_kernel_config == {"fused_linear_cross_entropy": False}


def _loss(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    samples, n_items = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))
    return trainer.compute_loss(trainer.model, dict(samples[0]), num_items_in_batch=n_items)


def test_a_trl_without_the_fused_forward_fails_loudly(tokenizer, conversations, tmp_path, monkeypatch):
    trainer = build(tokenizer, conversations, tmp_path)
    assert _loss(trainer).requires_grad

    def logits_only(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})  # full logits, no fused head
        return outputs.logits.float().mean()

    monkeypatch.setattr(SFTTrainer, "compute_loss", logits_only)
    with pytest.raises(RuntimeError, match="exactly one fused LM-head forward .*found 0 among 1 model calls"):
        _loss(trainer)

    def fused_without_grad(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits.float().mean()
        with torch.no_grad():
            model(**inputs, fused_lm_head=True)
        return loss

    monkeypatch.setattr(SFTTrainer, "compute_loss", fused_without_grad)
    with pytest.raises(RuntimeError, match="fused LM-head forward ran without gradient"):
        _loss(trainer)
