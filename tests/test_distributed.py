"""Two CPU processes (gloo, through `accelerate launch`) give the update of one process with the doubled batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "distributed_step.py"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process_with_double_batch(tmp_path):
    # two steps, gradient checkpointing off: transformers then asks DDP to search for unused parameters unless the
    # config says otherwise, and λ (used after the forward) would break the second step
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    accelerate = Path(sys.executable).parent / "accelerate"
    # `--cpu --num_processes 2` alone starts a single process (accelerate wants mpirun for multi-CPU); the
    # multi-GPU launcher starts two torch.distributed workers, and `use_cpu=True` makes them gloo CPU ranks.
    subprocess.run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
         str(SCRIPT), "--out", str(tmp_path / "two.pt"), "--batch", "2", "--steps", "2"],
        check=True, env=env, timeout=600,
    )
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "one.pt"), "--batch", "4", "--steps", "2"],
                   check=True, env=env, timeout=600)
    two, one = torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt")
    assert (two["processes"], one["processes"]) == (2, 1)
    assert two["log"]["ssb/tokens_cot"] == one["log"]["ssb/tokens_cot"]  # counted over both ranks
    for name, update in one["update"].items():
        assert (update - two["update"][name]).norm() / update.norm().clamp(min=1e-30) < 1e-5, name
    assert abs(one["dlambda"]) > 1e-4
    assert abs(one["dlambda"] - two["dlambda"]) / abs(one["dlambda"]) < 1e-5
