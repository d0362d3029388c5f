"""Peak resident memory of a QLoRA run (NF4 base + LoRA, bitsandbytes' CPU backend) against the same LoRA run in fp32.

    python -m benchmarks.qlora_memory [--hidden 1024 --intermediate 2816 --layers 8 --steps 4]
        [--json benchmarks/results/qlora_memory.json]

CPU figures: what `load_in_4bit: true` saves on a machine without a GPU (GPU memory is not measured here).
Model: a Llama built from a config (random weights, saved to `--tmp` as fp32 safetensors, no download) with the tests'
~600-token tokenizer, so that the linear layers bitsandbytes quantises hold nearly all the weights. Data: the tests'
tool-calling conversations, without their tool schemas. Each arm runs the training script (`balance_sft.cli`: SSB loss, λ in its own group) in its
own subprocess with the same recipe and threads (batch 1 of 71-131 tokens, so that activations stay small next to
the weights); the QLoRA arm adds `--load_in_4bit true` (TRL loads the folder with `BitsAndBytesConfig(load_in_4bit,
nf4, compute dtype float32)`). Recorded per arm, from /proc/self/status and /proc/self/smaps:
  - rss_after_imports: torch, transformers, TRL, peft, bitsandbytes and balancetrl imported, nothing loaded;
  - rss_before_train: the trainer built (model loaded, quantised or not, LoRA attached, data tokenised);
  - peak_rss_train: VmHWM over `trainer.train()` (the high-water mark is reset at its start through
    /proc/self/clear_refs), the figure QLoRA is for; peak_rss_anon_train / peak_rss_file_train: its anonymous and
    file-backed parts, sampled every 5 ms;
  - checkpoint_mapped_*: resident MiB of the mapping of model.safetensors. transformers mmaps the checkpoint: the fp32
    run's weights are those file pages (resident once training touches them); the QLoRA run reads every page to
    quantise it and keeps the mapping, so its RSS carries the fp32 checkpoint it no longer uses (clean page cache the
    kernel may drop). The ratio without that mapping is given too;
  - peak_rss_run: the whole process's high-water mark (imports, load, training, saving).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.common import RssSampler, command_line, machine, status_kib

RECIPE = """
chat_template: keep
dtype: float32
use_cpu: true
use_peft: true
lora_r: 16
lora_alpha: 32
lora_target_modules: all-linear
run_check: false
per_device_train_batch_size: 1  # short rows, one at a time: the weights, not the activations, dominate
learning_rate: 1.0e-3
lr_scheduler_type: constant
max_length: 160
logging_steps: 1
save_strategy: "no"
report_to: none
seed: 0
gradient_checkpointing: false
bf16: false
disable_tqdm: true
"""
ARMS = {"lora_fp32": [], "qlora_nf4": ["--load_in_4bit", "true"]}


def mapped_kib(path: Path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(str(path.resolve()))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def build_inputs(opts) -> tuple[Path, Path]:
    """The model folder (fp32 safetensors + tokenizer) and the data file, under `--tmp`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.fixtures.conversations import build_tokenizer, make_conversations

    tmp = Path(opts.tmp)
    model_dir, data = tmp / "model", tmp / "data.jsonl"
    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=opts.hidden, intermediate_size=opts.intermediate,
        num_hidden_layers=opts.layers, num_attention_heads=opts.hidden // 64, num_key_value_heads=opts.hidden // 64,
        max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    # without the tool schemas in the prompt: rows of 71-131 tokens, so the activations stay small next to the weights
    rows = [{"messages": c["messages"]} for c in make_conversations()[:3]]
    data.write_text("".join(json.dumps(c) + "\n" for c in rows * 4))
    return model_dir, data


def child(arm: str, opts) -> dict:
    import bitsandbytes as bnb
    import peft
    import torch
    import transformers
    import trl

    from balancetrl.scripts import balance_sft
    from balancetrl.trainer.balance_sft_trainer import BalanceSFTTrainer

    torch.set_num_threads(opts.threads)
    seen = {"rss_after_imports_kib": status_kib("VmRSS")}
    checkpoint = Path(opts.tmp) / "model" / "model.safetensors"
    train = BalanceSFTTrainer.train

    def measured(self, *args, **kwargs):
        seen["rss_before_train_kib"] = status_kib("VmRSS")
        seen["peak_rss_before_train_kib"] = status_kib("VmHWM")
        seen["checkpoint_mapped_before_train_kib"] = mapped_kib(checkpoint)
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
        start = time.perf_counter()
        # the kernel keeps a high-water mark of the sum only (VmHWM): its anonymous and file parts are sampled
        with RssSampler(("RssAnon", "RssFile"), interval=0.005) as sampler:
            out = train(self, *args, **kwargs)
        seen["train_seconds"] = round(time.perf_counter() - start, 1)
        seen["peak_rss_train_kib"] = status_kib("VmHWM")
        seen["peak_rss_anon_train_kib"] = sampler.peak["RssAnon"]
        seen["peak_rss_file_train_kib"] = sampler.peak["RssFile"]
        seen["checkpoint_mapped_after_train_kib"] = mapped_kib(checkpoint)
        history = self.state.log_history
        seen["losses"] = [round(e["loss"], 4) for e in history if "loss" in e]
        seen["lambda"] = [round(e["ssb/lambda"], 4) for e in history if "ssb/lambda" in e]
        base = self.model.get_base_model()
        seen["base_linear_layers"] = dict(Counter(  # the model's own layers, not the adapters' (Linear4bit is one)
            type(m).__name__ for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n))
        seen["trainable_params"] = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        seen["base_params"] = sum(p.numel() for p in base.parameters())
        return out

    BalanceSFTTrainer.train = measured
    argv = ["--config", str(Path(opts.tmp) / "recipe.yaml"), "--model_name_or_path", str(Path(opts.tmp) / "model"),
            "--dataset_path", str(Path(opts.tmp) / "data.jsonl"), "--output_dir", str(Path(opts.tmp) / arm),
            "--max_steps", str(opts.steps), *ARMS[arm]]
    if balance_sft.cli(argv) != 0:
        raise SystemExit(f"{arm}: balance_sft.cli failed")
    seen["peak_rss_run_kib"] = max(seen["peak_rss_before_train_kib"], status_kib("VmHWM"))
    seen["versions"] = {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "trl": trl.__version__, "peft": peft.__version__,
                        "bitsandbytes": bnb.__version__}
    return seen


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--intermediate", type=int, default=2816)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tmp", default="outputs/qlora_memory")
    p.add_argument("--json", default="benchmarks/results/qlora_memory.json")
    p.add_argument("--child", choices=list(ARMS), help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        print(json.dumps(child(opts.child, opts)))
        return
    command = command_line("benchmarks.qlora_memory", argv)
    Path(opts.tmp).mkdir(parents=True, exist_ok=True)
    (Path(opts.tmp) / "recipe.yaml").write_text(RECIPE)
    build_inputs(opts)
    arms = {}
    for arm in ARMS:
        cmd = [sys.executable, "-m", "benchmarks.qlora_memory", "--child", arm, "--hidden", str(opts.hidden), "--intermediate",
               str(opts.intermediate), "--layers", str(opts.layers), "--steps", str(opts.steps), "--threads",
               str(opts.threads), "--tmp", opts.tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{arm} failed:\n{done.stderr[-3000:]}")
        arms[arm] = json.loads(done.stdout.strip().splitlines()[-1])
    lora, qlora = arms["lora_fp32"], arms["qlora_nf4"]
    mib = {k: {arm: round(a[f"{k}_kib"] / 1024, 1) for arm, a in arms.items()}
           for k in ("rss_after_imports", "rss_before_train", "peak_rss_train", "peak_rss_anon_train",
                     "peak_rss_file_train", "checkpoint_mapped_before_train", "checkpoint_mapped_after_train",
                     "peak_rss_run")}
    # the QLoRA process keeps the fp32 checkpoint mapped after quantising it (clean page cache it never reads again,
    # which the kernel may drop); in the fp32 run that mapping is the weights themselves
    stale = qlora["peak_rss_train_kib"] - qlora["checkpoint_mapped_after_train_kib"]
    growth = {arm: round((a["peak_rss_train_kib"] - a["rss_after_imports_kib"]) / 1024, 1) for arm, a in arms.items()}
    res = {
        "command": command,
        "what": "CPU figures: peak resident memory (RSS) of the training script, QLoRA (NF4, bitsandbytes CPU backend) "
                "vs LoRA on the fp32 model, one subprocess each; GPU memory is not measured",
        "model": f"llama hidden {opts.hidden}, intermediate {opts.intermediate}, {opts.layers} layers, vocab "
                 f"{json.loads((Path(opts.tmp) / 'model' / 'config.json').read_text())['vocab_size']}, "
                 f"{lora['base_params'] / 1e6:.1f}M params (fp32 checkpoint {lora['base_params'] * 4 / 2**20:.0f} MiB)",
        "steps": opts.steps, "batch": 1, "max_length": 160, "threads": opts.threads,
        "rss_mib": mib,
        "peak_rss_train_ratio_qlora_over_lora": round(qlora["peak_rss_train_kib"] / lora["peak_rss_train_kib"], 3),
        "peak_rss_run_ratio_qlora_over_lora": round(qlora["peak_rss_run_kib"] / lora["peak_rss_run_kib"], 3),
        "peak_rss_train_ratio_without_the_stale_checkpoint_mapping": round(stale / lora["peak_rss_train_kib"], 3),
        "peak_rss_train_above_imports_mib": growth,
        "peak_rss_train_above_imports_ratio": round(growth["qlora_nf4"] / growth["lora_fp32"], 3),
        "arms": arms,
        "machine": {**machine(), "loadavg": os.getloadavg()},
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }
    assert all(math.isfinite(x) for a in arms.values() for x in a["losses"])
    Path(opts.json).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.json).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: res[k] for k in ("model", "rss_mib", "peak_rss_train_ratio_qlora_over_lora",
                                          "peak_rss_run_ratio_qlora_over_lora",
                                          "peak_rss_train_ratio_without_the_stale_checkpoint_mapping",
                                          "peak_rss_train_above_imports_mib",
                                          "peak_rss_train_above_imports_ratio")}, indent=1))


if __name__ == "__main__":
    main()
