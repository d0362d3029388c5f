import copy
import json
from collections import Counter
from pathlib import Path

import pytest

from balancetrl.data.answers import answer_check
from balancetrl.data.checks import check_record
from balancetrl.data.formats import from_messages, load_records
from balancetrl.data.reasons import ANSWER_REASONS, REASONS

DATA = Path(__file__).parent / "data"

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "w", "parameters": {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "default": "c"},
                   "days": {"type": "integer"}, "opts": {"type": "object"}, "tags": {"type": "array"},
                   "exact": {"type": "boolean"}},
    "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "t", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}]


def call(name, **args):
    return {"name": name, "arguments": args}


@pytest.mark.parametrize("calls, reference, ok, reason", [
    ([call("get_weather", city="Paris")], [call("get_weather", city="Paris")], True, None),
    # type normalisation: "3" for an integer, 3.0 == 3, default-valued extras, reference defaults omitted
    ([call("get_weather", city="Paris", days="3")], [call("get_weather", city="Paris", days=3)], True, None),
    ([call("get_weather", city="Paris", days=3.0)], [call("get_weather", city="Paris", days=3)], True, None),
    ([call("get_weather", city="Paris", unit="c")], [call("get_weather", city="Paris")], True, None),
    ([call("get_weather", city="Paris")], [call("get_weather", city="Paris", unit="c")], True, None),
    # nested values, lists, booleans/None, unicode
    ([call("get_weather", city="東京", opts={"a": [1, {"b": None}]}, tags=["x", "y"], exact=False)],
     [call("get_weather", city="東京", opts={"a": [1, {"b": None}]}, tags=["x", "y"], exact=False)], True, None),
    ([call("get_weather", city="Paris", exact=0)], [call("get_weather", city="Paris", exact=False)], False,
     "wrong_type"),
    ([call("get_weather", city="Paris", tags=["y", "x"])], [call("get_weather", city="Paris", tags=["x", "y"])],
     False, "wrong_value"),
    # parallel calls match in any order, but counts must agree
    ([call("get_time", tz="UTC"), call("get_weather", city="Rome")],
     [call("get_weather", city="Rome"), call("get_time", tz="UTC")], True, None),
    ([call("get_weather", city="Rome"), call("get_weather", city="Paris")],
     [call("get_weather", city="Paris"), call("get_weather", city="Rome")], True, None),
    ([call("get_weather", city="Rome")], [call("get_weather", city="Rome"), call("get_time", tz="UTC")], False,
     "wrong_call_count"),
    ([call("get_time", tz="UTC")], [call("get_weather", city="UTC")], False, "wrong_function"),
    ([call("get_weather", unit="f")], [call("get_weather", city="Oslo", unit="f")], False, "missing_required"),
    ([call("get_weather", city="Oslo", colour="red")], [call("get_weather", city="Oslo")], False,
     "unknown_parameter"),
    ([call("get_weather", city="Oslo", days=2)], [call("get_weather", city="Oslo")], False, "unexpected_parameter"),
    ([call("get_weather", city="Oslo")], [call("get_weather", city="Oslo", days=2)], False, "missing_parameter"),
    ([call("get_weather", city="Osl0")], [call("get_weather", city="Oslo")], False, "wrong_value"),
    ([call("nope", x=1)], [call("nope", x=1)], False, "unknown_function"),
    (None, [call("get_weather", city="Oslo")], False, "expected_call"),
    ([call("get_weather", city="Oslo")], [], False, "unexpected_call"),
    (None, [], True, None),
])
def test_answer_check(calls, reference, ok, reason):
    result = answer_check(calls, reference, TOOLS)
    assert (result.ok, result.reason) == (ok, reason)
    if not ok:
        assert result.message and reason in REASONS


def test_answer_check_without_reference_checks_schemas():
    assert answer_check([call("get_weather", city="Oslo")], None, TOOLS).ok
    assert answer_check([call("get_weather", city=5)], None, TOOLS).reason == "wrong_type"
    assert answer_check([call("get_weather", city="x", bad=1)], None, TOOLS).reason == "unknown_parameter"
    assert answer_check([call("get_time")], None, TOOLS).reason == "missing_required"
    # OpenAI-shaped calls with JSON-string arguments are accepted
    openai = [{"type": "function", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}}]
    assert answer_check(openai, [call("get_time", tz="CET")], TOOLS).ok


def test_leading_space_is_hard_unless_fixed():
    result = answer_check([call("get_weather", city="Oslo")], [call("get_weather", city="Oslo")], TOOLS,
                          issues=["leading_space"])
    assert result.reason == "format_leading_space" and "--fix" in result.message
    assert answer_check([call("get_weather", city="Oslo")], [call("get_weather", city="Oslo")], TOOLS,
                        issues=["leading_space"], fix=True).ok


def _conv(assistant, query="Weather in Oslo?", reference=None, tools=TOOLS):
    rec = {"id": "r", "tools": tools, "messages": [{"role": "user", "content": query}, assistant]}
    if reference is not None:
        rec["reference"] = reference
    return rec


GOOD = {"role": "assistant", "reasoning_content": "Oslo.", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]}


@pytest.mark.parametrize("record, outcome, reason", [
    (_conv(GOOD, reference=[[call("get_weather", city="Oslo")]]), "base", None),
    (_conv(GOOD), "base", None),  # no reference: schema-only answer check
    (_conv(GOOD, reference=[[call("get_weather", city="Bergen")]]), "hard", "wrong_value"),
    (_conv(GOOD, query="  "), "rejected", "empty_query"),
    (_conv(GOOD, tools={"name": "x"}), "rejected", "tools_not_list"),
    (_conv(GOOD, tools=[{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {}, "required": ["ghost"]}}}]), "rejected", "invalid_tool_schema"),
    (_conv(GOOD, tools=[{"function": {"description": "no name"}}]), "rejected", "invalid_tool_schema"),
    (_conv({"role": "user", "content": "again"}), "rejected", "no_assistant_turn"),
    (_conv({"role": "assistant", "tool_calls": GOOD["tool_calls"]}), "rejected", "missing_cot"),
    (_conv({"role": "assistant", "content": "<think>Oslo, hmm"}), "rejected", "unclosed_cot"),
    (_conv({"role": "assistant", "reasoning_content": "<think>\nleaked"}), "rejected", "unclosed_cot"),
    (_conv({"role": "assistant", "content": "<think>Oslo.</think>[get_weather(city=]"}), "rejected",
     "call_parse_error"),
    (_conv({"role": "assistant", "reasoning_content": "x", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": "city=Oslo"}}]}), "rejected",
     "call_parse_error"),
    (_conv({"role": "assistant", "content": ""}), "rejected", "empty_assistant_turn"),
    (_conv(GOOD, reference=[[], []]), "rejected", "reference_mismatch"),
    (_conv({"role": "wizard", "content": "x"}), "rejected", "invalid_message"),
])
def test_check_record_outcomes(record, outcome, reason):
    result = check_record(record)
    assert (result.outcome, result.reason) == (outcome, reason)
    assert reason is None or reason in REASONS
    assert (reason in ANSWER_REASONS) == (outcome == "hard")


def test_check_record_normalises_raw_text_and_fixes_leading_space():
    rows = [r.data for r in load_records(DATA / "xlam_cot_sample.jsonl")]
    results = [check_record(r) for r in rows]
    assert [(x.outcome, x.reason) for x in results] == [
        ("base", None), ("hard", "format_leading_space"), ("hard", "wrong_value"), ("rejected", "unclosed_cot")]
    assistant = results[0].record["messages"][1]
    assert assistant == {"role": "assistant",
                         "reasoning_content": "The user wants beta and game giveaways, so two calls.",
                         "tool_calls": [{"type": "function", "function": {"name": "live_giveaways_by_type",
                                                                          "arguments": {"type": t}}}
                                        for t in ("beta", "game")]}
    fixed = check_record(rows[1], fix=True)
    assert (fixed.outcome, fixed.fixes) == ("base", ["leading_space"])
    assert fixed.record["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"city": "Zürich, CH",
                                                                                     "unit": "f"}
    assert rows[1]["messages"][1]["content"].startswith("<think>")  # the input record is not mutated
    # a repaired defect is counted even when the call is then wrong on content
    wrong = copy.deepcopy(rows[1])
    wrong["reference"][0][0]["arguments"]["unit"] = "c"
    result = check_record(wrong, fix=True)
    assert (result.outcome, result.reason, result.fixes) == ("hard", "wrong_value", ["leading_space"])


def test_multi_turn_every_assistant_turn_is_checked():
    conv = next(iter(load_records(DATA / "messages_sample.jsonl"))).data
    result = check_record(conv)
    assert result.outcome == "base", result.message
    last = result.record["messages"][-1]
    assert last["reasoning_content"] == "Booking with a nested options dict."
    assert last["tool_calls"][0]["function"]["arguments"]["options"] == {"terrace": True, "notes": None,
                                                                         "tags": ["a", "b"]}
    # break the third turn's reference: the record becomes hard and the message names turn 3
    bad = copy.deepcopy(conv)
    bad["reference"][2][0]["arguments"]["guests"] = 3
    result = check_record(bad)
    assert (result.outcome, result.reason) == ("hard", "wrong_value") and result.message.startswith("turn 3")
    # a text turn where the reference expects a call
    bad = copy.deepcopy(conv)
    bad["reference"][1] = [call("get_weather", city="Paris")]
    assert check_record(bad).reason == "expected_call"
    # the second conversation misses the required "guests" (schema-only check: no reference)
    second = list(load_records(DATA / "messages_sample.jsonl"))[1].data
    assert check_record(second).reason == "missing_required"
    assert check_record(conv, require_cot=True).outcome == "base"


def test_bfcl_alternatives_rules():
    rows = {r.data["id"]: r.data for r in load_records(DATA / "bfcl" / "BFCL_v4_sample.json")}
    tri, par, mix = rows["simple_python_0"], rows["parallel_0"], rows["simple_python_dict"]

    def ok(rec, *calls):
        return answer_check(list(calls), rec["reference"][0], rec["tools"])

    assert ok(tri, call("calculate_triangle_area", base=10, height=5)).ok  # unit may be omitted
    assert ok(tri, call("calculate_triangle_area", base=10, height=5, unit="Units.")).ok  # BFCL string rules
    assert ok(tri, call("calculate_triangle_area", base=10, height=5, unit="cm")).reason == "wrong_value"
    assert ok(tri, call("calculate_triangle_area", base=10.0, height=5)).reason == "wrong_type"
    assert ok(par, call("spotify.play", artist="maroon 5", duration=15),
              call("spotify.play", artist="Taylor Swift", duration=20)).ok
    assert ok(par, call("spotify.play", artist="Maroon 5", duration=20),
              call("spotify.play", artist="Taylor Swift", duration=15)).reason == "wrong_value"
    assert ok(mix, call("mix", ratio={"red": 0.5})).ok  # "blue" optional inside the dict; tags optional
    assert ok(mix, call("mix", ratio={"red": 1, "blue": 0.5})).reason == "wrong_value"
    assert ok(mix, call("mix", ratio={"red": 0.5, "green": 0.5})).reason == "wrong_value"
    assert ok(mix, call("mix", ratio={"red": 0.5}, tags=["Warm", "bright"])).ok
    assert ok(mix, call("mix", ratio={"red": 0.5}, tags=["bright", "warm"])).reason == "wrong_value"
    # BFCL lists None as an accepted value ("null is fine"): a None for a string parameter then passes, as in
    # bfcl-eval (its "variable" rule: the value has the type of the first alternative); 0 does not
    ref = [{"name": "get_time", "arguments": {"tz": "UTC"}, "alternatives": {"tz": [None, "UTC", ""]}}]
    assert answer_check([call("get_time", tz=None)], ref, TOOLS).ok
    assert answer_check([call("get_time", tz="utc")], ref, TOOLS).ok
    assert answer_check([call("get_time", tz=0)], ref, TOOLS).reason == "wrong_type"


def test_agrees_with_labelled_synthetic_data():
    """The project's synthetic generator knows which records it broke and how; the checker must find them."""
    from tests.fixtures import synthetic
    records, labels = synthetic.generate_labeled(600, seed=11, hard_fraction=0.15, reject_fraction=0.1)
    confusion = Counter()
    for rec in records:
        result = check_record(from_messages(json.loads(json.dumps(rec))))
        confusion[(labels[rec["id"]]["status"], result.outcome)] += 1
    assert confusion == Counter({("base", "base"): 450, ("hard", "hard"): 90, ("rejected", "rejected"): 60})
