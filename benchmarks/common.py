"""What several benchmarks use: the command line a result records, the machine it ran on, a per-step timer, the HDR
step plan of the ablations, and a sampler of this process's resident memory.

Imports nothing heavy: a benchmark sets its environment (HF_HUB_OFFLINE, ...) before torch or transformers load, and
`StepTimer` (a transformers TrainerCallback) loads transformers on first use."""

from __future__ import annotations

import functools
import math
import os
import platform
import re
import shlex
import sys
import threading
import time
from pathlib import Path

from balancetrl.runtime.cpu import cpu_bf16_flags, read_cpuinfo


def command_line(module: str, argv: list[str] | None = None) -> str:
    """How to run this again: `python -m <module> <args>` (the args of `argv`, else of this process)."""
    args = argv if argv is not None else sys.argv[1:]
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])


def cpu_model(cpuinfo: str | None = None, default: str = "unknown") -> str:
    """The first `model name` of /proc/cpuinfo (`default` where there is none)."""
    for line in (read_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return default


def machine() -> dict:
    import torch

    cpuinfo = read_cpuinfo()
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model(cpuinfo), "cpu_bf16_flags": cpu_bf16_flags(cpuinfo),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__}


@functools.cache
def _step_timer() -> type:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of every optimizer step (HDR rounds run between steps and are timed separately)."""

        def __init__(self):
            self.step_seconds: list[float] = []
            self._t = None

        def on_step_begin(self, args, state, control, **kwargs):
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if self._t is not None:
                self.step_seconds.append(time.perf_counter() - self._t)
            self._t = None

    StepTimer.__qualname__ = "StepTimer"
    return StepTimer


def __getattr__(name: str):
    if name == "StepTimer":  # PEP 562: transformers loads when a benchmark takes the timer, not with this module
        return _step_timer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plan_steps(opts, n_base: int, n_hard: int) -> dict:
    """The optimizer steps of every trained arm (`opts`: batch, round_size, hdr_rounds, steps, epochs).

    An HDR job plans its own epochs (cold-start epochs on the base set, then round epochs of round_size samples), so
    it cannot take max_steps. With `steps` S the base set is cut to (S - round_steps) x batch samples so that the HDR
    plan is exactly S steps (the other arms train max_steps=S on that base set); with `steps` 0 the whole base set
    runs `epochs` cold-start epochs and the other arms get the HDR plan's total as max_steps."""
    b = opts.batch  # one process, gradient_accumulation_steps=1: one batch = one optimizer step
    round_size = opts.round_size or max(n_hard, b)
    round_steps = opts.hdr_rounds * math.ceil(round_size / b)
    if opts.steps > 0:
        cold_steps = opts.steps - round_steps
        if cold_steps < 1:
            raise SystemExit(f"--steps {opts.steps} leaves no cold-start step after {round_steps} round steps")
        base_used = min(n_base, cold_steps * b)
        if base_used < cold_steps * b:
            raise SystemExit(f"--steps {opts.steps} needs {cold_steps * b} base samples, the checks gave {n_base}: "
                             "raise --n-train")
        epochs = 1
    else:
        base_used, epochs = n_base, opts.epochs
        cold_steps = epochs * math.ceil(n_base / b)
    return {"base_used": base_used, "cold_start_epochs": epochs, "cold_steps": cold_steps, "round_size": round_size,
            "round_steps": round_steps, "total_steps": cold_steps + round_steps}


def status_kib(field: str) -> int:
    """A field of /proc/self/status given in kB (VmRSS, VmHWM, RssAnon, RssFile, ...), in KiB."""
    return statuses_kib((field,))[field]


def statuses_kib(fields: tuple[str, ...]) -> dict[str, int]:
    """Several fields of one read of /proc/self/status, in KiB."""
    text = Path("/proc/self/status").read_text()
    return {f: int(re.search(rf"^{f}:\s+(\d+) kB", text, re.M).group(1)) for f in fields}


class RssSampler:
    """Start and peak of /proc/self/status memory fields (KiB) while the block runs, sampled every `interval` seconds.

    PyTorch keeps no CPU allocator statistics, `ru_maxrss` would be the peak of model loading rather than of the
    block, and the kernel's own high-water mark (VmHWM) covers the sum RSS only, not its anonymous and file parts."""

    def __init__(self, fields: tuple[str, ...] = ("VmRSS",), interval: float = 0.005):
        self.fields, self.interval = fields, interval

    def __enter__(self):
        self.start = statuses_kib(self.fields)
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.interval):
            for field, kib in statuses_kib(self.fields).items():
                self.peak[field] = max(self.peak[field], kib)
