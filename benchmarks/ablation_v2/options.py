"""The command-line options both unit runners share (ablation v2 and the mechanism experiment train the same arms
through `units.train_unit` and cache them in a `UnitCache`), their checks, and the refusal of emulated bf16."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from balancetrl.runtime.cpu import cpu_bf16_flags
from benchmarks.common import command_line, machine


def add_unit_options(p: argparse.ArgumentParser, *, arms: Iterable[str], seeds: str, work: str,
                     data_help: str, max_length_help: str, bf16_help: str) -> None:
    """Data, arms and seeds; the training settings every arm shares; the engine; the statistics; the unit cache."""
    p.add_argument("--data", default="../shared/data/toolrl_xlam_cot.jsonl", help=data_help)
    p.add_argument("--arms", default=",".join(arms))
    p.add_argument("--seeds", default=seeds, help="seeds of every trained arm (≥ 2 for the pooled comparison)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=1024, help=max_length_help)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lambda-lr", type=float, default=0.05, help="λ learning rate of the ssb_lr arm")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of the paired statistics")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where every unit runs; part of each unit's config (cuda units are not mixed with cpu "
                        "ones): give a GPU run its own --units and --out")
    p.add_argument("--bf16", action="store_true",
                   help="train under bf16 autocast (master weights and λ stay fp32), the same for every arm; "
                        f"{bf16_help}: faster trainer steps on a CPU with AMX (benchmarks/results/bf16_cpu.json)")
    p.add_argument("--allow-slow-bf16", action="store_true",
                   help="run --bf16 units on a CPU without AMX/avx512_bf16 (torch emulates bf16 there: a trainer "
                        "step many times slower than fp32 on an AVX2 EPYC: benchmarks/results/bf16_cpu_avx2.json); "
                        "refused otherwise")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--work", default=work, help="trainer (and eval) outputs of the running unit; its cache is "
                                                "<work>/units unless --units says otherwise")
    p.add_argument("--units", default="", help="unit cache folder (default <work>/units); a committed folder "
                   "carries finished units to the next machine or session")
    p.add_argument("--report-only", action="store_true", help="no training: rebuild the report from the cache")
    p.add_argument("--max-units", type=int, default=0, help="stop after running this many new units (0: all)")
    p.add_argument("--progress", action="store_true")


def units_command(module: str, argv: list[str] | None = None) -> str:
    """The command a report records: the one that runs its units. A --report-only rebuild records it too (without
    that flag), so rebuilding from the cache gives the same report."""
    args = sys.argv[1:] if argv is None else argv
    return command_line(module, [a for a in args if a != "--report-only"])


def check_unit_options(p: argparse.ArgumentParser, opts: argparse.Namespace) -> None:
    """Parse --seeds and --arms into lists (opts.seeds, opts.arm_list) and refuse what no unit can run with."""
    opts.seeds = [int(s) for s in opts.seeds.split(",") if s.strip()]
    opts.arm_list = [a.strip() for a in opts.arms.split(",") if a.strip()]
    if not opts.seeds:
        p.error("--seeds needs at least one seed")
    if not Path(opts.data).is_file():
        p.error(f"--data {opts.data} does not exist")
    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)")


def refuse_emulated_bf16(opts) -> None:
    """--bf16 on a CPU without bf16 matrix units: stop before the first step instead of running for hours. On an
    AVX2-only EPYC a bf16 step of `make ablation`'s units took minutes where the AMX Xeon took seconds, and
    benchmarks/bf16_cpu.py measured a bf16 step at many times an fp32 one there (benchmarks/results/bf16_cpu_avx2.json,
    shown in docs/results.md)."""
    if not opts.bf16 or opts.device != "cpu" or opts.allow_slow_bf16 or cpu_bf16_flags() != []:  # [] = known to emulate
        return
    raise SystemExit(
        f"--bf16 on a CPU without amx_bf16 or avx512_bf16 ({machine()['cpu_model']}): torch emulates bf16 matmuls "
        "here, several times slower than fp32 (benchmarks/bf16_cpu.py measures it), so a unit would take many hours. "
        "Run the bf16 units on a CPU that lists amx_bf16 or avx512_bf16 in /proc/cpuinfo (ablation v2's committed "
        "units ran on an AMX Xeon and an avx512_bf16 EPYC), or drop --bf16 and give the fp32 run its own --units and "
        "--out (fp32 units are not comparable with bf16 ones), or pass --allow-slow-bf16 to run anyway. --report-only "
        "rebuilds the report from the cache.")
