"""The declarative mapping (balancetrl/data/mapping.py) on hand-made API-Bank-style and SealTool/ToolAlpaca-style
files (tests/data/agent/): every row accounted for, good rows equal to the same conversation in the `messages`
format, a typo in the mapping named."""

import json
from pathlib import Path

import pytest

from balancetrl.data.formats import load_records
from balancetrl.data.io import InputError
from balancetrl.data.mapping import RowMapping, load_mapping, parse_mapping
from balancetrl.data.split import run_check
from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments

DATA = Path(__file__).parent / "data" / "agent"
AS_MESSAGES = {r.data["id"]: r.data for r in load_records(DATA / "as_messages.jsonl", format="messages")}
CASES = {
    "apibank": ("apibank_mapping.yaml", {
        "ab-single": ("base", None), "ab-parallel": ("base", None), "ab-multi": ("base", None),
        "ab-hard": ("hard", "unknown_parameter"), "ab-bad-role": ("rejected", "invalid_role"),
        "ab-bad-answer": ("rejected", "invalid_answers"), "ab-no-query": ("rejected", "missing_field"),
        "ab-bad-json": ("rejected", "invalid_answers_json"), "ab-bad-tools": ("rejected", "tools_not_list")}),
    "sealtool": ("sealtool_mapping.json", {
        "st-single": ("base", None), "st-parallel": ("base", None), "st-multi": ("base", None),
        "st-hard": ("hard", "wrong_value"), "st-bad-answer": ("rejected", "invalid_answers"),
        "st-answers-not-list": ("rejected", "answers_not_list"), "st-bad-args": ("rejected", "invalid_answers"),
        "st-bad-response": ("rejected", "invalid_response"), "st-no-query": ("rejected", "missing_field")}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_mapped_rows_equal_the_messages_rows_and_every_row_lands(tmp_path, name):
    mapping_file, expected = CASES[name]
    mapping = load_mapping(DATA / mapping_file)
    rows = list(load_records(DATA / f"{name}.jsonl", mapping=mapping))
    good = {r.data["id"]: r.data for r in rows if not r.error}
    assert sorted(good) == sorted(k for k, v in expected.items() if v[0] != "rejected")
    for key, record in good.items():
        assert record == AS_MESSAGES[key], key
    report = run_check(DATA / f"{name}.jsonl", tmp_path, require_cot=False, progress=False, mapping=mapping)
    assert report["total"] == len(expected) == 9 and report["options"]["format"] == "mapping"
    outcome = {}
    for kind in ("base", "hard", "rejected"):
        for line in (tmp_path / f"{kind}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            outcome[rec.get("id", rec.get("qid"))] = (kind, rec.get("hard_reason") or rec.get("reject_reason"))
    assert outcome == expected


def test_the_mapping_messages_name_the_keys():
    mapping = load_mapping(DATA / "sealtool_mapping.json")
    rows = {r.line: r for r in load_records(DATA / "sealtool.jsonl", mapping=mapping)}
    assert rows[5].message == "line 5: answers: a call without 'tool' (calls.name of the mapping); got name, parameters"
    assert rows[9].message == "line 9: missing field: query (columns.query of the mapping)"
    # a history turn holding a call is read with the same keys; the CoT of the response stays for the check
    assert rows[3].data["messages"][1]["tool_calls"][0]["function"] == {"name": "get_weather",
                                                                        "arguments": {"city": "Zürich"}}


def test_without_a_mapping_the_rejections_point_to_it():
    api_bank = list(load_records(DATA / "apibank.jsonl", format="xlam"))[0]
    assert api_bank.error == "invalid_query"
    assert "as API-Bank's); rows of this shape are read with a mapping file (--mapping" in api_bank.message
    seal = list(load_records(DATA / "sealtool.jsonl", format="xlam"))[0]
    assert seal.error == "invalid_answers" and seal.message.endswith("read with a mapping file (--mapping / "
                                                                     "dataset_mapping, docs/data.md)")


@pytest.mark.parametrize(("spec", "error"), [
    ({"colums": {"query": "q"}}, r"mapping: unknown key 'colums' \(did you mean 'columns'\?\); known: columns, tags, "
                                 r"calls, roles"),
    ({"columns": {"answer": "a"}}, r"mapping: `columns`: unknown key 'answer' \(did you mean 'answers'\?\)"),
    ({"calls": {"nmae": "tool"}}, r"mapping: `calls`: unknown key 'nmae' \(did you mean 'name'\?\); known: name, "
                                  r"arguments"),
    ({"tags": {"role": "from"}}, r"`tags`: unknown key 'role' \(did you mean 'role_tag'\?\)"),
    ({"roles": {"agent": "asistant"}}, r"roles.agent: 'asistant' is not one of system, user, assistant, tool, "
                                       r"tool_call"),
    ({"columns": {"query": None}}, r"columns.query must be a column/key name, got None"),
    ([1], r"a mapping must be an object"),
])
def test_a_mapping_typo_is_an_error_naming_the_key(spec, error):
    with pytest.raises(InputError, match=error):
        parse_mapping(spec)


def test_mapping_file_typo_fails_with_the_recipe(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("columns:\n  query: query\ncall:\n  name: tool\n")
    with pytest.raises(InputError, match=r"m.yaml: unknown key 'call' \(did you mean 'calls'\?\)"):
        BalanceSFTScriptArguments(dataset_path="x.jsonl", dataset_mapping=str(bad))
    assert parse_mapping({}) == RowMapping()
    with pytest.raises(InputError, match="a mapping describes the rows itself"):
        list(load_records(DATA / "apibank.jsonl", format="xlam", mapping=RowMapping()))


def test_the_docs_examples_are_these_mappings():
    import re

    import yaml

    doc = (Path(__file__).parent.parent / "docs" / "data.md").read_text(encoding="utf-8")
    section = doc.split("### Mapping other rows", 1)[1].split("\n### ", 1)[0]
    api_bank, seal_tool, dialog = [parse_mapping(yaml.safe_load(b))
                                   for b in re.findall(r"```(?:yaml|json)\n(.*?)```", section, re.DOTALL)]
    assert api_bank == load_mapping(DATA / "apibank_mapping.yaml")
    assert seal_tool == load_mapping(DATA / "sealtool_mapping.json")
    row = {"functions": json.dumps([{"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}}}]), "dialog": [
        {"from": "human", "value": "Weather in Zürich?"},
        {"from": "agent_call", "value": json.dumps({"tool": "get_weather", "args": {"city": "Zürich"}})},
        {"from": "observation", "value": '{"temp": 18}'}, {"from": "agent", "value": "It is 18 °C."}]}
    (out,) = load_records([row], mapping=dialog)
    assert out.data == {"id": "row-1", "tools": [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "messages": [{"role": "user", "content": "Weather in Zürich?"},
                     {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                         "name": "get_weather", "arguments": {"city": "Zürich"}}}]},
                     {"role": "tool", "name": "get_weather", "content": '{"temp": 18}'},
                     {"role": "assistant", "content": "It is 18 °C."}]}


def test_check_command_takes_a_mapping(tmp_path, capsys):
    from test_data_check_command import cli

    src = str(DATA / "apibank.jsonl")
    assert cli("check", src, "--output-dir", str(tmp_path), "--no-progress", "--allow-missing-cot",
               "--mapping", str(DATA / "apibank_mapping.yaml")) == 0
    assert capsys.readouterr().out.startswith("9 records: 3 base, 1 hard, 5 rejected")
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: {agent: asistant}\n")
    assert cli("check", src, "--output-dir", str(tmp_path / "x"), "--mapping", str(bad)) == 2
    assert "roles.agent: 'asistant' is not one of" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_hostile_mapped_rows_are_rejected_with_a_reason():
    mapping = load_mapping(DATA / "apibank_mapping.yaml")
    rows = [{"id": 1, "query": {"role": "user"}, "answers": []},
            {"id": 2, "query": [{"role": "user", "text": "x"}], "answers": "[" * 100_000},
            {"id": 3, "query": [{"role": "API", "text": [1, 2]}], "answers": []},
            {"id": 4, "query": [["user", "x"]], "answers": []},
            {"id": 5, "query": "x", "answers": [{"api_name": "f", "param_dict": [1]}]}]
    assert [(r.error, r.message) for r in load_records(rows, mapping=mapping)] == [
        ("invalid_query", "line 1: 'query' must be a string or a list of turns, got dict"),
        ("invalid_answers_json", "line 2: 'answers' is not valid JSON"),
        ("call_parse_error", "line 3: turn 1: a call without 'api_name' (calls.name of the mapping); got int"),
        ("invalid_message", "line 4: turn 1: not an object"),
        ("invalid_answers", "line 5: answers: f: arguments must be an object"),
    ]
