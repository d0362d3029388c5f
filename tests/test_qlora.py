"""QLoRA: `load_in_4bit` / `load_in_8bit` are handed to TRL as trl/scripts/sft.py does and train with the real
bitsandbytes wherever it has a backend, the CPU included; what bitsandbytes cannot do is refused before anything slow.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from balancetrl.scripts import balance_sft, preflight
from conftest import build_tiny_model, make_conversations

ROOT = Path(__file__).resolve().parent.parent
CPU_RECIPE = ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml"
DATA = ROOT / "tests" / "data" / "xlam_cot_sample.jsonl"
NO_BNB = "bitsandbytes is not installed: the QLoRA runs need the real library (pip install bitsandbytes)"

# One batch holds the whole data set (3 conversations), so every step sees the same tokens and the loss must fall.
QLORA_RECIPE = """
chat_template: keep
dtype: float32
use_cpu: true
use_peft: true
lora_r: 8
lora_alpha: 16
lora_target_modules: all-linear
run_check: false
max_steps: 6
per_device_train_batch_size: 3
learning_rate: 1.0e-2
lr_scheduler_type: constant
max_length: 256
logging_steps: 1
save_strategy: "no"
report_to: none
seed: 0
gradient_checkpointing: false
bf16: false
ssb_lambda_init: 0.7
ssb_lambda_lr: 0.1
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _flags(model_dir, out, *extra):
    return ["--config", str(CPU_RECIPE), "--model_name_or_path", str(model_dir), "--dataset_path",
            str(DATA), "--output_dir", str(out), "--use_peft", "true", "--run_check", "false", *extra]


def _qlora_run(tmp_path_factory, model_dir, *extra):
    """`balance_sft.cli` on the tiny model folder; returns the trainer it trained (for its model) and the output."""
    pytest.importorskip("bitsandbytes", reason=NO_BNB)
    from balancetrl.trainer.balance_sft_trainer import BalanceSFTTrainer

    tmp = tmp_path_factory.mktemp("qlora")
    (tmp / "recipe.yaml").write_text(QLORA_RECIPE)
    (tmp / "data.jsonl").write_text("".join(json.dumps(c) + "\n" for c in make_conversations()[:3]))
    trained, train = [], BalanceSFTTrainer.train

    def keep(self, *args, **kwargs):
        trained.append(self)
        return train(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(BalanceSFTTrainer, "train", keep)
        assert balance_sft.cli(["--config", str(tmp / "recipe.yaml"), "--model_name_or_path", str(model_dir),
                                "--dataset_path", str(tmp / "data.jsonl"), "--output_dir", str(tmp / "out"),
                                *extra]) == 0
    history = trained[0].state.log_history
    return trained[0], tmp / "out", [e["loss"] for e in history if "loss" in e], \
        [e["ssb/lambda"] for e in history if "ssb/lambda" in e]


@pytest.fixture(scope="module")
def run_4bit(tmp_path_factory, model_dir):
    return _qlora_run(tmp_path_factory, model_dir, "--load_in_4bit", "true")


def _probe(tokenizer):
    conv = make_conversations()[1]
    text = tokenizer.apply_chat_template(conv["messages"], tools=conv["tools"], tokenize=False)
    return tokenizer(text, return_tensors="pt")


def test_4bit_qlora_trains_on_the_cpu_with_bitsandbytes_layers(run_4bit, tokenizer):
    import bitsandbytes as bnb
    from peft import PeftModel

    trainer, _, losses, lambdas = run_4bit
    model = trainer.model
    assert isinstance(model, PeftModel) and trainer.args.device.type == "cpu"
    base = model.get_base_model()
    assert base.is_loaded_in_4bit
    layers = [m for m in base.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 2 * 7  # q k v o gate up down in each of the 2 layers: all quantised...
    assert all(layer.weight.quant_state.quant_type == "nf4" for layer in layers)  # TRL's ModelConfig default
    assert all(layer.compute_dtype == torch.float32 for layer in layers)  # ...computing in `dtype`
    assert not any(p.requires_grad for layer in layers for p in layer.parameters())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {"lora_A" if ".lora_A." in n else "lora_B" if ".lora_B." in n else n for n in trainable} == {
        "lora_A", "lora_B", "balancetrl_ssb.phi"}

    # step 1 is the random model: ln|V| under NF4 round-off; the same batch every step, so the loss falls
    assert len(losses) == 6 and losses[0] == pytest.approx(math.log(len(tokenizer)), abs=0.03)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] - 0.3, losses
    # λ trains beside the adapter (its own group): L_c < L_f here, so ∂L/∂λ = L_c − L_f < 0 and λ rises
    assert lambdas[0] > 0.7 and all(b > a for a, b in zip(lambdas, lambdas[1:])) and lambdas[-1] > 0.75, lambdas
    assert trainer.ssb_lambda == pytest.approx(lambdas[-1], abs=1e-4)


def test_4bit_adapter_reloads_on_a_freshly_quantised_base(run_4bit, model_dir, tokenizer):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    trainer, out, _, _ = run_4bit
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    batch = _probe(tokenizer)
    trained = trainer.model.eval()
    with torch.no_grad():
        expected = trained(**batch).logits
        with trained.disable_adapter():
            base_logits = trained(**batch).logits

    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    fresh = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=config, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(fresh, out).eval()
    with torch.no_grad():
        got = reloaded(**batch).logits
    # TRL trains the QLoRA adapter in bf16 and saves it so; peft reloads it upcast to fp32, so the LoRA path differs
    # by bf16 rounding of its input only: measured 0.0064 at most, where the adapter itself moved the logits by 0.98
    assert (got - expected).abs().max() < 2e-2
    assert (expected - base_logits).abs().max() > 0.5
    # cast to bf16 as TRL trains it, the same adapter on the same NF4 weights gives the same logits
    for name, param in reloaded.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(torch.bfloat16)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_8bit_lora_trains_on_the_cpu_with_bitsandbytes_int8_layers(tmp_path_factory, model_dir, tokenizer):
    import bitsandbytes as bnb

    trainer, out, losses, lambdas = _qlora_run(tmp_path_factory, model_dir, "--load_in_8bit", "true")
    base = trainer.model.get_base_model()
    assert base.is_loaded_in_8bit
    assert sum(isinstance(m, bnb.nn.Linear8bitLt) for m in base.modules()) == 2 * 7
    assert losses[0] == pytest.approx(math.log(len(tokenizer)), abs=0.03)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.4, losses
    assert lambdas[-1] > lambdas[0] > 0.7
    assert (out / "adapter_model.safetensors").is_file()


# ---- refused before anything slow: only what bitsandbytes cannot do, with its reason ----

# balance_sft.cli is what `balancetrl balance-sft` runs inside `accelerate launch`
def _refused(model_dir, tmp_path, capsys, *extra):
    assert balance_sft.cli(_flags(model_dir, tmp_path / "run", *extra)) == 2
    assert not (tmp_path / "run").exists()  # no data split, no model load, no training
    return capsys.readouterr().err


def test_load_in_8bit_without_peft_is_refused(model_dir, tmp_path, capsys):
    err = _refused(model_dir, tmp_path, capsys, "--load_in_8bit", "true", "--use_peft", "false")
    assert "`load_in_8bit: true` cannot be honoured" in err and "set `use_peft: true` (QLoRA)" in err
    assert "drop `load_in_8bit` to train in `dtype` (float32) instead" in err


def test_load_in_4bit_with_dtype_auto_is_refused_not_crashed(model_dir, tmp_path, capsys):
    # TRL's get_quantization_config would pass "auto" to BitsAndBytesConfig as the compute dtype (getattr(torch, ...))
    err = _refused(model_dir, tmp_path, capsys, "--load_in_4bit", "true", "--dtype", "auto")
    assert "`bnb_4bit_compute_dtype` from `dtype`, and `auto` is not a dtype: set `dtype: float32`" in err


def test_missing_bitsandbytes_is_refused_with_the_install_command(model_dir, tmp_path, capsys, monkeypatch):
    from transformers.utils import import_utils

    monkeypatch.setattr(import_utils, "is_bitsandbytes_available", lambda *a, **k: False)
    err = _refused(model_dir, tmp_path, capsys, "--load_in_4bit", "true")
    assert "bitsandbytes>=0.46.1 is not installed (`pip install -U 'bitsandbytes>=0.46.1'`)" in err


def test_a_machine_bitsandbytes_has_no_backend_for_is_refused_in_its_words(model_dir, tmp_path, capsys,
                                                                           monkeypatch):
    bnb = pytest.importorskip("bitsandbytes", reason=NO_BNB)
    monkeypatch.setattr(bnb, "supported_torch_devices", {"cuda"})  # as a bitsandbytes without a CPU backend says
    err = _refused(model_dir, tmp_path, capsys, "--load_in_4bit", "true", "--use_cpu", "true")
    assert "bitsandbytes says: None of the available devices" in err
    assert "are supported by the bitsandbytes version you have installed" in err


def test_a_gguf_model_is_refused(tmp_path, capsys):
    pytest.importorskip("gguf", reason="the .gguf check needs the gguf package")
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    err = _refused(gguf, tmp_path, capsys, "--load_in_4bit", "true")
    assert "a .gguf model is dequantised on load: give a model folder or a hub id" in err


class Built(Exception):
    pass


def test_quantization_config_is_trls_and_trl_loads_the_model(model_dir, tmp_path, monkeypatch):
    # The wiring up to the trainer: TRL's get_quantization_config, and the model handed to TRL by path so that it
    # loads it with that config (as trl/scripts/sft.py does); with `use_cpu` on the CPU even where there is a GPU.
    from balancetrl import trainer as trainer_module

    seen = {}

    def capture(self, model, args=None, *pos, **kwargs):
        seen.update(model=model, args=args, **kwargs)
        raise Built

    monkeypatch.setattr(preflight, "check_quantization", lambda model_args, training_args: None)
    monkeypatch.setattr(trainer_module.BalanceSFTTrainer, "__init__", capture)
    parser = balance_sft.make_parser()
    script_args, training_args, model_args, _, hdr, _, _ = parser.parse_recipe(
        _flags(model_dir, tmp_path / "run", "--load_in_4bit", "true", "--dtype", "bfloat16"))
    with pytest.raises(Built):
        balance_sft.main(script_args, training_args, model_args, hdr)
    config = seen["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.bnb_4bit_quant_type == model_args.bnb_4bit_quant_type
    assert seen["model"] == str(model_dir)  # loaded by TRL with the config, not by us in full precision
    assert seen["args"].model_init_kwargs["dtype"] == "bfloat16"
    assert seen["args"].model_init_kwargs["device_map"] == {"": "cpu"}  # the CPU recipe has use_cpu: true
    assert seen["peft_config"] is not None
