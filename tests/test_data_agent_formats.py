"""ms-swift agent rows and LLaMA-Factory v1 rows: hand-made files (tests/data/agent/) with single, parallel and
multi-turn calls with tool results, with and without reasoning, and broken rows; every good row equals the same
conversation written in the `messages` format (tests/data/agent/as_messages.jsonl)."""

import json
from pathlib import Path

import pytest

from balancetrl.data.formats import detect_format, from_any_messages, load_records, messages_kind
from balancetrl.data.split import run_check

DATA = Path(__file__).parent / "data" / "agent"
GOOD = ("single", "parallel", "multi", "hard")


def _records(path, **kw) -> tuple[dict, dict]:
    records, errors = {}, {}
    for row in load_records(path, **kw):
        if row.error:
            errors[row.data.get("id", row.line) if isinstance(row.data, dict) else row.line] = row.error
        else:
            records[row.data["id"]] = row.data
    return records, errors


def _outcomes(tmp_path, path, **kw) -> tuple[dict, dict]:
    report = run_check(path, tmp_path, require_cot=False, progress=False, **kw)
    outcome = {}
    for kind in ("base", "hard", "rejected"):
        for line in (tmp_path / f"{kind}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            outcome[rec.get("id", f"line-{rec.get('line')}")] = (kind, rec.get("hard_reason") or rec.get("reject_reason"))
    return report, outcome


AS_MESSAGES, _ = _records(DATA / "as_messages.jsonl", format="messages")


@pytest.mark.parametrize("fmt", ["auto", "ms_swift"])
def test_ms_swift_rows_equal_the_messages_rows(fmt):
    first = json.loads((DATA / "ms_swift.jsonl").read_text().splitlines()[0])
    assert detect_format(first) == "ms_swift"
    records, errors = _records(DATA / "ms_swift.jsonl", format=fmt)
    assert sorted(records) == [f"sw-{k}" for k in sorted(GOOD)]
    for key, record in records.items():
        assert record == AS_MESSAGES[key], key
    # the CoT written as an assistant text before the calls stays in that turn; JSON-string arguments are decoded
    assert records["sw-single"]["messages"][1]["content"] == "<think>\nOne city, one call.\n</think>\n"
    assert records["sw-parallel"]["messages"][1]["tool_calls"][1]["function"]["arguments"] == {"city": "Oslo",
                                                                                              "unit": "f"}
    assert errors == {"sw-bad-role": "invalid_role", "sw-bad-call": "invalid_function_call",
                      "sw-bad-tools": "invalid_tools_json", "sw-order": "invalid_turn_order", 9: "invalid_json",
                      "sw-bad-args": "call_parse_error"}


def test_ms_swift_check_accounts_for_every_row(tmp_path):
    report, outcome = _outcomes(tmp_path, DATA / "ms_swift.jsonl")
    assert report["total"] == 10 and report["outcomes"] == {"base": 3, "hard": 1, "rejected": 6}
    assert outcome == {
        "sw-single": ("base", None), "sw-parallel": ("base", None), "sw-multi": ("base", None),
        "sw-hard": ("hard", "unknown_parameter"), "sw-bad-role": ("rejected", "invalid_role"),
        "sw-bad-call": ("rejected", "invalid_function_call"), "sw-bad-tools": ("rejected", "invalid_tools_json"),
        "sw-order": ("rejected", "invalid_turn_order"), "line-9": ("rejected", "invalid_json"),
        "sw-bad-args": ("rejected", "call_parse_error"),
    }
    base = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "base.jsonl").read_text().splitlines()}
    # checked: the CoT split off into reasoning_content, as for every other format
    assert base["sw-single"]["messages"][1] == {"role": "assistant", "reasoning_content": "One city, one call.",
                                                "tool_calls": AS_MESSAGES["sw-single"]["messages"][1]["tool_calls"]}


@pytest.mark.parametrize("fmt", ["auto", "llamafactory_v1"])
def test_llamafactory_v1_rows_equal_the_messages_rows(fmt):
    first = json.loads((DATA / "llamafactory_v1.jsonl").read_text().splitlines()[0])
    assert detect_format(first) == "llamafactory_v1"
    records, errors = _records(DATA / "llamafactory_v1.jsonl", format=fmt)
    assert sorted(records) == [f"v1-{k}" for k in sorted(GOOD)]
    for key, record in records.items():
        assert record == AS_MESSAGES[key], key
    assert errors == {"v1-bad-part": "invalid_message", "v1-bad-role": "invalid_role",
                      "v1-bad-call": "invalid_function_call", "v1-bad-tools": "invalid_tools_json",
                      "v1-order": "invalid_turn_order", 10: "not_an_object"}


def test_llamafactory_v1_check_accounts_for_every_row(tmp_path):
    report, outcome = _outcomes(tmp_path, DATA / "llamafactory_v1.jsonl")
    assert report["total"] == 10 and report["outcomes"] == {"base": 3, "hard": 1, "rejected": 6}
    assert outcome["v1-hard"] == ("hard", "unknown_parameter")
    assert outcome["v1-bad-part"] == ("rejected", "invalid_message")
    assert outcome["line-10"] == ("rejected", "not_an_object")
    assert sorted(k for k, v in outcome.items() if v[0] == "base") == ["v1-multi", "v1-parallel", "v1-single"]


def test_v1_details_follow_llamafactory():
    tools = json.dumps([{"name": "f", "parameters": {"type": "object", "properties": {}}}])
    row = {"tools": tools, "messages": [
        {"role": "user", "content": [{"type": "text", "value": "a"}, {"type": "text", "value": "b"}]},
        {"role": "assistant", "content": [{"type": "reasoning", "value": "x"}, {"type": "tool_call",
                                                                                  "value": '{"name": "f"}'},
                                          {"type": "reasoning", "value": "y"}]},
        # LLaMA-Factory's demo packs parallel results into one tool message: kept as the source has it
        {"role": "tool", "content": [{"type": "text", "value": '[{"name": "f", "content": "1"}]'}]},
    ]}
    assert from_any_messages(row, 7) == {"id": "row-7", "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        "messages": [{"role": "user", "content": "ab"},
                     {"role": "assistant", "reasoning_content": "xy",
                      "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]},
                     {"role": "tool", "name": "f", "content": '[{"name": "f", "content": "1"}]'}]}


def test_auto_reads_each_row_as_the_family_member_it_is():
    # a file whose first row is plain chat (it looks the same in all three) goes on with ms-swift and v1 rows
    plain = {"id": "p", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    lines = (DATA / "ms_swift.jsonl").read_text().splitlines()[:1] + \
        (DATA / "llamafactory_v1.jsonl").read_text().splitlines()[:1]
    rows = [plain] + [json.loads(x) for x in lines]
    assert [messages_kind(r["messages"]) for r in rows] == ["messages", "ms_swift", "llamafactory_v1"]
    out = list(load_records(rows))
    assert [r.error for r in out] == [None, None, None]
    assert [r.data for r in out[1:]] == [AS_MESSAGES["sw-single"], AS_MESSAGES["v1-single"]]
    # named explicitly, a format is strict: ms-swift's call turns are not LLaMA-Factory v1 roles
    bad = list(load_records(rows[1:2], format="llamafactory_v1"))
    assert (bad[0].error, bad[0].message) == ("invalid_role", "line 1: turn 3: unknown role 'tool_call' (known: system, "
                                                              "user, assistant, tool)")


def test_cot_and_call_tokens_split_as_for_the_messages_rows(word_tokenizer):
    from balancetrl.data.token_stats import token_stats, turn_texts

    for name, prefix in (("ms_swift", "sw-"), ("llamafactory_v1", "v1-")):
        records, _ = _records(DATA / f"{name}.jsonl")
        twins = [AS_MESSAGES[k] for k in records]
        assert [list(turn_texts(r)) for r in records.values()] == [list(turn_texts(r)) for r in twins]
        ours, theirs = token_stats(records.values(), word_tokenizer), token_stats(twins, word_tokenizer)
        assert (ours.cot, ours.call, ours.turns) == (theirs.cot, theirs.call, theirs.turns)
        assert ours.turns == 8 and ours.cot and all(k.startswith(prefix) for k in records)
    # the CoT an ms-swift row writes as a <think> text before its calls counts as CoT
    records, _ = _records(DATA / "ms_swift.jsonl")
    assert list(turn_texts(records["sw-single"]))[0][0] == "One city, one call."
