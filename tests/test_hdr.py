"""The HDR loop inside one `trainer.train()`: a tiny model that can answer two of its three hard samples,
real LiteLLM judges at a loopback HTTP server with faults, the dataset swap, state on disk, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from balancetrl.segments import SegmentSpec, tokenize_with_segments
from hdr_run import build, memorise
from judge_server import JudgeServer, Reply, closed_port_base

HERE = Path(__file__).parent
SECRET = "sk-test-hdr-0123456789abcdef"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return memorise(tmp_path_factory.mktemp("memorised"))


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def record_batches(trainer):
    seen = []
    inner = trainer.data_collator

    def recording(examples):
        batch = inner(examples)
        seen.append((trainer.state.global_step, batch["input_ids"].tolist(), batch["attention_mask"].tolist()))
        return batch

    trainer.data_collator = recording
    return seen


def test_rule_gate_round_trains_on_accepted_and_stops_on_empty_hard_set(model_dir, tmp_path):
    trainer = build(str(tmp_path), model_dir, judges=[], max_rounds=3, unseen=False)
    seen = record_batches(trainer)
    trainer.train()
    rounds = [e for e in trainer.state.log_history if "hdr/round" in e]
    # round 1 at the end of the cold-start epoch (2 steps); then one round epoch (2 steps); then the empty hard set
    # stops the job before round 2, short of the 2 + 3 × 2 planned steps
    assert [(e["hdr/round"], e["step"]) for e in rounds] == [(1, 2)]
    assert rounds[0]["hdr/accepted"] == 2 and rounds[0]["hdr/hard_remaining"] == 0
    assert trainer.state.max_steps == 8 and trainer.state.global_step == 4
    accepted = read_jsonl(tmp_path / "hdr" / "round_001" / "accepted.jsonl")
    assert sorted(r["id"] for r in accepted) == ["hard-0", "hard-1"]
    assert read_jsonl(tmp_path / "hdr" / "round_001" / "still_hard.jsonl") == []
    # the round epoch's batches carried the accepted answers, the cold-start epoch's did not
    tok = trainer.processing_class
    wanted = [tokenize_with_segments(r, tok, tok.chat_template, SegmentSpec())["input_ids"] for r in accepted]

    def rows(step_range):
        return [ids[: sum(mask)] for step, batch, masks in seen if step in step_range for ids, mask in zip(batch, masks)]

    # the memorised model regenerates the base answers verbatim, so count rows: every slot of the round epoch
    # was seen, and the accepted answers filled exactly the accepted slots
    view = trainer._hdr.dataset
    assert view.extra is not None and [row["input_ids"] for row in view.extra] == wanted
    assert sorted(j for j in view.index if j < 0) == [-2, -1]
    round_rows = rows(range(2, 4))
    assert len(round_rows) == 4 and len(rows(range(0, 2))) == 4
    for ids in wanted:
        from_base = sum(view.base[j]["input_ids"] == ids for j in view.index if j >= 0)
        assert round_rows.count(ids) == from_base + 1
    summary = json.loads((tmp_path / "hdr" / "summary.json").read_text())
    assert summary["accepted_total"] == 2 and summary["hard_remaining"] == 0
    assert (tmp_path / "hdr" / "rounds.png").stat().st_size > 1000


def judge_scripts(timeout):
    def judge_a(request):  # first attempt hangs past the timeout, the retry answers
        return Reply(delay=timeout + 1.0) if request.attempt == 0 else Reply(score=0.9, reason="fine")

    def judge_b(request):  # an HTTP 500, then an out-of-range score, then the verdict: no to the Tokyo answer
        if request.attempt == 0:
            return Reply(status=500, error_body="boom")
        if "Tokyo" in request.prompt:
            return Reply(score=7) if request.attempt == 1 else Reply(score=0.2, reason="wrong tz")
        return Reply(content="looks good, {\"score\": 0.85, \"reason\": \"ok\"}")

    return {"judge-a": judge_a, "judge-b": judge_b}


def test_three_judges_with_faults_vote_and_every_verdict_is_recorded(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BALANCETRL_TEST_JUDGE_KEY", SECRET)
    timeout = 1.0
    with JudgeServer(judge_scripts(timeout)) as server:
        judges = [
            {"model": "openai/judge-a", "api_base": server.api_base, "api_key_env": "BALANCETRL_TEST_JUDGE_KEY"},
            {"model": "openai/judge-b", "api_base": server.api_base, "api_key_env": "BALANCETRL_TEST_JUDGE_KEY"},
            {"model": "openai/judge-c", "api_base": closed_port_base(), "api_key_env": "BALANCETRL_TEST_JUDGE_KEY"},
        ]
        trainer = build(str(tmp_path), model_dir, judges, max_rounds=2, judge_timeout=timeout, judge_retries=2)
        trainer.train()
        auths = {r.authorization for r in server.log}
    assert auths == {f"Bearer {SECRET}"}  # the key reached the server ...
    for path in tmp_path.rglob("*"):  # ... and nothing on disk
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    rounds = [e for e in trainer.state.log_history if "hdr/round" in e]
    assert [(e["hdr/round"], e["step"]) for e in rounds] == [(1, 2), (2, 4)]  # at the epoch boundaries
    assert trainer.state.global_step == trainer.state.max_steps == 6  # stopped at max_rounds
    hard = {"hard-0", "hard-1", "hard-unseen"}
    for k in (1, 2):
        d = tmp_path / "hdr" / f"round_{k:03d}"
        accepted = {r["id"] for r in read_jsonl(d / "accepted.jsonl")}
        still = {r["id"] for r in read_jsonl(d / "still_hard.jsonl")}
        assert still == hard - accepted and not accepted & still  # shrank exactly by the accepted samples
        hard = still
        summary = json.loads((d / "summary.json").read_text())
        candidates = read_jsonl(d / "candidates.jsonl")
        judged = [c for c in candidates if c["judged"]]
        assert summary["generated"] == len(candidates) == 3 * summary["hard_before"]
        assert summary["gate_rejected"] + summary["judged"] == summary["generated"]
        assert summary["judge_verdicts"] == 3 * len(judged)
        for c in judged:  # every verdict recorded, or its abstention
            verdicts = {v["judge"]: v for v in c["verdicts"]}
            assert set(verdicts) == {"openai/judge-a", "openai/judge-b", "openai/judge-c"}
            assert verdicts["openai/judge-c"]["abstained"] and verdicts["openai/judge-c"]["error"]
            for name in ("openai/judge-a", "openai/judge-b"):
                assert verdicts[name]["score"] is not None and not verdicts[name]["abstained"]
        assert summary["judge_abstained"] == len(judged)  # judge-c, every time
    round1 = read_jsonl(tmp_path / "hdr" / "round_001" / "accepted.jsonl")
    assert [r["id"] for r in round1] == ["hard-0"]  # Paris: 2 of 2 answering judges; Tokyo: 1 of 2, too few
    assert hard == {"hard-1", "hard-unseen"}


@pytest.mark.slow
def test_killed_mid_round_resumes_to_the_same_result_without_paying_twice(model_dir, tmp_path):
    state = {"pid": None, "answered": 0, "killed": False}

    def killer(request):
        if state["pid"] is not None and not state["killed"]:
            if state["answered"] >= 1:  # a round is under way and has paid for a verdict: kill the job
                time.sleep(0.5)  # let the client persist what it was answered
                state["killed"], state["killed_at"] = True, time.time()
                os.kill(state["pid"], signal.SIGKILL)
                return Reply(delay=5.0)
            state["answered"] += 1
        return Reply(score=0.9)

    def run(out, judges, resume=False):
        cmd = [sys.executable, str(HERE / "hdr_run.py"), "--output-dir", str(out), "--model-dir", str(model_dir),
               "--judges", json.dumps(judges)] + (["--resume"] if resume else [])
        return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1", "BALANCETRL_TEST_JUDGE_KEY": SECRET})

    with JudgeServer({"judge-a": killer, "judge-b": lambda r: Reply(score=0.9)}) as server:
        judges = [{"model": f"openai/judge-{x}", "api_base": server.api_base,
                   "api_key_env": "BALANCETRL_TEST_JUDGE_KEY"} for x in "ab"]
        reference = run(tmp_path / "reference", judges)
        assert reference.wait(timeout=600) == 0
        server.clear_log()
        job = run(tmp_path / "job", judges)
        state["pid"] = job.pid
        rc = job.wait(timeout=600)
        assert rc == -signal.SIGKILL
        # answered well before the kill (the request that triggered it was never answered to the client)
        paid_before = {(r.model, r.prompt_hash) for r in server.log
                       if r.status == 200 and r.t < state["killed_at"] - 0.4}
        assert paid_before and not (tmp_path / "job" / "hdr" / "round_001").exists()  # killed inside round 1
        server.clear_log()
        state["pid"] = None
        assert run(tmp_path / "job", judges, resume=True).wait(timeout=600) == 0
        paid_after = {(r.model, r.prompt_hash) for r in server.log}
    cached = paid_before & paid_after
    assert not cached, f"judge calls answered before the kill were paid again: {cached}"
    for k in (1, 2):
        for name in ("accepted.jsonl", "still_hard.jsonl"):
            a = tmp_path / "reference" / "hdr" / f"round_{k:03d}" / name
            b = tmp_path / "job" / "hdr" / f"round_{k:03d}" / name
            assert a.read_text() == b.read_text(), (k, name)
