"""The checks' verdict vocabulary: every reason code with its meaning (`REASONS`), and the pass/fail result.

The table is the reference of docs/data.md (a test keeps the two equal). Codes are stable: they are written into
`rejected.jsonl`/`hard.jsonl` and counted in `report.json`.
"""

from __future__ import annotations

from dataclasses import dataclass

REASONS = {
    # reader / loader (record could not even be converted)
    "invalid_json": "the line is not valid JSON",
    "invalid_utf8": "the line is not UTF-8",
    "not_an_object": "the record is not a JSON object",
    "missing_field": "a required field is missing",
    "invalid_tools_json": "'tools' is a string that is not valid JSON",
    "invalid_answers_json": "'answers' is a string that is not valid JSON",
    "answers_not_list": "'answers' is not a list of calls",
    "invalid_answers": "an entry of 'answers' is not a call",
    "invalid_tool": "a tool is not an object",
    "invalid_query": "'query' is not text, nor a list of turns read with a mapping",
    "invalid_response": "the distilled response is not a string",
    "messages_not_list": "'messages' is not a list",
    "unsupported_bfcl": "a multi-turn BFCL question (only single-turn AST categories load)",
    "malformed_record": "a field has the wrong shape",
    "invalid_role": "a conversation turn has a role tag the format does not define",
    "invalid_turn_order": "conversation turns do not alternate user/observation and assistant/function_call",
    "invalid_function_call": "a function_call turn holds text instead of calls",
    "invalid_chatml": "ChatML text that is not a sequence of closed <|im_start|>…<|im_end|> turns",
    "unwritable_record": "a value JSON cannot hold (nesting too deep for the encoder, a non-JSON type)",
    # Base Quality Check
    "tools_not_list": "'tools' is not a list",
    "invalid_tool_schema": "a tool is not a valid function schema",
    "invalid_message": "a message is not an object with a known role",
    "empty_query": "no user message with non-empty content",
    "no_assistant_turn": "no assistant turn",
    "empty_assistant_turn": "an assistant turn has no reasoning, calls or content",
    "missing_cot": "an assistant turn has no CoT",
    "unclosed_cot": "a CoT block is opened but never closed",
    "text_before_cot": "text before the CoT block",
    "multiple_cot": "more than one CoT block in one turn",
    "call_parse_error": "a call block does not parse",
    "positional_arguments": "a call uses positional arguments",
    "unclosed_tool_call": "a <tool_call> block is not closed",
    "duplicate_calls": "calls both as text and as structured tool_calls",
    "reference_mismatch": "the reference does not have one entry per assistant turn",
    # Answer Check
    "format_leading_space": "xlam format defect: a space between '[' and the function name",
    "wrong_call_count": "a different number of calls than the reference",
    "wrong_function": "a call to a function the reference does not call",
    "unknown_function": "a call to a function that is not among the tools",
    "missing_required": "a required parameter is missing",
    "missing_parameter": "a parameter of the reference is missing",
    "unknown_parameter": "a parameter that the tool schema does not define",
    "unexpected_parameter": "a parameter the reference does not set",
    "wrong_type": "a value of the wrong type",
    "wrong_value": "a value different from the reference",
    "expected_call": "a text answer where the reference calls a function",
    "unexpected_call": "a call where the reference answers in text",
}
ANSWER_REASONS = frozenset(list(REASONS)[list(REASONS).index("format_leading_space"):])


@dataclass
class CheckResult:
    ok: bool
    reason: str | None = None
    message: str | None = None

    def __bool__(self) -> bool:
        return self.ok


OK = CheckResult(True)


def fail(reason: str, message: str) -> CheckResult:
    return CheckResult(False, reason, message)
