"""BalanceSFTTrainer on a tiny in-process Llama: the loss, λ's training, accumulation invariance, logging."""

import copy
import math

import pytest
import torch
from trl import SFTConfig, SFTTrainer

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from balancetrl.segments import COT_MASK
from conftest import as_dataset, build_tiny_model, tilt_toward_cot


def make_trainer(tokenizer, conversations, tmp_path, dtype=None, seed=0, initializer_range=0.02, **kwargs):
    defaults = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", seed=1,
                    optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0)
    args = BalanceSFTConfig(**{**defaults, **kwargs})
    model = build_tiny_model(tokenizer, seed=seed, dtype=dtype, initializer_range=initializer_range)
    return BalanceSFTTrainer(model=model, args=args, train_dataset=as_dataset(conversations),
                             processing_class=tokenizer)


def one_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def by_hand(model, batch, lam):
    """λ·L_c + (1−λ)·L_f from the full logits, written out with no trainer machinery."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    target = labels != -100
    token_lp = torch.log_softmax(logits.double(), -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    cot = batch[COT_MASK][:, 1:].bool() & target
    call = target & ~cot
    l_c, l_f = -token_lp[cot].mean(), -token_lp[call].mean()
    return lam * l_c + (1 - lam) * l_f, l_c, l_f


def test_loss_is_lambda_mix_of_segment_means(tokenizer, conversations, tmp_path):
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=4, ssb_lambda_init=0.35)
    batch = one_batch(trainer)
    assert len(set((batch["labels"] != -100).sum(1).tolist())) == 4  # four different lengths
    trainer.model.train()
    samples, n_items = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))
    loss = trainer.compute_loss(trainer.model, dict(samples[0]), num_items_in_batch=n_items)
    expected, l_c, l_f = by_hand(trainer.model, batch, 0.35)
    assert abs(l_c - l_f) > 1e-3  # the mix is not trivially equal to either mean
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_ssb_false_is_trl_sft_loss(tokenizer, conversations, tmp_path):
    ours = make_trainer(tokenizer, conversations, tmp_path / "ours", per_device_train_batch_size=4, ssb=False,
                        mask_empty_cot=False)  # TRL trains the empty think block of the no-CoT sample
    trl_args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, assistant_only_loss=True,
                         per_device_train_batch_size=4, seed=1)
    model = copy.deepcopy(ours.model)
    trl = SFTTrainer(model=model, args=trl_args, train_dataset=as_dataset(conversations), processing_class=tokenizer)
    ours_batch, trl_batch = one_batch(ours), one_batch(trl)
    assert torch.equal(ours_batch["input_ids"], trl_batch["input_ids"])
    assert torch.equal(ours_batch["labels"], trl_batch["labels"])
    ours.model.train(), trl.model.train()
    n = (trl_batch["labels"][:, 1:] != -100).sum()
    got = ours.compute_loss(ours.model, dict(ours_batch), num_items_in_batch=n)
    want = trl.compute_loss(trl.model, dict(trl_batch), num_items_in_batch=n)
    assert got.item() == want.item()
    assert not any(name.startswith("balancetrl_ssb") for name, _ in ours.model.named_parameters())


def _one_step_update(tokenizer, conversations, tmp_path, batch, accumulation, **kwargs):
    trainer = make_trainer(tokenizer, conversations, tmp_path, dtype=torch.float64, per_device_train_batch_size=batch,
                           logging_steps=1,
                           gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.5,
                           ssb_lambda_lr=5.0, **kwargs)
    tilt_toward_cot(trainer)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    lam_before = trainer.ssb_lambda
    trainer.train()
    after = dict(trainer.model.named_parameters())
    log = next(e for e in trainer.state.log_history if "ssb/lambda" in e)
    assert abs(log["ssb/loss_cot"] - log["ssb/loss_call"]) > 0.5  # see the comment in the test below
    return {k: after[k].detach() - v for k, v in before.items()}, trainer.ssb_lambda - lam_before


def test_gradient_accumulation_invariance(tokenizer, conversations, tmp_path):
    # fp64, because in fp32 round-off alone makes a padded batch and single sequences differ by ~1e-3 relative in
    # the attention gradients of a random tiny model (measured: TRL's plain SFTTrainer 9.4e-4, ours 1.1e-3; in fp64
    # 4.7e-8 and 5.2e-8). For λ, see `tilt_toward_cot`.
    full, dlam_full = _one_step_update(tokenizer, conversations, tmp_path / "a", 4, 1)
    accum, dlam_accum = _one_step_update(tokenizer, conversations, tmp_path / "b", 1, 4)
    for name in full:
        scale = full[name].norm().clamp(min=1e-30)
        assert (full[name] - accum[name]).norm() / scale < 1e-5, name
    assert abs(dlam_full) > 1e-4
    assert abs(dlam_full - dlam_accum) / abs(dlam_full) < 1e-5


def test_lambda_moves_toward_the_lower_loss_and_stays_bounded(tokenizer, conversations, tmp_path):
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=4, max_steps=4,
                           logging_steps=1, learning_rate=1e-3, ssb_lambda_lr=1.0)
    lam = [trainer.ssb_lambda]
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "ssb/lambda" in entry]
    assert len(logs) == 4
    for entry in logs:
        assert {"ssb/loss_cot", "ssb/loss_call", "ssb/tokens_cot", "ssb/tokens_call"} <= entry.keys()
        assert entry["ssb/tokens_cot"] > 0 and entry["ssb/tokens_call"] > 0
    for prev, entry in zip(lam + [e["ssb/lambda"] for e in logs], logs):
        # SGD on φ: Δλ has the sign of −∂L/∂λ = L_f − L_c of that step's batch
        assert (entry["ssb/lambda"] - prev) * (entry["ssb/loss_call"] - entry["ssb/loss_cot"]) > 0
        lam.append(entry["ssb/lambda"])
    # a huge λ learning rate saturates λ at its bound instead of leaving it
    wild = make_trainer(tokenizer, conversations, tmp_path / "wild", per_device_train_batch_size=4, max_steps=3,
                        ssb_lambda_lr=1e4, ssb_lambda_min=0.2, ssb_lambda_max=0.8)
    wild.train()
    assert 0.2 <= wild.ssb_lambda <= 0.8 and abs(wild.ssb_lambda - 0.7) > 0.05


def test_fixed_lambda_never_moves_and_is_not_optimised(tokenizer, conversations, tmp_path):
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=2, max_steps=2,
                           logging_steps=1, ssb_lambda_mode="fixed", ssb_lambda_init=0.6, ssb_lambda_lr=10.0)
    trainer.train()
    assert trainer.ssb_lambda == pytest.approx(0.6, abs=1e-7)
    assert [e["ssb/lambda"] for e in trainer.state.log_history if "ssb/lambda" in e] == [trainer.ssb_lambda] * 2
    phi = trainer.model.balancetrl_ssb.phi
    assert all(p is not phi for group in trainer.optimizer.param_groups for p in group["params"])


def test_lambda_has_its_own_param_group(tokenizer, conversations, tmp_path):
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=2, max_steps=1,
                           learning_rate=1e-3, ssb_lambda_lr=0.25, weight_decay=0.1, optim="adamw_torch")
    trainer.train()
    phi = trainer.model.balancetrl_ssb.phi
    groups = [g for g in trainer.optimizer.param_groups if any(p is phi for p in g["params"])]
    assert len(groups) == 1 and len(groups[0]["params"]) == 1
    assert groups[0]["weight_decay"] == 0.0 and groups[0]["initial_lr"] == 0.25


def test_lambda_group_is_added_once_when_trainer_builds_the_optimizer_twice(tokenizer, conversations, tmp_path):
    # Under DeepSpeed, Trainer calls create_optimizer in deepspeed_init and again in _prepare_for_training (which
    # returns the optimizer already built): torch raised "some parameters appear in more than one parameter group"
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=2, ssb_lambda_lr=0.25)
    first = trainer.create_optimizer()
    assert trainer.create_optimizer() is first
    phi = trainer.model.balancetrl_ssb.phi
    assert sum(p is phi for group in first.param_groups for p in group["params"]) == 1


def test_model_weights_only_hides_lambda_from_weight_readers_and_puts_it_back(tokenizer, conversations, tmp_path):
    # TRL's weight sync into vLLM walks every parameter of the model; vLLM refused λ's ("There is no module or
    # parameter named 'balancetrl_ssb' in LlamaForCausalLM") at HDR's first round
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=2)
    phi = trainer.model.balancetrl_ssb.phi
    names = [n for n, _ in trainer.model.named_parameters()]
    with trainer.model_weights_only():
        inside = [n for n, _ in trainer.model.named_parameters()]
        assert trainer.ssb_lambda is not None  # λ itself stays readable
    assert inside == [n for n in names if not n.startswith("balancetrl_ssb.")] and len(inside) == len(names) - 1
    assert [n for n, _ in trainer.model.named_parameters()] == names and trainer.model.balancetrl_ssb.phi is phi
    with pytest.raises(RuntimeError), trainer.model_weights_only():
        raise RuntimeError("a failed sync")
    assert trainer.model.balancetrl_ssb.phi is phi


def test_every_parameter_can_be_broadcast_as_bytes_as_deepspeed_does(tokenizer, conversations, tmp_path):
    # DeepSpeed's engine broadcasts each parameter as p.data.view(torch.uint8), impossible for a 0-dim tensor
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=2)
    for name, p in trainer.model.named_parameters():
        assert p.dim() > 0 and p.data.view(torch.uint8).numel() == p.numel() * p.element_size(), name
    assert trainer.ssb_lambda == pytest.approx(0.7, abs=1e-7)  # φ stored as fp32
    assert trainer.ssb_phi == pytest.approx(math.log((0.65 / 0.9) / (1 - 0.65 / 0.9)), abs=1e-6)  # λ in (0.05, 0.95)

