"""tests/fixtures/synthetic.py: determinism, schema-valid clean records, planted hard/reject defects, proportions."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.fixtures import synthetic
from tests.fixtures.synthetic_catalog import TOOLS

N, SEED = 400, 11


@pytest.fixture(scope="module")
def data():
    return synthetic.generate_labeled(N, SEED)


def _type_ok(value, schema: dict) -> bool:
    t = schema["type"]
    if "enum" in schema and value not in schema["enum"]:
        return False
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "array":
        return isinstance(value, list) and all(_type_ok(v, schema["items"]) for v in value)
    raise AssertionError(f"unexpected schema type {t}")


def schema_errors(call: dict, tools: list[dict]) -> list[str]:
    """Required present, no unknown parameter, every value of the declared type (and enum)."""
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    if call["name"] not in by_name:
        return [f"unknown function {call['name']}"]
    params, args = by_name[call["name"]], call["arguments"]
    if not isinstance(args, dict):
        return ["arguments not a dict"]
    errors = [f"missing {p}" for p in params["required"] if p not in args]
    errors += [f"unknown {p}" for p in args if p not in params["properties"]]
    errors += [f"bad type {p}={v!r}" for p, v in args.items()
               if p in params["properties"] and not _type_ok(v, params["properties"][p])]
    return errors


def _calls(turn: dict) -> list[dict]:
    return [c["function"] for c in turn.get("tool_calls") or []]


def _canon(calls: list[dict]) -> list[str]:
    return sorted(json.dumps(c, sort_keys=True) for c in calls)


def test_schema_validator_catches_what_it_should():
    tools = [TOOLS[0].schema()]  # get_weather(city, unit enum)
    assert schema_errors({"name": "get_weather", "arguments": {"city": "Oslo"}}, tools) == []
    assert schema_errors({"name": "get_weather", "arguments": {}}, tools) == ["missing city"]
    assert schema_errors({"name": "get_weather", "arguments": {"city": "Oslo", "x": 1}}, tools) == ["unknown x"]
    assert schema_errors({"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}}, tools)
    assert schema_errors({"name": "get_weather", "arguments": {"city": 3}}, tools)
    assert schema_errors({"name": "nope", "arguments": {}}, tools)


def test_deterministic_per_seed():
    a = synthetic.generate_labeled(60, 5)
    assert a == synthetic.generate_labeled(60, 5)
    assert synthetic.generate_records(60, 5) == a[0]
    assert synthetic.generate_records(60, 6) != a[0]


def test_shipped_demo_files_regenerate_bit_identically(tmp_path):
    written = synthetic.write_demo(tmp_path)
    assert {p.name for p in written} == {"train.jsonl", "train.labels.jsonl", "eval.jsonl", "eval.labels.jsonl"}
    for path in written:
        assert path.read_bytes() == (synthetic.DEMO_DIR / path.name).read_bytes(), path.name


def test_catalogue_is_diverse_and_well_formed():
    assert 25 <= len(TOOLS) <= 40
    assert len({t.name for t in TOOLS}) == len(TOOLS)
    types = Counter(p.get("type") for t in TOOLS for p in t.params.values())
    assert set(types) == {"string", "integer", "number", "boolean", "array"}
    assert any("enum" in p for t in TOOLS for p in t.params.values())
    assert any(set(t.params) - set(t.required) for t in TOOLS)  # optional params exist
    for t in TOOLS:
        assert set(t.required) <= set(t.params) and set(t.slots) == set(t.params)
        assert set(t.optional) <= set(t.params) - set(t.required)


def test_kind_and_status_proportions(data):
    records, labels = data
    assert [r["id"] for r in records] == list(labels) and len(set(labels)) == N
    kinds = Counter(v["kind"] for v in labels.values())
    assert kinds == {k: round(N * f) for k, f in synthetic.KINDS.items()}
    status = Counter(v["status"] for v in labels.values())
    assert status == {"hard": round(N * 0.10), "rejected": round(N * 0.03), "base": N - 40 - 12}
    assert all(v["kind"] != "irrelevance" for v in labels.values() if v["status"] == "hard")
    assert {v["reason"] for v in labels.values() if v["status"] == "hard"} <= set(synthetic.HARD_REASONS)
    assert {v["reason"] for v in labels.values() if v["status"] == "rejected"} <= set(synthetic.REJECT_REASONS)
    assert synthetic.generate_labeled(100, 1, 0.0, 0.0)[1].keys()  # clean sets are legal
    assert {v["status"] for v in synthetic.generate_labeled(100, 1, 0.0, 0.0)[1].values()} == {"base"}


def test_clean_records_are_valid_and_match_their_reference(data):
    records, labels = data
    for r in records:
        if labels[r["id"]]["status"] != "base":
            continue
        kind = labels[r["id"]]["kind"]
        assert 1 <= len(r["tools"]) <= 4
        msgs = r["messages"]
        assert msgs[0]["role"] == "user" and msgs[0]["content"].strip()
        assistants = [m for m in msgs if m["role"] == "assistant"]
        assert len(r["reference"]) == len(assistants)
        for turn, ref in zip(assistants, r["reference"]):
            cot = turn["reasoning_content"]
            assert "<think>" not in cot and "</think>" not in cot
            assert 2 <= cot.count(". ") + 1 <= 7, cot  # 2-6 sentences (+ slack for decimals in values)
            calls = _calls(turn)
            assert _canon(calls) == _canon(ref)
            for call in calls:
                assert schema_errors(call, r["tools"]) == [], (r["id"], call)
                for value in call["arguments"].values():  # the CoT names every argument value
                    assert json.dumps(value) in cot
            if not calls:
                assert turn["content"].strip()
        if kind == "simple":
            assert len(r["tools"]) == 1 and len(r["reference"][0]) == 1
        elif kind == "multiple":
            assert len(r["tools"]) >= 2 and len(r["reference"][0]) == 1
        elif kind == "parallel":
            assert 2 <= len(r["reference"][0]) <= 3
        elif kind == "irrelevance":
            assert r["reference"] == [[]] and "tool_calls" not in assistants[0]
            offered = {t["function"]["name"] for t in r["tools"]}
            assert not any(name in msgs[0]["content"] for name in offered)
        elif kind == "multi_turn":
            assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]
            assert r["reference"][1] == [] and json.loads(msgs[2]["content"])


def test_hard_records_pass_structure_but_fail_the_reference(data):
    records, labels = data
    hard = [r for r in records if labels[r["id"]]["status"] == "hard"]
    assert hard
    for r in hard:
        turn = r["messages"][1]
        assert r["messages"][0]["content"].strip() and "<think>" not in turn["reasoning_content"]
        assert all(isinstance(c["arguments"], dict) for c in _calls(turn))
        assert _canon(_calls(turn)) != _canon(r["reference"][0])
        reason = labels[r["id"]]["reason"]
        errors = [e for c in _calls(turn) for e in schema_errors(c, r["tools"])]
        if reason == "missing_required":
            assert any(e.startswith("missing") for e in errors)
        elif reason == "wrong_function":
            assert {c["name"] for c in _calls(turn)} != {c["name"] for c in r["reference"][0]}


def test_rejected_records_carry_their_defect(data):
    records, labels = data
    rejected = [r for r in records if labels[r["id"]]["status"] == "rejected"]
    assert rejected
    for r in rejected:
        msgs, reason = r["messages"], labels[r["id"]]["reason"]
        if reason == "empty_query":
            assert not msgs[0]["content"].strip()
        elif reason == "no_assistant_turn":
            assert all(m["role"] != "assistant" for m in msgs)
        elif reason == "unclosed_think":
            cot = msgs[1]["reasoning_content"]
            assert "<think>" in cot and "</think>" not in cot
        else:
            bad = [c["function"]["arguments"] for c in msgs[1]["tool_calls"] if isinstance(c["function"]["arguments"], str)]
            assert bad
            with pytest.raises(json.JSONDecodeError):
                json.loads(bad[0])


def test_records_fit_the_token_budget(data):
    records, labels = data
    for r in records:
        if labels[r["id"]]["status"] == "base":
            assert synthetic.approx_tokens(r) <= 450


def test_cli_writes_records_and_labels(tmp_path):
    out = tmp_path / "x.jsonl"
    synthetic.main(["--n", "20", "--seed", "3", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    labels = [json.loads(line) for line in (tmp_path / "x.labels.jsonl").read_text().splitlines()]
    assert rows == synthetic.generate_records(20, 3) and [x["id"] for x in labels] == [r["id"] for r in rows]
