"""Every engine the recipes name, run for real on 2 CPU ranks through the CLI: DDP, DeepSpeed ZeRO-2 and ZeRO-3,
FSDP2. The same 4 optimizer steps on the same data give the single process's per-step loss and λ, λ's group keeps its
own lr and no weight decay in the optimizer the engine steps, and a run resumed after step 2 ends where the
uninterrupted run ends.

Tolerance: fp32 throughout. The single process sums a step's token NLLs in one reduction, two ranks sum their halves
and all-reduce, so the sums differ in rounding order only (~1e-7 relative per reduction); measured after 4 Adam steps:
2e-8 on λ, 1e-7 relative on the loss. The bounds below (λ 1e-6, loss 1e-5 relative) leave 50-100x room and are still
four orders below one step's change of either.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import _free_port

pytest.importorskip("deepspeed", reason="the engine tests need deepspeed (make install puts it in the venv)")

ROOT = Path(__file__).resolve().parents[1]
BALANCETRL = Path(sys.executable).parent / "balancetrl"
LAMBDA_LR, WEIGHT_DECAY = 0.05, 0.1

ENGINES = {  # name -> (flags after the recipe, the engine the run must report)
    "ddp": (["--accelerate_config", "multi_cpu"], "ddp"),
    "zero2": (["--accelerate_config", "zero2_cpu"], "deepspeed-zero2"),
    "zero3": (["--accelerate_config", "zero3_cpu"], "deepspeed-zero3"),
    # transformers cannot resume a model sharded at load time: it saves the model only (see test_fsdp2_* below)
    "fsdp2": (["--accelerate_config", "multi_cpu", "--model_fsdp_size", "2", "--save_only_model", "true"],
              "fsdp2-transformers"),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import save_tiny_run_inputs

    root = tmp_path_factory.mktemp("engines")
    model, data = save_tiny_run_inputs(root, repeat=4)
    recipe = root / "recipe.yaml"
    recipe.write_text(f"""
model_name_or_path: {model}
dtype: float32
chat_template: keep
dataset_path: {data}
allow_missing_cot: true
use_cpu: true
max_steps: 4
per_device_train_batch_size: 1   # the single process runs 2: the same 4 samples per step
gradient_accumulation_steps: 2
learning_rate: 1.0e-3
weight_decay: {WEIGHT_DECAY}
lr_scheduler_type: constant
max_length: 256
logging_steps: 1
save_strategy: steps
save_steps: 2
report_to: none
seed: 42
gradient_checkpointing: false
bf16: false
ssb_lambda_init: 0.7
ssb_lambda_lr: {LAMBDA_LR}
""")
    return root, recipe


def run(recipe, out, *flags, launcher=True, check=True):
    command = ([str(BALANCETRL), "balance-sft"] if launcher else [sys.executable, "-m", "balancetrl.scripts.balance_sft"])
    command += ["--config", str(recipe), "--output_dir", str(out), *flags]
    if launcher:
        command += ["--main_process_port", str(_free_port())]
    r = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def steps(out) -> list[tuple[float, float]]:
    state = json.loads((Path(out) / "checkpoint-4" / "trainer_state.json").read_text())
    return [(e["loss"], e["ssb/lambda"]) for e in state["log_history"] if "loss" in e]


def summary(out) -> dict:
    return json.loads((Path(out) / "balance_sft_summary.json").read_text())


@pytest.fixture(scope="module")
def single(setup):
    root, recipe = setup
    run(recipe, root / "single", "--per_device_train_batch_size", "2", launcher=False)
    return root / "single"


def assert_same_steps(got, want):
    assert len(got) == len(want) == 4
    for (loss, lam), (want_loss, want_lam) in zip(got, want):
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert lam == pytest.approx(want_lam, abs=1e-6)


def assert_saved_model_loads_without_lambda(out, reference):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    weights, want = load_file(Path(out) / "model.safetensors"), load_file(Path(reference) / "model.safetensors")
    assert sorted(weights) == sorted(want) and not any("ssb" in k for k in weights)
    assert max((weights[k] - want[k]).abs().max().item() for k in want) < 1e-5  # the same training
    records = []
    handler = type("H", (hf_logging.logging.Handler,), {"emit": lambda self, record: records.append(record)})()
    hf_logging.get_logger().addHandler(handler)
    try:
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    finally:
        hf_logging.get_logger().removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno >= hf_logging.WARNING] == []
    assert not hasattr(model, "balancetrl_ssb")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ENGINES))
def test_engine_on_two_cpu_ranks_trains_as_one_process_and_resumes(name, setup, single, tmp_path):
    root, recipe = setup
    flags, engine = ENGINES[name]
    run(recipe, tmp_path / "run", *flags)
    got = summary(tmp_path / "run")
    report = got["engine"]
    assert (report["engine"], report["processes"], report["device"], report["backend"]) == (engine, 2, "cpu", "gloo")
    # λ's group in the optimizer the engine steps (DeepSpeed's ZeRO optimizer for ZeRO), not the one handed to it
    assert report["lambda_group"]["lr"] == LAMBDA_LR and report["lambda_group"]["weight_decay"] == 0.0
    if name.startswith("zero"):
        assert report["deepspeed"]["zero_stage"] == int(name[-1]) and report["deepspeed"]["accelerator"] == "cpu"
        assert report["lambda_group"]["optimizer"].startswith("DeepSpeedZeroOptimizer")
    if name in ("zero3", "fsdp2"):  # every model parameter sharded (φ too under ZeRO-3; FSDP2 leaves it replicated)
        assert report["sharded_parameters"] == report["parameters"] - (name == "fsdp2")
    else:
        assert report["sharded_parameters"] == 0
    want = steps(single)
    assert_same_steps(steps(tmp_path / "run"), want)
    assert want[-1][1] > 0.7 + 0.02  # λ moved (4 Adam steps at lr 0.05 toward the CoT side on this random model)
    assert got["final_lambda"] == pytest.approx(want[-1][1], abs=1e-6)
    ssb_state = json.loads((tmp_path / "run" / "checkpoint-4" / "balancetrl_ssb.json").read_text())
    assert ssb_state["lambda"] == pytest.approx(want[-1][1], abs=1e-6)  # read whole, also from a ZeRO-3 shard
    assert_saved_model_loads_without_lambda(tmp_path / "run", single)

    if name == "fsdp2":
        return
    # killed after step 2: a new job given only what the first left at step 2 ends where the uninterrupted one ends
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp_path / "run" / "checkpoint-2", resumed / "checkpoint-2")
    run(recipe, resumed, *flags, "--resume_from_checkpoint", str(resumed / "checkpoint-2"))
    assert steps(resumed) == steps(tmp_path / "run")  # exactly: same ranks, same reduction order
    assert summary(resumed)["final_lambda"] == got["final_lambda"]


@pytest.mark.slow
def test_fsdp2_run_that_saves_optimizer_state_is_refused_by_transformers_before_training(setup, tmp_path):
    root, recipe = setup
    r = run(recipe, tmp_path / "run", "--accelerate_config", "multi_cpu", "--model_fsdp_size", "2", check=False)
    assert r.returncode != 0
    assert "Resuming is not supported for models sharded at load time" in r.stderr
    assert not (tmp_path / "run" / "checkpoint-2").exists()


@pytest.mark.slow
def test_accelerate_fsdp_config_on_cpu_ranks_is_refused_not_run_as_ddp(setup, tmp_path):
    import yaml

    root, recipe = setup
    config = yaml.safe_load((ROOT / "balancetrl" / "accelerate_configs" / "fsdp2.yaml").read_text())
    config.update(num_processes=2, use_cpu=True, mixed_precision="no")  # the GPU config, as a CPU user would edit it
    (tmp_path / "fsdp2.yaml").write_text(yaml.safe_dump(config))
    r = run(recipe, tmp_path / "run", "--accelerate_config", str(tmp_path / "fsdp2.yaml"), check=False)
    assert r.returncode != 0
    assert "the accelerate config asks for FSDP, but accelerate set this run up as MULTI_CPU" in r.stderr
    assert "model_fsdp_size" in r.stderr
    assert not (tmp_path / "run" / "checkpoint-2").exists()


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the in-process memorisation (150 steps, seconds on idle cores) took 565 s beside 4 jobs
def test_hdr_round_under_zero3_with_uneven_generations_gives_every_rank_the_same_records(tmp_path):
    # ZeRO-3 needs every rank in every forward of a partitioned model: the transformers backend gathers the weights
    # once for the whole round (TRL's unwrap_model_for_generation), and transformers' generate still syncs the ranks
    # at every token (synced_gpus), so each rank runs as many generate calls as the others (padded_shard). With one
    # prompt per batch rank 0 has 2 batches and rank 1 one (padded to 2): unpadded, rank 0 waited forever
    from hdr_run import memorise

    model_dir = memorise(tmp_path / "memorised")
    report = tmp_path / "report"
    report.mkdir()
    subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(ROOT / "balancetrl" / "accelerate_configs" / "zero3_cpu.yaml"), "--main_process_port", str(_free_port()),
         str(ROOT / "tests" / "hdr_ranks.py"), "--output-dir", str(tmp_path / "run"), "--model-dir", str(model_dir),
         "--report", str(report)],
        check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, cwd=ROOT,
    )
    main, other = (json.loads((report / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main["engine"] == other["engine"] == "deepspeed-zero3" and main["world"] == 2
    # 3 hard samples over 2 ranks: rank 0 generated 2 prompts (one ran to the 96-token cap), rank 1 one and its filler
    mine, theirs = main["lengths"], other["lengths"]
    assert len(mine) == len(theirs) == 2  # generate calls, one prompt each
    assert max(mine[1][0]) == 96 > max(theirs[0][0])  # same call, different lengths
    assert main["accepted"] == other["accepted"] and [r["id"] for r in main["accepted"]] == ["hard-0"]
    assert main["still_hard"] == other["still_hard"] == ["hard-1", "hard-unseen"]
    assert main["global_step"] == other["global_step"] == 4 and main["lambda"] == other["lambda"]
