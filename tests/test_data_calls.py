import importlib.util
import json

import pytest

from balancetrl.data.calls import (
    CallParseError,
    parse_assistant_output,
    parse_calls,
    render_python_calls,
    render_tool_call_block,
    split_assistant_output,
)


def test_python_call_list_with_hard_values():
    text = ('[get_weather(city="Paris, \\"FR\\"", unit=\'c\'), f2(x=1, y=-2.5, z=[1, [2, 3]], '
            'd={"k": {"n": None}, "b": True}, s="a,b)c", e=False), math.gcd(a=12, b=18)]')
    parsed = parse_calls(text)
    assert parsed.syntax == "python" and parsed.issues == []
    assert parsed.calls == [
        {"name": "get_weather", "arguments": {"city": 'Paris, "FR"', "unit": "c"}},
        {"name": "f2", "arguments": {"x": 1, "y": -2.5, "z": [1, [2, 3]], "d": {"k": {"n": None}, "b": True},
                                     "s": "a,b)c", "e": False}},
        {"name": "math.gcd", "arguments": {"a": 12, "b": 18}},
    ]


def test_python_calls_unicode_tuples_and_json_literals():
    parsed = parse_calls('[translate(text="¿Dónde está 東京?", pair=("es", "ja"), strict=true, hint=null)]')
    assert parsed.calls == [{"name": "translate", "arguments": {"text": "¿Dónde está 東京?", "pair": ["es", "ja"],
                                                                "strict": True, "hint": None}}]
    assert parse_calls("f()").calls == [{"name": "f", "arguments": {}}]


@pytest.mark.parametrize("text, reason", [
    ("[f(1)]", "positional_arguments"),
    ("[f(x=g(1))]", "call_parse_error"),  # a nested call is code, not a literal
    ("[f(x=__import__('os').system('ls'))]", "call_parse_error"),
    ("[f(x=1]", "call_parse_error"),
    ("[f(**kw)]", "call_parse_error"),
    ("[1, 2]", "call_parse_error"),
    ("", "call_parse_error"),
])
def test_python_calls_rejected_without_eval(text, reason):
    with pytest.raises(CallParseError) as e:
        parse_calls(text)
    assert e.value.reason == reason


def test_leading_space_defect_is_detected_but_parses():
    parsed = parse_calls('[ forecast_weather_api(q="London", days=3)]')
    assert parsed.issues == ["leading_space"]
    assert parsed.calls == [{"name": "forecast_weather_api", "arguments": {"q": "London", "days": 3}}]
    assert parse_calls('[forecast_weather_api(q="London")]').issues == []


def test_json_lists_objects_and_string_arguments():
    assert parse_calls('[{"name": "f", "arguments": {"a": [1, {"b": "x, \\"y\\""}]}}, {"name": "g", '
                       '"arguments": "{\\"q\\": true}"}]').calls == [
        {"name": "f", "arguments": {"a": [1, {"b": 'x, "y"'}]}}, {"name": "g", "arguments": {"q": True}}]
    assert parse_calls('{"name": "f", "parameters": {"a": 1}}').calls == [{"name": "f", "arguments": {"a": 1}}]
    assert parse_calls('[{"type": "function", "function": {"name": "f", "arguments": {}}}]').syntax == "json"
    with pytest.raises(CallParseError):
        parse_calls('[{"name": "f", "arguments": "{broken"}]')
    with pytest.raises(CallParseError):
        parse_calls('[{"arguments": {}}]')


def test_tool_call_blocks_parallel_and_unclosed():
    text = ('<tool_call>\n{"name": "a", "arguments": {"s": "é</x>"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>')
    parsed = parse_calls(text)
    assert parsed.syntax == "tool_call"
    assert parsed.calls == [{"name": "a", "arguments": {"s": "é</x>"}}, {"name": "b", "arguments": {}}]
    with pytest.raises(CallParseError) as e:
        parse_calls('<tool_call>\n{"name": "a", "arguments": {}}')
    assert e.value.reason == "unclosed_tool_call"


def test_parse_assistant_output_shapes():
    assert parse_assistant_output('<think>\nParis.\n</think>\n\n[get_weather(city="Paris")]') == (
        "Paris.", [{"name": "get_weather", "arguments": {"city": "Paris"}}], "")
    # text answer (refusal) with CoT, and without
    assert parse_assistant_output("<think>No tool fits.</think>I cannot do that.") == (
        "No tool fits.", None, "I cannot do that.")
    assert parse_assistant_output("[1] is a citation, not a call.") == (None, None, "[1] is a citation, not a call.")
    # the template pre-wrote <think>: the output starts inside the CoT
    reasoning, calls, content = parse_assistant_output('why</think><tool_call>{"name": "f", "arguments": {}}'
                                                       "</tool_call>")
    assert (reasoning, calls, content) == ("why", [{"name": "f", "arguments": {}}], "")
    # a bare call without brackets is a call; prose with parentheses stays text
    assert parse_assistant_output('<think>x</think>get_time(tz="UTC")')[1] == [{"name": "get_time",
                                                                                 "arguments": {"tz": "UTC"}}]
    assert parse_assistant_output("Sure(ly) not.") == (None, None, "Sure(ly) not.")
    assert parse_assistant_output("f(x=1) and then more prose(y=2)") == (None, None,
                                                                           "f(x=1) and then more prose(y=2)")
    # custom markers
    assert parse_assistant_output("<r>x</r>ok", cot_start="<r>", cot_end="</r>") == ("x", None, "ok")


@pytest.mark.parametrize("text, reason", [
    ("<think>never closed [f(x=1)]", "unclosed_cot"),
    ("hi <think>a</think>ok", "text_before_cot"),
    ("<think>a</think><think>b</think>", "multiple_cot"),
    ("<think>a</think>b</think>", "multiple_cot"),
    ("<think>a</think><think>b", "unclosed_cot"),  # as training reads it: the second block never ends
    ("<think>a</think>[f(x=]", "call_parse_error"),
    ('<think>a</think>[{"name": "f", "arguments": {]', "call_parse_error"),
])
def test_parse_assistant_output_errors(text, reason):
    with pytest.raises(CallParseError) as e:
        parse_assistant_output(text)
    assert e.value.reason == reason


def test_render_round_trips():
    calls = [{"name": "m.f", "arguments": {"s": "it's, \"q\"", "l": [1, None, True], "d": {"ü": 1.5}}},
             {"name": "g", "arguments": {}}]
    assert parse_calls(render_python_calls(calls)).calls == calls
    block = render_tool_call_block(calls)
    assert block.startswith('<tool_call>\n{"name": "m.f", "arguments": ') and block.count("</tool_call>") == 2
    assert parse_calls(block).calls == calls
    assert split_assistant_output("<think>r</think>\n" + block).calls == calls


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl not installed")
def test_tool_call_parsing_agrees_with_trl_qwen_response_template():
    """TRL's Qwen3 response template (parsed by transformers) and our parser read the same message."""
    tpl = pytest.importorskip("trl.chat_template_utils").qwen3_template
    from transformers.utils.chat_parsing import parse_response

    texts = [
        ('<think>\nI need two calls, "quoted", and ü.\n</think>\n\n<tool_call>\n{"name": "f", "arguments": '
         '{"a": [1, {"b": "x, y"}], "c": true, "d": null}}\n</tool_call>\n<tool_call>\n{"name": "g", '
         '"arguments": {}}\n</tool_call>'),
        "<think>\nNo tool fits.\n</think>\n\nSorry, I cannot help with that.",
        '<tool_call>\n{"name": "only", "arguments": {"x": 1}}\n</tool_call>',
    ]
    for text in texts:
        theirs = parse_response(text, tpl, prefix="")
        reasoning, calls, content = parse_assistant_output(text)
        assert reasoning == theirs.get("reasoning_content")
        assert calls == ([c["function"] for c in theirs["tool_calls"]] if "tool_calls" in theirs else None)
        assert content == (theirs.get("content") or "").strip()


def test_json_lines_in_one_block_and_parameters_key_parse_like_the_standard_form():
    """Distilled-CoT sets write parallel calls as JSON lines inside one <tool_call> block, and some generators
    use `parameters` for the arguments; both must read exactly as the standard one-block-per-call form."""
    calls = [{"name": "fetch", "arguments": {"fund": "Axis", "scheme": "Équité", "n": [1, 2]}},
             {"name": "fetch", "arguments": {"fund": "Axis", "scheme": "Debt"}},
             {"name": "ping", "arguments": {}}]
    standard = render_tool_call_block(calls)
    json_lines = "<tool_call>\n" + "\n".join(json.dumps(c, ensure_ascii=False) for c in calls) + "\n</tool_call>"
    parameters = "\n".join(
        "<tool_call>\n" + json.dumps({"name": c["name"], "parameters": c["arguments"]}) + "\n</tool_call>"
        for c in calls)
    both = "<tool_call>\n" + "\n".join(json.dumps({"name": c["name"], "parameters": c["arguments"]})
                                       for c in calls) + "\n</tool_call>"
    expected = split_assistant_output("<think>r</think>\n" + standard)
    assert expected.calls == calls
    for variant in (json_lines, parameters, both):
        out = split_assistant_output("<think>r</think>\n" + variant)
        assert (out.reasoning, out.calls, out.content, out.syntax) == ("r", calls, "", "tool_call")
        assert parse_calls(variant).calls == calls
    # JSON lines outside a block too (a bare answer), and a mixed list/object sequence is not a call list
    assert parse_calls("\n".join(json.dumps(c) for c in calls)).calls == calls
    with pytest.raises(CallParseError) as e:
        parse_calls('<tool_call>\n{"name": "f", "arguments": {}}\n[1, 2]\n</tool_call>')
    assert e.value.reason == "call_parse_error"
    with pytest.raises(CallParseError, match="Expecting"):
        parse_calls('<tool_call>\n{"name": "f", "arguments": {}}\n{"name": "g", \n</tool_call>')
