"""Multi-node without a shared filesystem: two CPU ranks in different working directories get the same data split."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from test_distributed import _free_port

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).parent / "split_ranks.py"
DATA = Path(__file__).parent / "data" / "xlam_cot_sample.jsonl"


@pytest.mark.slow
def test_ranks_in_different_directories_get_the_main_process_split(tmp_path):
    # `--multi_gpu` starts two torch.distributed workers; PartialState(cpu=True) in the script makes them gloo CPU ranks
    subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
         str(SCRIPT), "--base", str(tmp_path), "--data", str(DATA)],
        check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main["data_files"] == ["base.jsonl", "hard.jsonl", "rejected.jsonl", "report.json"]
    assert other["data_files"] == []  # nothing was written on the other "node", and nothing was read there
    assert not (tmp_path / "node1" / "train.jsonl").exists()
    assert main["base"] > 0 and main["hard"] > 0
    assert {k: other[k] for k in ("base", "hard", "outcomes", "sha256")} == \
        {k: main[k] for k in ("base", "hard", "outcomes", "sha256")}


@pytest.mark.slow
def test_hdr_rounds_on_node_0_reach_every_rank(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
         str(SCRIPT), "--base", str(tmp_path), "--data", str(DATA), "--hdr-state"],
        check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert main["local"] == [1, 2] and other["local"] == []  # node 1's disk has no round
    rounds = [[1, [{"id": "a1"}], [{"id": "h1"}], {"round": 1, "judges": {}}],
              [2, [{"id": "a2"}], [{"id": "h2"}], {"round": 2, "judges": {}}]]
    assert main["restored"] == other["restored"] == rounds


def test_multi_node_accelerate_config():
    config = load_config_from_file(str(ROOT / "balancetrl" / "accelerate_configs" / "multi_node.yaml"))
    assert config.num_machines == 2 and config.num_processes == 16 and config.machine_rank == 0
    assert config.distributed_type.value == "MULTI_GPU" and config.rdzv_backend == "static"
    assert config.main_process_ip and config.main_process_port
