"""LLaMA-Factory sharegpt / openai and Hermes ChatML loaders: hand-made files (tests/data/conversations/) with
single-turn, parallel, multi-turn rows with tool results, reasoning present and absent, and broken rows."""

import json
from pathlib import Path

import pytest

from balancetrl.data.formats import (
    ConversationTags,
    detect_format,
    load_dataset_info,
    load_records,
)
from balancetrl.data.io import InputError
from balancetrl.data.split import run_check

DATA = Path(__file__).parent / "data" / "conversations"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}},
                   "required": ["city"]}}}
BOOK = {"type": "function", "function": {
    "name": "book_table", "description": "Book a table",
    "parameters": {"type": "object", "properties": {"restaurant": {"type": "string"}, "guests": {"type": "integer"}},
                   "required": ["restaurant", "guests"]}}}
TOOLS = [WEATHER, BOOK]


def tc(name, **arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def user(text):
    return {"role": "user", "content": text}


def _load(name, **kw):
    rows = list(load_records(DATA / name, **kw))
    return {(r.data.get("id") if isinstance(r.data, dict) else f"line-{r.line}"): r for r in rows}, rows


def _check(tmp_path, name, **kw):
    report = run_check(DATA / name, tmp_path, require_cot=False, progress=False, **kw)
    outcome = {}
    for kind in ("base", "hard", "rejected"):
        for line in (tmp_path / f"{kind}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            reason = rec.get("hard_reason") or rec.get("reject_reason")
            outcome[rec.get("id", f"line-{rec.get('line')}")] = (kind, reason)
    return report, outcome


# ------------------------------------------------------------------------------------------ sharegpt


def test_sharegpt_rows_become_the_expected_canonical_records():
    by_id, rows = _load("sharegpt.jsonl")
    assert detect_format(json.loads((DATA / "sharegpt.jsonl").read_text().splitlines()[0])) == "sharegpt"
    assert len(rows) == 10
    assert by_id["sg-single"].data == {"id": "sg-single", "tools": TOOLS, "messages": [
        user("Weather in Paris?"),
        {"role": "assistant", "reasoning_content": "One city, one call.", "tool_calls": [tc("get_weather", city="Paris")]},
    ]}
    # a JSON list of calls; `parameters` is read as `arguments`
    assert by_id["sg-parallel"].data["messages"][1] == {"role": "assistant", "tool_calls": [
        tc("get_weather", city="Paris", unit="f"), tc("get_weather", city="Oslo", unit="f")]}
    assert by_id["sg-multi"].data == {"id": "sg-multi", "tools": TOOLS, "messages": [
        {"role": "system", "content": "Be brief."},
        user("Weather in Zürich?"),
        {"role": "assistant", "tool_calls": [tc("get_weather", city="Zürich")]},
        {"role": "tool", "name": "get_weather", "content": '{"temp": 18}'},
        {"role": "assistant", "content": "<think>18 degrees.</think>It is 18 °C."},
        user("Book Nobu for 2, and Chez Léa for 4."),
        {"role": "assistant", "content": "<think>Two bookings.</think>\n<tool_call>\n"
                                         '{"name": "book_table", "arguments": {"restaurant": "Nobu", "guests": 2}}\n'
                                         '{"name": "book_table", "arguments": {"restaurant": "Chez Léa", "guests": 4}}'
                                         "\n</tool_call>"},
        {"role": "tool", "content": "ok 1"},  # one tool message per <tool_response> block
        {"role": "tool", "content": "ok 2"},
        {"role": "assistant", "content": "Both booked."},
    ]}
    errors = {r.data.get("id", r.line) if isinstance(r.data, dict) else r.line: r.error for r in rows if r.error}
    assert errors == {"sg-bad-role": "invalid_role", "sg-bad-call": "invalid_function_call",
                      "sg-bad-tools": "invalid_tools_json", "sg-order": "invalid_turn_order", 10: "invalid_json"}


def test_sharegpt_check_accounts_for_every_row(tmp_path):
    report, outcome = _check(tmp_path, "sharegpt.jsonl")
    assert report["outcomes"] == {"base": 3, "hard": 1, "rejected": 6}
    assert outcome == {
        "sg-single": ("base", None), "sg-parallel": ("base", None), "sg-multi": ("base", None),
        "sg-hard": ("hard", "unknown_parameter"),
        "sg-bad-role": ("rejected", "invalid_role"), "sg-bad-call": ("rejected", "invalid_function_call"),
        "sg-bad-tools": ("rejected", "invalid_tools_json"), "sg-unclosed": ("rejected", "unclosed_tool_call"),
        "sg-order": ("rejected", "invalid_turn_order"), "line-10": ("rejected", "invalid_json"),
    }
    base = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "base.jsonl").read_text().splitlines()}
    # the checked record: CoT in reasoning_content, the JSON-lines block as two structured calls
    assert base["sg-multi"]["messages"][4] == {"role": "assistant", "reasoning_content": "18 degrees.",
                                               "content": "It is 18 °C."}
    assert base["sg-multi"]["messages"][6] == {"role": "assistant", "reasoning_content": "Two bookings.",
                                               "tool_calls": [tc("book_table", restaurant="Nobu", guests=2),
                                                              tc("book_table", restaurant="Chez Léa", guests=4)]}


def test_sharegpt_with_a_dataset_info_entry(tmp_path):
    """Columns and role tags renamed the way LLaMA-Factory's dataset_info.json renames them."""
    info = {"my_calls": {"file_name": "x.json", "formatting": "sharegpt",
                         "columns": {"messages": "dialog", "tools": "functions", "system": "sys"},
                         "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "client",
                                  "assistant_tag": "agent", "function_tag": "call", "observation_tag": "result"}},
            "other": {"file_name": "y.json"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    fmt, tags = load_dataset_info(tmp_path / "dataset_info.json", "my_calls")
    assert fmt == "sharegpt" and tags.role_map() == {"client": "user", "agent": "assistant", "result": "tool",
                                                     "call": "function_call", "system": "system"}
    rows = [{"id": "x", "sys": "S", "functions": json.dumps([WEATHER["function"]]), "dialog": [
        {"speaker": "client", "text": "Paris?"},
        {"speaker": "call", "text": '{"name": "get_weather", "arguments": {"city": "Paris"}}'},
        {"speaker": "result", "text": "18"},
        {"speaker": "agent", "text": "18 °C"}]},
        # with explicit tags the aliases are off: `human` is not a role of this dataset
        {"id": "y", "dialog": [{"speaker": "human", "text": "Paris?"}]}]
    out = list(load_records(rows, format=fmt, tags=tags))
    assert out[0].data == {"id": "x", "tools": [WEATHER], "messages": [
        {"role": "system", "content": "S"}, user("Paris?"),
        {"role": "assistant", "tool_calls": [tc("get_weather", city="Paris")]},
        {"role": "tool", "name": "get_weather", "content": "18"}, {"role": "assistant", "content": "18 °C"}]}
    assert out[1].error == "invalid_role"
    with pytest.raises(InputError, match="several entries"):
        load_dataset_info(tmp_path / "dataset_info.json")
    with pytest.raises(InputError, match="unknown column/tag 'role'"):
        ConversationTags.from_dataset_info({"formatting": "sharegpt", "tags": {"role": "from"}})
    with pytest.raises(InputError, match="not tool-calling data"):
        ConversationTags.from_dataset_info({"file_name": "alpaca.json"})
    with pytest.raises(InputError, match="apply to the sharegpt and openai formats"):
        list(load_records(rows, format="auto", tags=tags))


# ------------------------------------------------------------------------------------------ openai


def test_openai_rows_become_the_expected_canonical_records():
    by_id, rows = _load("openai.jsonl", format="openai")
    assert len(rows) == 9
    assert by_id["oa-single"].data == {"id": "oa-single", "tools": TOOLS, "messages": [
        user("Weather in Paris?"),
        {"role": "assistant", "content": None, "reasoning_content": "One city.",
         "tool_calls": [tc("get_weather", city="Paris")]}]}
    # reasoning given as a content part
    assert by_id["oa-parallel"].data["messages"][1] == {
        "role": "assistant", "content": "", "reasoning_content": "Two cities.",
        "tool_calls": [tc("get_weather", city="Paris"), tc("get_weather", city="Oslo")]}
    assert by_id["oa-multi"].data == {"id": "oa-multi", "tools": TOOLS, "messages": [
        {"role": "system", "content": "Be brief."}, user("Paris and Oslo?"),
        {"role": "assistant", "content": "", "tool_calls": [tc("get_weather", city="Paris"),
                                                            tc("get_weather", city="Oslo")]},
        {"role": "tool", "tool_call_id": "a", "content": '{"temp": 18}'},
        {"role": "tool", "tool_call_id": "b", "content": '{"temp": 9}'},
        {"role": "assistant", "content": "Paris is warmer.", "reasoning_content": "Compare."}]}
    assert by_id["oa-plain"].data["messages"][1] == {"role": "assistant", "content": "Hello! Ask me about the weather."}
    errors = {r.data.get("id"): r.error for r in rows if r.error}
    assert errors == {"oa-bad-role": "invalid_role", "oa-not-list": "messages_not_list", "oa-order": "invalid_turn_order"}
    # auto-detection reads these rows as `messages`: the same records (LLaMA-Factory's turn-order rule aside)
    auto = {r.data["id"]: r.data for r in load_records(DATA / "openai.jsonl") if not r.error}
    for key in ("oa-single", "oa-parallel", "oa-multi", "oa-plain", "oa-hard"):
        assert auto[key] == by_id[key].data


def test_openai_check_accounts_for_every_row(tmp_path):
    report, outcome = _check(tmp_path, "openai.jsonl", format="openai")
    assert report["outcomes"] == {"base": 4, "hard": 1, "rejected": 4}
    assert outcome == {
        "oa-single": ("base", None), "oa-parallel": ("base", None), "oa-multi": ("base", None),
        "oa-plain": ("base", None), "oa-hard": ("hard", "unknown_function"),
        "oa-bad-role": ("rejected", "invalid_role"), "oa-not-list": ("rejected", "messages_not_list"),
        "oa-order": ("rejected", "invalid_turn_order"), "oa-bad-args": ("rejected", "call_parse_error"),
    }


# ------------------------------------------------------------------------------------------ hermes


def test_hermes_rows_become_the_expected_canonical_records():
    by_id, rows = _load("hermes.jsonl")
    assert len(rows) == 8
    # tools from the system prompt's <tools> block (JSON objects one per line); the tool prompt itself is dropped
    assert by_id["h-single"].data == {"id": "h-single", "tools": TOOLS, "messages": [
        user("Weather in Paris?"),
        {"role": "assistant", "content": "<think>One city.</think>\n<tool_call>\n"
                                         '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'}]}
    # a Python-literal <tools> list (as Hermes writes it), parsed with ast
    assert by_id["h-parallel"].data["tools"] == [WEATHER]
    assert by_id["h-multi"].data["messages"] == [
        user("Weather in Oslo, then book Nobu for 2."),
        {"role": "assistant", "content": "<think>Weather first.</think>\n<tool_call>\n"
                                         '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'},
        {"role": "tool", "content": '{"temp": 9}'},
        {"role": "assistant", "content": "<think>Now book.</think>\n<tool_call>\n"
                                         '{"name": "book_table", "arguments": {"restaurant": "Nobu", "guests": 2}}\n'
                                         "</tool_call>"},
        {"role": "tool", "content": "booked"},  # Qwen's form: results in a user turn
        {"role": "assistant", "content": "<think>Done.</think>It is 9 °C in Oslo and Nobu is booked."}]
    errors = {r.data.get("id"): r.error for r in rows if r.error}
    assert errors == {"h-unclosed": "invalid_chatml", "h-bad-tools": "invalid_tools_json", "h-bad-role": "invalid_role"}


def test_hermes_check_accounts_for_every_row(tmp_path):
    report, outcome = _check(tmp_path, "hermes.jsonl")
    assert report["outcomes"] == {"base": 3, "hard": 1, "rejected": 4}
    assert outcome == {
        "h-single": ("base", None), "h-parallel": ("base", None), "h-multi": ("base", None),
        "h-hard": ("hard", "missing_required"),
        "h-unclosed": ("rejected", "invalid_chatml"), "h-bad-tools": ("rejected", "invalid_tools_json"),
        "h-bad-role": ("rejected", "invalid_role"), "h-bad-call": ("rejected", "call_parse_error"),
    }
    base = {json.loads(x)["id"]: json.loads(x) for x in (tmp_path / "base.jsonl").read_text().splitlines()}
    assert base["h-parallel"]["messages"][1] == {"role": "assistant", "tool_calls": [
        tc("get_weather", city="Paris"), tc("get_weather", city="Oslo")]}
    assert base["h-multi"]["messages"][5] == {"role": "assistant", "reasoning_content": "Done.",
                                              "content": "It is 9 °C in Oslo and Nobu is booked."}


def test_check_cli_reads_a_dataset_info_file(tmp_path, capsys):
    from argparse import ArgumentParser

    from balancetrl.commands.check import CheckCommand

    (tmp_path / "info.json").write_text(json.dumps({"formatting": "openai"}))
    p = ArgumentParser()
    c = CheckCommand()
    c.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["check", str(DATA / "openai.jsonl"), "--output-dir", str(tmp_path / "out"),
                         "--dataset-info", str(tmp_path / "info.json"), "--allow-missing-cot", "--no-progress"])
    assert c.run(args) == 0
    assert "9 records: 4 base, 1 hard, 4 rejected" in capsys.readouterr().out


def test_custom_cot_markers_apply_inside_function_call_turns(tmp_path):
    # a sharegpt function_call turn may carry its reasoning before the calls; it is split with the run's markers
    row = {"id": "r1", "tools": json.dumps([WEATHER]), "conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call",
         "value": '<reasoning>One city, default unit.</reasoning>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}'},
        {"from": "observation", "value": '{"temp": 9}'},
        {"from": "gpt", "value": "<reasoning>Answer it.</reasoning>It is 9 °C in Oslo."}]}
    path = tmp_path / "custom.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (default,) = load_records(path, format="sharegpt")  # <think> markers: the turn is text before JSON → named error
    assert default.error == "invalid_function_call"
    (custom,) = load_records(path, format="sharegpt", cot=("<reasoning>", "</reasoning>"))
    assert custom.error is None
    assert custom.data["messages"][1] == {"role": "assistant", "reasoning_content": "One city, default unit.",
                                          "tool_calls": [tc("get_weather", city="Oslo")]}
    # the check (and so training) reads the same markers end to end: the row is base, both CoTs kept
    report = run_check(path, tmp_path / "out", require_cot=True, progress=False, cot_start="<reasoning>",
                       cot_end="</reasoning>", format="sharegpt")
    (base,) = [json.loads(line) for line in (tmp_path / "out" / "base.jsonl").read_text().splitlines()]
    assert report["outcomes"] == {"base": 1, "hard": 0, "rejected": 0}
    assert [m.get("reasoning_content") for m in base["messages"] if m["role"] == "assistant"] == [
        "One city, default unit.", "Answer it."]
