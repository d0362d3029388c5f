"""λ is training state: out of the saved model, in checkpoints, restored on resume; LoRA trains λ and the adapter."""

import json
import logging

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from balancetrl.trainer.balance_sft_trainer import SSB_STATE_FILE
from conftest import as_dataset, build_tiny_model


def _trainer(tokenizer, conversations, out, **kwargs):
    args = BalanceSFTConfig(
        output_dir=str(out), report_to=[], use_cpu=True, per_device_train_batch_size=2, learning_rate=1e-2,
        ssb_lambda_lr=0.5, seed=3, logging_steps=1, **kwargs,
    )
    return BalanceSFTTrainer(model=build_tiny_model(tokenizer, seed=5), args=args,
                             train_dataset=as_dataset(conversations), processing_class=tokenizer)


def test_saved_model_has_no_lambda_and_reloads_without_warnings(tokenizer, conversations, tmp_path, caplog):
    trainer = _trainer(tokenizer, conversations, tmp_path / "run", max_steps=2, save_strategy="no")
    trainer.train()
    assert trainer.ssb_lambda != pytest.approx(0.7, abs=1e-4)
    trainer.save_model(str(tmp_path / "final"))
    hf_logging.enable_propagation()
    caplog.clear()  # the reload's records only (construction may warn of emulated bf16 on this CPU)
    with caplog.at_level(logging.WARNING):
        model, info = AutoModelForCausalLM.from_pretrained(str(tmp_path / "final"), output_loading_info=True)
    assert info["unexpected_keys"] == set() or not info["unexpected_keys"]
    assert not info["missing_keys"]
    assert "balancetrl" not in caplog.text and "unexpected" not in caplog.text.lower()
    trained = {k: v for k, v in trainer.model.state_dict().items() if not k.startswith("balancetrl_ssb")}
    for key, value in model.state_dict().items():
        assert torch.equal(value, trained[key]), key


def test_checkpoint_holds_lambda_and_resume_restores_it_exactly(tokenizer, conversations, tmp_path):
    straight = _trainer(tokenizer, conversations, tmp_path / "a", max_steps=4, save_strategy="steps", save_steps=2)
    straight.train()
    saved = json.loads((tmp_path / "a" / "checkpoint-2" / SSB_STATE_FILE).read_text())
    lam_at_2 = next(e["ssb/lambda"] for e in straight.state.log_history if e.get("step") == 2 and "ssb/lambda" in e)
    assert saved["lambda"] == pytest.approx(lam_at_2, abs=1e-7)

    resumed = _trainer(tokenizer, conversations, tmp_path / "b", max_steps=4, save_strategy="no")
    resumed._load_from_checkpoint(str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.ssb_lambda == pytest.approx(saved["lambda"], abs=0)
    resumed = _trainer(tokenizer, conversations, tmp_path / "b", max_steps=4, save_strategy="no")
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed.ssb_lambda == straight.ssb_lambda
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name


def test_lora_trains_lambda_and_adapter_only(tokenizer, conversations, tmp_path):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    args = BalanceSFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_train_batch_size=2,
                            learning_rate=1e-2, ssb_lambda_lr=0.5, max_steps=3, save_strategy="no")
    trainer = BalanceSFTTrainer(model=build_tiny_model(tokenizer), args=args, train_dataset=as_dataset(conversations),
                                processing_class=tokenizer, peft_config=lora)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()
    changed = {k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])}
    assert "balancetrl_ssb.phi" in changed
    assert changed - {"balancetrl_ssb.phi"} and all("lora_" in k for k in changed - {"balancetrl_ssb.phi"})
    trainer.save_model(str(tmp_path / "adapter"))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
