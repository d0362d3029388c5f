"""The new user's clock: `make demo` in a fresh clone, install included (figures, not a test).

    python -m benchmarks.demo_cpu [--clone DIR] [--json benchmarks/results/demo_fresh_clone.json]

Clones this checkout's HEAD into DIR (a temporary folder unless given), then runs, in it, `make install` and
`make demo` one after the other, timing each as a whole process (what the README's first command costs: `make demo`
installs, then trains). Records those wall times, their sum, and from the run's own `balance_sft_summary.json` and
`hdr/summary.json` the steps, train seconds, final loss, final λ and HDR's accepted answers; the machine (CPU model,
bf16 flags), the commit and the load average before and after, since a shared machine inflates the wall times.
pip's cache is whatever the machine has: a first install ever on a machine downloads more than this measures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from balancetrl.runtime.cpu import cpu_bf16_flags
from benchmarks.common import command_line, cpu_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_OUTPUT = "outputs/smollm2-135m-balance-sft-cpu"  # the demo recipe's output_dir


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}; see {log}")
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clone", help="where to clone (default: a new temporary folder)")
    parser.add_argument("--json", default="benchmarks/results/demo_fresh_clone.json")
    args = parser.parse_args()
    clone = Path(args.clone or tempfile.mkdtemp(prefix="demo_cpu_")) / "balancetrl"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    load_before = os.getloadavg()
    env_note = {k: os.environ[k] for k in ("OMP_NUM_THREADS",) if k in os.environ}
    install = timed(["make", "install"], clone, clone.parent / "install.log")
    demo = timed(["make", "demo"], clone, clone.parent / "demo.log")
    load_after = os.getloadavg()
    out = clone / DEMO_OUTPUT
    summary = json.loads((out / "balance_sft_summary.json").read_text())
    hdr = json.loads((out / "hdr" / "summary.json").read_text())
    result = {
        "command": command_line("benchmarks.demo_cpu"),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "cpu_bf16_flags": cpu_bf16_flags(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after], **env_note},
        "install_seconds": install,
        "demo_seconds": demo,
        "total_seconds": round(install + demo, 1),
        "optimizer_steps": summary["global_steps"],
        "train_seconds": summary["train_seconds"],
        "final_train_loss": summary["final_train_loss"],
        "final_lambda": summary["final_lambda"],
        "hdr_hard": hdr["initial_hard"],
        "hdr_accepted": hdr["accepted_total"],
        "data": summary["data"],
    }
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
