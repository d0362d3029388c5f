"""Whether this CPU runs bf16 natively: the x86 flags of bf16 matrix instructions, read from /proc/cpuinfo.

Without AMX or AVX512-BF16, torch emulates bf16 matmuls: on an AVX2-only AMD EPYC a trainer step under bf16 autocast
took many times as long as in fp32, while on an AMX Xeon bf16 was faster than fp32. The figures, with the commands
that measured them: benchmarks/results/bf16_cpu_avx2.json and bf16_cpu.json, shown in docs/results.md. The warning
below quotes the AVX2 figure (tests/test_docs.py checks it against bf16_cpu_avx2.json). TrainingArguments accepts
bf16 on any CPU and SFTConfig turns it on by default, so nothing else says so before the hours are spent.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text, "" where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str] | None:
    """The bf16 flags this x86 CPU lists (`[]`: none, bf16 is emulated); None where that cannot be told: no
    /proc/cpuinfo (not Linux) or not an x86 CPU (Arm's bf16 is another flag, not judged here)."""
    words = set((read_cpuinfo() if cpuinfo is None else cpuinfo).split())
    if "sse2" not in words:  # every x86-64 CPU lists it
        return None
    return sorted(words & BF16_FLAGS)


def warn_if_bf16_is_emulated(bf16: bool, device_type: str, cpuinfo: str | None = None) -> str | None:
    """Log (and return) a warning when training under bf16 autocast on a CPU known to emulate bf16."""
    if not bf16 or device_type != "cpu" or cpu_bf16_flags(cpuinfo) != []:
        return None
    message = (
        "bf16=True on a CPU without amx_bf16 or avx512_bf16 (see /proc/cpuinfo): torch emulates bf16 matmuls, and on "
        "such a CPU a BalanceSFT step took 9.1x as long as in fp32. SFTConfig turns bf16 on by default; set "
        "`bf16: false` in the recipe (or pass --bf16 false) to train in fp32, or keep it if you need bf16 numerics."
    )
    logger.warning(message)
    return message
