"""xlam-function-calling-60k rows (`xlam`) and the same with a distilled response (`xlam_cot`)."""

from __future__ import annotations

from typing import Any

from ..calls import CallParseError, normalize_call, to_tool_calls
from ..record import Record
from .common import FormatError, decode_field, parse_tools, require

RESPONSE_KEYS = ("response", "output", "completion", "generation")
_MAPPING_HINT = "; rows of this shape are read with a mapping file (--mapping / dataset_mapping, docs/data.md)"


def _calls(value: Any) -> list[dict]:
    calls = decode_field(value, "answers")
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list):
        raise FormatError("answers_not_list", "'answers' must be a list of calls")
    try:
        return [normalize_call(c) for c in calls]
    except CallParseError as e:
        # calls under other keys ({"tool", "parameters"}: SealTool, ToolAlpaca) are a mapping's job
        other_keys = any(isinstance(c, dict) and "name" not in c and "function" not in c for c in calls)
        raise FormatError("invalid_answers", e.message + (_MAPPING_HINT if other_keys else "")) from None


def from_xlam(row: dict, line: int = 0) -> Record:
    """One xlam-function-calling-60k row → canonical record (assistant = ground truth, reference = same)."""
    require(row, "query", "tools", "answers")
    if not isinstance(row["query"], str):
        raise FormatError("invalid_query", f"'query' is a {type(row['query']).__name__}, not the request as text"
                                           + (" (a conversation given as turns, as API-Bank's)" + _MAPPING_HINT
                                              if isinstance(row["query"], list) else ""))
    calls = _calls(row["answers"])
    return {
        "id": f"xlam-{row.get('id', line)}",
        "tools": parse_tools(row["tools"]),
        "messages": [
            {"role": "user", "content": row["query"]},
            {"role": "assistant", "tool_calls": to_tool_calls(calls)},
        ],
        "reference": [calls],
    }


def from_xlam_cot(row: dict, line: int = 0) -> Record:
    """xlam row + distilled response → canonical record; the raw response is the assistant `content`."""
    key = next((k for k in RESPONSE_KEYS if k in row), None)
    if key is None:
        raise FormatError("missing_field", f"missing the response field (one of {', '.join(RESPONSE_KEYS)})")
    record = from_xlam(row, line)
    response = row[key]
    if not isinstance(response, str):
        raise FormatError("invalid_response", f"'{key}' must be a string")
    record["messages"][1] = {"role": "assistant", "content": response}
    return record
