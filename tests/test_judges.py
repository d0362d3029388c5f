"""The HDR judge panel against a real loopback HTTP server: faults, votes, cache, accounting.

Nothing is mocked: LiteLLM makes real HTTP requests to tests/judge_server.py, which
injects slow replies, HTTP 500s, non-JSON text, out-of-range scores and malformed bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from pathlib import Path

import pytest

from balancetrl.hdr.judge_prompt import VerdictError, judge_messages, parse_verdict
from balancetrl.hdr.judges import (
    JudgeItem,
    JudgePanel,
    JudgeSpec,
    PanelTotals,
    parse_judges,
)
from judge_server import JudgeServer, Reply, closed_port_base, loopback_judges  # noqa: F401 (a fixture)

SECRET = "sk-test-DO-NOT-PERSIST-7f3a91c2"
KEY_ENV = "BALANCETRL_TEST_JUDGE_KEY"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture(scope="module", autouse=True)
def _warm_litellm():
    # LiteLLM's first request pays its lazy imports (~1-2 s on 2 loaded cores): keep that out
    # of the short per-call timeouts the fault test relies on.
    os.environ[KEY_ENV] = SECRET
    with JudgeServer() as srv:
        r = JudgePanel([{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV}]).judge([item(99, True)])
    del os.environ[KEY_ENV]
    assert r[0].answered == 1


def item(i: int, good: bool, reference=True, index: int = 0) -> JudgeItem:
    city = f"City{i}"
    return JudgeItem(
        sample_id=f"s{i}", tools=TOOLS,
        messages=[{"role": "user", "content": f"What is the weather in {city}?"}],
        reference=[[{"name": "get_weather", "arguments": {"city": city}}]] if reference else None,
        candidate={"reasoning": f"The user asks about {city}. {'GOOD' if good else 'BAD'}",
                   "calls": [{"name": "get_weather", "arguments": {"city": city if good else "Nowhere"}}],
                   "content": ""},
        candidate_index=index,
    )


def rule(r) -> Reply:
    """The honest judge: scores by the marker the test planted in the candidate."""
    return Reply(score=0.9 if "GOOD" in r.prompt else 0.1, reason="marker rule")


def fixed(score: float):
    return lambda r: Reply(score=score)


def files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, score", [
    ('{"score": 0.8, "reason": "fine"}', 0.8),
    ('```json\n{"score": 1, "reason": "x"}\n```', 1.0),
    ('Sure! Here is my verdict: {"score": "0.25", "reason": "meh"} hope it helps', 0.25),
    ('{"reason": "no"} then {"score": 0.0, "reason": "wrong city"}', 0.0),
])
def test_parse_verdict_accepts(text, score):
    assert parse_verdict(text)[0] == score


@pytest.mark.parametrize("text, why", [
    ("", "empty"), ("I think it is correct.", "no JSON"), ('{"score": 1.5, "reason": "x"}', "out of"),
    ('{"score": -0.1}', "out of"), ('{"score": NaN}', "out of"), ('{"score": true}', "not a number"),
    ('{"score": "high"}', "not a number"), ('{"verdict": 1}', "without 'score'"), ('{"score": 0.5', "no JSON"),
])
def test_parse_verdict_rejects(text, why):
    with pytest.raises(VerdictError, match=why):
        parse_verdict(text)


def test_parse_judges_forms():
    specs = parse_judges(["openai/gpt-4o", {"model": "anthropic/claude-3-5-sonnet-20240620", "api_key_env": "K",
                                            "params": {"temperature": 0.2}}, "a, b"])
    assert [s.model for s in specs] == ["openai/gpt-4o", "anthropic/claude-3-5-sonnet-20240620", "a", "b"]
    assert specs[1].api_key_env == "K" and specs[1].params == {"temperature": 0.2} and specs[0].params == {}
    with pytest.raises(ValueError, match="api_key_env"):
        parse_judges({"model": "m", "api_key": "sk-x"})
    with pytest.raises(ValueError, match="unknown judge keys"):
        parse_judges({"model": "m", "base": "x"})
    with pytest.raises(ValueError, match="duplicate"):
        parse_judges(["m", "m"])
    assert [s.name for s in parse_judges(["m", {"model": "m", "name": "m#2"}])] == ["m", "m#2"]
    with pytest.raises(ValueError, match="timeout"):
        JudgeSpec("m", params={"timeout": 3})


def test_documented_small_local_judge_uses_the_verdict_schema_and_loads_as_a_recipe_judge():
    # docs/hdr.md shows the verdict schema in YAML for a small local judge, and tests/test_vllm_judge_server.py runs
    # that entry against a real vLLM server; here, without one: the page's schema is the code's, and a recipe loads it.
    from test_vllm_judge_server import documented_local_judge

    from balancetrl.hdr.judge_prompt import VERDICT_RESPONSE_FORMAT
    from balancetrl.scripts.recipe import build_hdr_config

    entry = documented_local_judge()
    assert entry["params"]["response_format"] == VERDICT_RESPONSE_FORMAT
    schema = VERDICT_RESPONSE_FORMAT["json_schema"]["schema"]
    assert schema["required"] == ["score", "reason"]  # what parse_verdict reads
    assert (schema["properties"]["score"]["minimum"], schema["properties"]["score"]["maximum"]) == (0, 1)
    (spec,) = parse_judges(build_hdr_config({"judges": [entry]}).judges)
    assert spec.params == entry["params"] and "response_format" in spec.identity  # part of the cache key


def test_prompt_shows_everything_and_is_deterministic():
    a, b = item(1, True).prompt_messages(), item(1, True).prompt_messages()
    assert a == b
    text = a[1]["content"]
    for needle in ("get_weather", "What is the weather in City1?", '"city": "City1"', "GOOD", "## Reference calls"):
        assert needle in text
    assert "not known" in item(1, True, reference=False).prompt_messages()[1]["content"]
    assert judge_messages(tools=[], messages=[], reference=None, reasoning="", calls=[], content="hi")[0]["role"] == "system"


# --------------------------------------------------------------------------- the fault run
FAULTS = {  # item index -> what judge A's first attempt suffers (the retry then succeeds)
    0: Reply(delay=3.0),  # slower than the 1.5 s timeout
    1: Reply(status=500, error_body=json.dumps({"error": {"message": f"boom, your key {SECRET} failed"}})),
    2: Reply(content="Looks correct to me."),  # no JSON at all
    3: Reply(score=7),  # out of range
    4: Reply(raw_body='{"id": "x", "choices": [ {"message": '),  # malformed HTTP body
    5: Reply(status=503),
}
POISONED = 7  # judge B answers this one with HTTP 500 on every attempt: B abstains


def test_faults_survived_nothing_lost_accounting_and_cache(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, LiteLLM's included: none may print the key
    items = [item(i, good=i % 3 != 2) for i in range(10)]
    marker = {f"City{i}": i for i in range(10)}

    def index_of(r):
        return next(i for c, i in sorted(marker.items(), key=lambda kv: -len(kv[0])) if f"weather in {c}?" in r.prompt)

    def judge_a(r):
        i = index_of(r)
        if r.attempt == 0 and i in FAULTS:
            f = FAULTS[i]
            return Reply(**{**f.__dict__, "score": f.score if f.score != 1.0 else rule(r).score})
        return rule(r)

    def judge_b(r):
        return Reply(status=500) if index_of(r) == POISONED else rule(r)

    with JudgeServer({"gpt-4o": judge_a, "gpt-4o-mini": judge_b}) as srv:
        judges = [{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV},
                  {"model": "openai/gpt-4o-mini", "api_base": srv.api_base, "api_key_env": KEY_ENV},
                  {"model": "openai/gpt-4.1", "api_base": closed_port_base(), "api_key_env": KEY_ENV}]
        panel = JudgePanel(judges, threshold=0.5, concurrency=8, timeout=1.5, retries=2,
                           cache_dir=tmp_path / "cache", backoff=0.01, breaker_after=None)
        results = panel.judge(items)
        t = panel.last_totals

        # every (item, judge) pair has a verdict or a recorded abstention
        assert [(r.sample_id, [v.judge for v in r.verdicts]) for r in results] == \
            [(f"s{i}", ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1"]) for i in range(10)]
        for i, r in enumerate(results):
            a, b, c = r.verdicts
            assert not a.abstained and a.score == (0.9 if i % 3 != 2 else 0.1)
            assert a.attempts == (2 if i in FAULTS else 1)
            assert (a.error is not None) == (i in FAULTS)  # the overcome fault is still on record
            assert b.abstained == (i == POISONED) and b.attempts == (3 if i == POISONED else 1)
            assert c.abstained and c.score is None and c.passed is None and c.attempts == 3
            assert "Connection" in c.error or "connect" in c.error.lower(), c.error
            # the vote: 2 answered -> need 2; only 1 answered (B poisoned) -> need 1
            assert r.answered == (1 if i == POISONED else 2) and r.required == r.answered
            assert r.passed == (i % 3 != 2)
        err = {i: results[i].verdicts[0].error for i in FAULTS}
        assert "Timeout" in err[0] and "500" in err[1] and "VerdictError" in err[2]
        assert "out of [0, 1]" in err[3] and "503" in err[5]

        # accounting: the server's own log is the ground truth for calls
        assert t.per_judge["openai/gpt-4o"].calls == srv.count("gpt-4o") == 10 + len(FAULTS)
        assert t.per_judge["openai/gpt-4o-mini"].calls == srv.count("gpt-4o-mini") == 9 + 3
        assert t.per_judge["openai/gpt-4.1"].calls == 30 and t.per_judge["openai/gpt-4.1"].abstained == 10
        assert t.per_judge["openai/gpt-4o"].failed_calls == len(FAULTS)
        assert (t.total.verdicts, t.total.answered, t.total.abstained, t.total.cache_hits) == (30, 19, 11, 0)
        assert t.total.passed == 2 * 7 - 1  # 7 good items, each passed by A and B, B silent on item 7
        assert t.items == 10 and t.items_passed == 7 and t.total.calls == 16 + 12 + 30
        # tokens and cost: every answered attempt is charged (also the non-JSON / out-of-range ones)
        assert t.total.completion_tokens == 20 * (10 + 2 + 9)  # A: 10 + 2 answered-but-unusable (2, 3); B: 9
        assert t.total.cost_usd > 0 and t.total.cost_unknown_calls == 0
        assert math.isclose(t.total.cost_usd, sum(v.cost_usd for r in results for v in r.verdicts))
        assert t.per_judge["openai/gpt-4o-mini"].cost_usd < t.per_judge["openai/gpt-4o"].cost_usd

        # the key went over the wire, and nowhere else
        assert {r.authorization for r in srv.log} == {f"Bearer {SECRET}"}
        out = tmp_path / "round.json"
        out.write_text(json.dumps({"results": [r.to_dict() for r in results], "totals": t.to_dict()}))
        assert SECRET not in files_text(tmp_path)
        assert "***" in err[1]  # the server echoed the key in its error; the verdict has it scrubbed
        assert "abstained on 10/10" in caplog.text and SECRET not in caplog.text

        # a rerun pays nothing twice: only the abstention is asked again
        srv.clear_log()
        again = panel.judge(items)
        t2 = panel.last_totals
        assert srv.count("gpt-4o") == 0 and srv.count("gpt-4o-mini") == 3
        assert [v.score for r in again for v in r.verdicts[:1]] == [r.verdicts[0].score for r in results]
        assert all(r.verdicts[0].cached and r.verdicts[0].attempts == 0 for r in again)
        assert t2.total.cache_hits == 19 and t2.per_judge["openai/gpt-4o"].cost_usd == 0.0
        assert [r.passed for r in again] == [r.passed for r in results]
        assert panel.history == [t, t2]
        assert SECRET not in files_text(tmp_path)


def test_hanging_judge_is_cut_off_by_the_breaker():
    """Every call to judge H runs into the timeout: without the breaker the round would
    take items x attempts x timeout / concurrency = 30 x 3 x 0.4 / 4 = 9 s."""
    items = [item(i, good=i % 2 == 0) for i in range(30)]
    with JudgeServer({"gpt-4o": rule, "hang": lambda r: Reply(delay=3.0)}) as srv:
        judges = [{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV},
                  {"model": "openai/hang", "api_base": srv.api_base, "api_key_env": KEY_ENV}]
        panel = JudgePanel(judges, concurrency=4, timeout=0.4, retries=2, backoff=0.01, breaker_after=4)
        results = panel.judge(items)
        t = panel.last_totals
        assert t.wall_s < 4.0
        assert 4 <= srv.count("hang") == t.per_judge["openai/hang"].calls <= 4 + 3  # + those already in flight
        assert t.per_judge["openai/hang"].abstained == 30 and t.per_judge["openai/gpt-4o"].answered == 30
        assert sum("taken as down" in r.verdicts[1].error for r in results) >= 30 - 7
        assert [r.passed for r in results] == [i % 2 == 0 for i in range(30)]  # A alone decides: 1 of 1


def test_rate_limit_retry_after_is_honoured():
    def limited(r):
        return Reply(status=429, headers={"Retry-After": "1"}) if r.attempt == 0 else rule(r)

    with JudgeServer({"gpt-4o": limited}) as srv:
        panel = JudgePanel([{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV}],
                           retries=1, backoff=0.01, breaker_after=1)  # a 429 must not trip the breaker
        v = panel.judge([item(0, True)])[0].verdicts[0]
        assert v.score == 0.9 and v.attempts == 2 and "429" in v.error
        first, second = srv.log
        assert second.t - first.t >= 0.95  # 1 s asked for, not our 0.01 s backoff


def test_rerun_from_cache_with_new_panel_and_endpoint(tmp_path):
    """A resumed job: a fresh panel, the judge on another port, the same cache dir."""
    items = [item(i, good=True) for i in range(4)]
    with JudgeServer({"gpt-4o": rule}) as srv:
        JudgePanel([{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV}],
                   cache_dir=tmp_path).judge(items)
        assert srv.count() == 4
    with JudgeServer({"gpt-4o": rule}) as srv2:
        panel = JudgePanel([{"model": "openai/gpt-4o", "api_base": srv2.api_base, "api_key_env": KEY_ENV}],
                           cache_dir=tmp_path)
        res = panel.judge(items)
        assert srv2.count() == 0 and all(r.passed for r in res) and panel.last_totals.total.cache_hits == 4
        # a torn/corrupt entry is not trusted: that one judgment is asked again
        entries = sorted(tmp_path.rglob("*.json"))
        assert len(entries) == 4
        entries[0].write_text('{"score": 0.9, "rea')
        panel.judge(items)
        assert srv2.count() == 1 and panel.last_totals.total.cache_hits == 3
        # other params -> another judge -> no stale hits
        JudgePanel([{"model": "openai/gpt-4o", "api_base": srv2.api_base, "api_key_env": KEY_ENV,
                     "params": {"temperature": 0.0}}], cache_dir=tmp_path).judge(items)
        assert srv2.count() == 1 + 4


def test_threshold_min_votes_and_duplicates(tmp_path):
    scores = {"j1": 0.6, "j2": 0.6, "j3": 0.59}
    with JudgeServer({m: fixed(s) for m, s in scores.items()}) as srv:
        judges = [{"model": f"openai/{m}", "api_base": srv.api_base, "api_key_env": KEY_ENV} for m in scores]
        items = [item(0, True, index=k) for k in range(3)]  # three identical generations of one sample
        r = JudgePanel(judges, threshold=0.6).judge(items)
        assert srv.count() == 3  # one call per judge, the duplicates share it
        assert [v.passed for v in r[0].verdicts] == [True, True, False]  # score == tau passes
        assert r[0].votes_for == 2 and r[0].required == 2 and r[0].passed
        assert [v.cached for res in r for v in res.verdicts] == [False] * 3 + [True] * 6
        strict = JudgePanel(judges, threshold=0.6, min_votes=3, cache_dir=tmp_path).judge(items[:1])
        assert strict[0].required == 3 and not strict[0].passed
        with pytest.raises(ValueError, match="min_votes"):
            JudgePanel(judges, min_votes=4)


def test_concurrency_limit_is_respected(loopback_judges):  # noqa: F811
    srv = loopback_judges({"gpt-4o": rule}, latency=0.1)  # the fixture form of the server
    panel = JudgePanel([{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV}], concurrency=4)
    panel.judge([item(i, True) for i in range(16)])
    assert srv.count() == 16 and srv.max_inflight == 4
    assert 0.35 < panel.last_totals.wall_s < 1.5  # 16 calls x 0.1 s / 4 slots = 0.4 s ideal


def test_missing_key_and_hopeless_errors_abstain_without_retry(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with JudgeServer({"gpt-4o": rule, "bad": lambda r: Reply(status=401)}) as srv:
        judges = [{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV},
                  {"model": "openai/bad", "api_base": srv.api_base, "api_key_env": "OTHER_KEY_ENV_SET"}]
        monkeypatch.setenv("OTHER_KEY_ENV_SET", "sk-other-123456")
        r = JudgePanel(judges, retries=3, backoff=0.01).judge([item(0, True)])[0]
        assert r.verdicts[0].abstained and KEY_ENV in r.verdicts[0].error and r.verdicts[0].attempts == 0
        assert r.verdicts[1].abstained and r.verdicts[1].attempts == 1 and "401" in r.verdicts[1].error
        assert srv.count("gpt-4o") == 0 and srv.count("bad") == 1
        assert r.answered == 0 and not r.passed


def test_sync_judge_inside_running_loop_and_async_api():
    with JudgeServer({"gpt-4o": rule}) as srv:
        panel = JudgePanel([{"model": "openai/gpt-4o", "api_base": srv.api_base, "api_key_env": KEY_ENV}])

        async def inside():
            sync = panel.judge([item(1, True)])  # a loop is running: must not raise
            asy = await panel.ajudge([item(2, False)])
            return sync, asy

        sync, asy = asyncio.run(inside())
        assert panel.judge([]) == [] and panel.last_totals.items == 0
        assert sync[0].passed and not asy[0].passed and srv.count() == 2
        # two rounds on two fresh event loops (as the HDR callback does once per epoch)
        assert panel.judge([item(3, True)])[0].passed and srv.count() == 3
        assert isinstance(PanelTotals.from_results(sync + asy).to_dict()["total"]["calls"], int)
        json.dumps([r.to_dict() for r in sync + asy])
