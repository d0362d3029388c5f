"""A tiny Mixtral (4 experts, top-2): TRL's router aux term is kept, weighted and scaled over accumulation as TRL does."""


import pytest
import torch
from test_trainer import by_hand, one_batch
from transformers import MixtralConfig, MixtralForCausalLM
from trl import SFTConfig, SFTTrainer

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from conftest import as_dataset, tilt_toward_cot

COEF = 0.5  # large enough that the aux term moves the loss and the update visibly


def build_tiny_moe(tokenizer, dtype=None, seed=0):
    torch.manual_seed(seed)
    config = MixtralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, router_aux_loss_coef=0.001,
        max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=False,
    )
    config._experts_implementation = "eager"  # torch's grouped_mm has no fp64 CPU kernel
    model = MixtralForCausalLM(config)
    return model.to(dtype) if dtype is not None else model


def make_trainer(tokenizer, conversations, tmp_path, dtype=None, **kwargs):
    defaults = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", seed=1, optim="sgd",
                    lr_scheduler_type="constant", max_grad_norm=0.0, router_aux_loss_coef=COEF)
    args = BalanceSFTConfig(**{**defaults, **kwargs})
    return BalanceSFTTrainer(model=build_tiny_moe(tokenizer, dtype), args=args,
                             train_dataset=as_dataset(conversations), processing_class=tokenizer)


def weighted_aux(model, batch):
    """TRL's aux term by hand: the coefficient times the model's own load-balancing loss on the batch."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_router_logits=True)
    return COEF * out.aux_loss


def _step_loss(trainer, batch):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    samples, n_items = trainer.get_batch_samples(iter([batch]), 1, torch.device("cpu"))
    return trainer.compute_loss(trainer.model, dict(samples[0]), num_items_in_batch=n_items)


def test_ssb_false_equals_trl_sft_loss_with_aux_term(tokenizer, conversations, tmp_path):
    ours = make_trainer(tokenizer, conversations, tmp_path / "ours", per_device_train_batch_size=4, ssb=False,
                        mask_empty_cot=False)
    assert ours.aux_loss_enabled and ours.router_aux_loss_coef == COEF
    trl_args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, assistant_only_loss=True,
                         per_device_train_batch_size=4, seed=1, router_aux_loss_coef=COEF)
    trl = SFTTrainer(model=build_tiny_moe(tokenizer), args=trl_args, train_dataset=as_dataset(conversations),
                     processing_class=tokenizer)
    batch, trl_batch = one_batch(ours), one_batch(trl)
    assert torch.equal(batch["labels"], trl_batch["labels"])
    got = _step_loss(ours, batch)
    trl.model.train()
    trl.current_gradient_accumulation_steps = 1
    want = trl.compute_loss(trl.model, dict(trl_batch), num_items_in_batch=(trl_batch["labels"][:, 1:] != -100).sum())
    assert got.item() == want.item()
    aux = weighted_aux(ours.model, batch).item()
    assert aux > 0.5  # the aux term is really in there: 0.5 x a load-balancing loss near num_experts_per_tok
    logits = ours.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.double().transpose(1, 2), labels, ignore_index=-100)
    assert got.item() == pytest.approx(nll.item() + aux, abs=1e-5)  # mean NLL + weighted aux


def test_ssb_true_is_hand_ssb_plus_weighted_aux(tokenizer, conversations, tmp_path):
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=4, ssb_lambda_init=0.35)
    batch = one_batch(trainer)
    loss = _step_loss(trainer, batch)
    ssb, l_c, l_f = by_hand(trainer.model, batch, 0.35)
    aux = weighted_aux(trainer.model, batch)
    assert abs(l_c - l_f) > 1e-3 and aux.item() > 0.5
    assert loss.item() == pytest.approx((ssb + aux).item(), abs=1e-6)
    # TRL's aux metric is logged as TRL logs it
    assert trainer._metrics["train"]["aux_loss"] == [pytest.approx(aux.item() / COEF, abs=1e-6)]


def _update(tokenizer, conversations, tmp_path, batch, accumulation, ssb):
    trainer = make_trainer(tokenizer, conversations, tmp_path, dtype=torch.float64, per_device_train_batch_size=batch,
                           gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=0.5, ssb_lambda_lr=5.0,
                           logging_steps=1, ssb=ssb)
    tilt_toward_cot(trainer)
    # a deep copy of a model patched with TRL's fused LM head would still run the original's forward
    initial = {k: v.detach().clone() for k, v in trainer.model.state_dict().items() if "balancetrl_ssb" not in k}
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    lam = trainer.ssb_lambda
    trainer.train()
    after = dict(trainer.model.named_parameters())
    update = {k: after[k].detach() - v for k, v in before.items()}
    log = next(e for e in trainer.state.log_history if "aux_loss" in e)
    return trainer, initial, update, (trainer.ssb_lambda - lam) if ssb else None, log


def _aux_gradient(tokenizer, initial, batches):
    """∇ of the aux term as TRL accumulates it: each micro-batch's weighted aux loss over the accumulation steps."""
    model = build_tiny_moe(tokenizer, torch.float64)
    model.load_state_dict(initial)
    for batch in batches:
        (weighted_aux(model, batch) / len(batches)).backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    assert grads
    return grads


@pytest.mark.parametrize("ssb", [True, False], ids=["ssb", "plain"])
def test_accumulation_4x1_vs_1x4_differs_by_the_aux_term_alone(tokenizer, conversations, tmp_path, ssb):
    # The NLL/SSB part is invariant under accumulation (as in test_trainer); the aux term is, in TRL, a mean over
    # each micro-batch's tokens, averaged over the micro-batches. So the two updates differ by exactly
    # −lr·(∇aux(full batch) − mean_i ∇aux(micro-batch i)), computed here by hand from the initial weights.
    full, initial, d_full, dlam_full, log_full = _update(tokenizer, conversations, tmp_path / "a", 4, 1, ssb)
    accum, _, d_accum, dlam_accum, _ = _update(tokenizer, conversations, tmp_path / "b", 1, 4, ssb)
    whole = [one_batch(full)]
    singles = list(accum.get_train_dataloader())
    assert len(singles) == 4 and sum(len(b["input_ids"]) for b in singles) == len(whole[0]["input_ids"])
    g_whole, g_singles = _aux_gradient(tokenizer, initial, whole), _aux_gradient(tokenizer, initial, singles)
    lr = 0.5
    differs = 0
    for name, g in g_whole.items():
        predicted = -lr * (g - g_singles[name])
        scale = d_full[name].norm().clamp(min=1e-30)
        if predicted.norm() / scale > 1e-3:
            differs += 1
        assert ((d_full[name] - d_accum[name]) - predicted).norm() / scale < 1e-5, name
    assert differs > 0  # the aux term really differs between the layouts, so the prediction is tested
    assert log_full["aux_loss"] > 0
    if ssb:  # the aux term does not involve λ
        assert abs(dlam_full) > 1e-4 and abs(dlam_full - dlam_accum) / abs(dlam_full) < 1e-5


def test_compute_loss_outside_train_takes_one_accumulation_step(tokenizer, conversations, tmp_path):
    # a user's own call in train mode without trainer.train(): Trainer sets current_gradient_accumulation_steps only
    # inside its loop (TRL's own compute_loss works there, ours raised AttributeError)
    trainer = make_trainer(tokenizer, conversations, tmp_path, per_device_train_batch_size=4)
    assert not hasattr(trainer, "current_gradient_accumulation_steps")
    batch = one_batch(trainer)
    trainer.model.train()
    outside = trainer.compute_loss(trainer.model, dict(batch))
    assert outside.item() == pytest.approx(_step_loss(trainer, batch).item(), rel=1e-6)  # _step_loss sets it to 1
