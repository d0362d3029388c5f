"""Loaders from the formats users have to the canonical record of DESIGN.md ("Data").

Formats (`--format` names):

- `xlam`: xlam-function-calling-60k rows, `{"id", "query", "tools", "answers"}` (tools/answers as JSON strings or
  lists). The assistant turn is the ground-truth calls, so there is no CoT.
- `xlam_cot`: the same plus a distilled response (`response`, `output`, `completion` or `generation`) holding
  `<think>…</think>` and a call block. The response is kept as raw assistant `content`; the Base Quality Check
  parses it, so a malformed response is rejected with a reason instead of failing the load.
- `messages`: conversational `{"messages", "tools"}` rows (multi-turn, OpenAI/TRL `tool_calls`, role `tool`),
  including canonical records themselves.
- `bfcl`: BFCL question files (`{"id", "question", "function"}`) with their possible-answer file. The reference
  keeps BFCL's accepted alternatives (see `bfcl_reference`), the assistant turn is built from the first ones.

Rows that cannot be converted come back as `RawRow`s with `error` set (a reason code) and `data` kept, so the
check command writes them to `rejected.jsonl`.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .calls import CallParseError, normalize_call, to_tool_calls
from .io import InputError, RawRow, read_records
from .record import SharedTool

FORMATS = ("xlam", "xlam_cot", "messages", "bfcl")
RESPONSE_KEYS = ("response", "output", "completion", "generation")


class FormatError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def detect_format(row: dict) -> str | None:
    """Guess the format of one row; `None` when it matches none or is ambiguous."""
    if "messages" in row:
        return "messages"
    if "question" in row and "function" in row:
        return "bfcl"
    if "query" in row and "answers" in row:
        return "xlam_cot" if any(k in row for k in RESPONSE_KEYS) else "xlam"
    return None


def _decode(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise FormatError(f"invalid_{field}_json", f"'{field}' is not valid JSON: {e.msg}") from None
    return value


def _require(row: dict, *fields: str) -> None:
    missing = [f for f in fields if f not in row or row[f] is None]
    if missing:
        raise FormatError("missing_field", f"missing field(s): {', '.join(missing)}")


# ---------------------------------------------------------------- tool schemas

_XLAM_TYPES = {
    "str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
    "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "tuple": "array",
    "set": "array", "array": "array", "dict": "object", "object": "object",
}


@functools.lru_cache(maxsize=4096)
def _xlam_type(type_str: str) -> tuple[str | None, bool]:
    """xlam's `"List[int], optional"` → (JSON-schema type or None, optional?). Few distinct strings: cached."""
    type_str = type_str.strip()
    optional = bool(re.search(r",\s*optional\s*$", type_str)) or type_str.startswith("Optional[")
    base = re.sub(r",\s*optional\s*$", "", type_str)
    base = re.sub(r"^Optional\[(.*)\]$", r"\1", base).strip()
    # Unions, Callable, Any: no type, so any value is type-valid.
    return _XLAM_TYPES.get(base.split("[", 1)[0].strip().lower()), optional


def _xlam_param(spec: dict) -> tuple[dict, bool]:
    """xlam's `{"type": "List[int], optional", "default": ...}` → (JSON-schema property, optional?)."""
    json_type, optional = _xlam_type(str(spec.get("type", "")))
    prop = dict(spec)
    prop.pop("type", None)
    if json_type is not None:
        prop["type"] = json_type
    return prop, optional or "default" in spec


def _bfcl_schema(schema: Any) -> Any:
    """BFCL's Python-flavoured schema (`dict`, `float`, `tuple`, `any`) → JSON Schema, recursively."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    t = out.get("type")
    if t in ("dict", "float", "tuple", "any"):
        if t == "any":
            del out["type"]
        else:
            out["type"] = {"dict": "object", "float": "number", "tuple": "array"}[t]
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _bfcl_schema(v) for k, v in out["properties"].items()}
    if "items" in out:
        out["items"] = _bfcl_schema(out["items"])
    return out


def to_canonical_tool(tool: Any) -> dict:
    """Accept `{"type": "function", "function": {...}}`, a bare `{name, description, parameters}` with JSON-schema
    parameters, or xlam's flat `parameters: {name: {type, description, default}}`."""
    if not isinstance(tool, dict):
        raise FormatError("invalid_tool", f"a tool must be an object, got {type(tool).__name__}")
    fn = tool["function"] if isinstance(tool.get("function"), dict) else tool
    params = fn.get("parameters")
    if params is None:
        params = {"type": "object", "properties": {}, "required": []}
    elif isinstance(params, dict) and not ("properties" in params or params.get("type") in ("object", "dict")):
        props, required = {}, []
        for pname, spec in params.items():
            prop, optional = _xlam_param(spec if isinstance(spec, dict) else {"type": spec})
            props[pname] = prop
            if not optional:
                required.append(pname)
        params = {"type": "object", "properties": props, "required": required}
    else:
        params = _bfcl_schema(params)
    out = {k: v for k, v in fn.items() if k not in ("parameters", "type")}
    out["parameters"] = params
    return {"type": "function", "function": out}


# Datasets repeat tools across rows: each distinct tool (by its JSON text) and each distinct tool list is converted
# once. The cached tools are shared between records: nothing downstream mutates tools (see `SharedTool`).
_TOOLS_CACHE: dict[str, list[dict]] = {}
_TOOL_CACHE: dict[str, SharedTool] = {}
_TOOLS_CACHE_SIZE = 2048
_TOOL_CACHE_SIZE = 16384
_JSON = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _shared_tool(text: str, tool: Any) -> SharedTool:
    shared = _TOOL_CACHE.get(text)
    if shared is None:
        shared = SharedTool(to_canonical_tool(tool))
        if len(_TOOL_CACHE) >= _TOOL_CACHE_SIZE:
            _TOOL_CACHE.clear()
        _TOOL_CACHE[text] = shared
    return shared


def _tool_list(text: str) -> list[dict] | None:
    """Decode a JSON array of tools element by element, so each element's text keys the per-tool cache.
    `None` when the text is not a plain array (the caller decodes it whole and reports what is wrong)."""
    pos = _WS.match(text).end()
    if text[pos:pos + 1] != "[":
        return None
    pos = _WS.match(text, pos + 1).end()
    tools: list[dict] = []
    if text[pos:pos + 1] == "]":
        return tools if not text[_WS.match(text, pos + 1).end():] else None
    while True:
        start = pos
        try:
            tool, pos = _JSON.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        tools.append(_shared_tool(text[start:pos], tool) if isinstance(tool, dict) else to_canonical_tool(tool))
        pos = _WS.match(text, pos).end()
        sep = text[pos:pos + 1]
        pos = _WS.match(text, pos + 1).end()
        if sep == "]":
            return tools if pos == len(text) else None
        if sep != ",":
            return None


def _tools(value: Any) -> list[dict]:
    key = value if isinstance(value, str) else None
    if key is not None:
        tools = _TOOLS_CACHE.get(key)
        if tools is not None:
            return tools
        tools = _tool_list(key)
        if tools is not None:
            if len(_TOOLS_CACHE) >= _TOOLS_CACHE_SIZE:
                _TOOLS_CACHE.clear()
            _TOOLS_CACHE[key] = tools
            return tools
    tools = _decode(value, "tools")
    if not isinstance(tools, list):
        raise FormatError("tools_not_list", f"'tools' must be a list, got {type(tools).__name__}")
    return [to_canonical_tool(t) for t in tools]


def _calls(value: Any) -> list[dict]:
    calls = _decode(value, "answers")
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list):
        raise FormatError("answers_not_list", "'answers' must be a list of calls")
    try:
        return [normalize_call(c) for c in calls]
    except CallParseError as e:
        raise FormatError("invalid_answers", e.message) from None


# ---------------------------------------------------------------- converters


def from_xlam(row: dict, line: int = 0) -> dict:
    """One xlam-function-calling-60k row → canonical record (assistant = ground truth, reference = same)."""
    _require(row, "query", "tools", "answers")
    calls = _calls(row["answers"])
    return {
        "id": f"xlam-{row.get('id', line)}",
        "tools": _tools(row["tools"]),
        "messages": [
            {"role": "user", "content": row["query"]},
            {"role": "assistant", "tool_calls": to_tool_calls(calls)},
        ],
        "reference": [calls],
    }


def from_xlam_cot(row: dict, line: int = 0) -> dict:
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


def _message(msg: Any) -> Any:
    if not isinstance(msg, dict):
        return msg
    msg = dict(msg)
    for alias in ("thinking", "reasoning"):
        if alias in msg and "reasoning_content" not in msg:
            msg["reasoning_content"] = msg.pop(alias)
    if isinstance(msg.get("tool_calls"), list):
        fixed = []
        for tc in msg["tool_calls"]:
            try:
                fixed.append(to_tool_calls([normalize_call(tc)])[0])
            except CallParseError:
                fixed.append(tc)  # left as is: the Base Quality Check rejects it with a reason
        msg["tool_calls"] = fixed
    return msg


def from_messages(row: dict, line: int = 0) -> dict:
    """Conversational `{"messages", "tools"}` row (or a canonical record) → canonical record."""
    _require(row, "messages")
    messages = row["messages"]
    if not isinstance(messages, list):
        raise FormatError("messages_not_list", "'messages' must be a list")
    tools = _decode(row.get("tools") or [], "tools")
    if isinstance(tools, list):
        tools = [to_canonical_tool(t) for t in tools]
    record = {"id": str(row.get("id", f"row-{line}")), "tools": tools, "messages": [_message(m) for m in messages]}
    if row.get("reference") is not None:
        record["reference"] = row["reference"]
    return record


def bfcl_pick(alternatives: list, schema: dict | None = None) -> tuple[bool, Any]:
    """First concrete value of a BFCL alternatives list (`""` marks "may be omitted"); dicts inside hold
    alternatives themselves. Returns (has_value, value)."""
    for alt in alternatives:
        if alt == "":
            continue
        if isinstance(alt, dict):
            return True, _pick_dict(alt)
        if isinstance(alt, list) and alt and all(isinstance(x, dict) for x in alt):
            return True, [_pick_dict(x) for x in alt]
        return True, alt
    return False, None


def _pick_dict(alt: dict) -> dict:
    out = {}
    for k, v in alt.items():
        ok, value = bfcl_pick(v if isinstance(v, list) else [v])
        if ok:
            out[k] = value
    return out


def bfcl_reference(ground_truth: list[dict]) -> list[dict]:
    """BFCL `[{fname: {param: [alternatives]}}]` → reference calls with `arguments` (first alternatives) and
    `alternatives` (BFCL's lists, compared with BFCL's rules by the Answer Check)."""
    calls = []
    for entry in ground_truth:
        for name, params in entry.items():
            arguments = {}
            for p, alts in params.items():
                ok, value = bfcl_pick(alts)
                if ok:
                    arguments[p] = value
            calls.append({"name": name, "arguments": arguments, "alternatives": params})
    return calls


def from_bfcl(question: dict, answer: dict | None = None) -> dict:
    """One BFCL question row (+ its possible-answer row) → canonical record. Single-turn categories only."""
    _require(question, "id", "question", "function")
    turns = question["question"]
    if not isinstance(turns, list) or len(turns) != 1 or not isinstance(turns[0], list):
        raise FormatError("unsupported_bfcl", "only single-turn BFCL questions (AST categories) are supported")
    functions = question["function"] if isinstance(question["function"], list) else [question["function"]]
    record = {"id": question["id"], "tools": [to_canonical_tool(f) for f in functions], "messages": list(turns[0])}
    if answer is not None:
        reference = bfcl_reference(answer["ground_truth"])
        record["reference"] = [reference]
        plain = [{"name": c["name"], "arguments": c["arguments"]} for c in reference]
        record["messages"].append({"role": "assistant", "tool_calls": to_tool_calls(plain)})
    return record


CONVERTERS = {"xlam": from_xlam, "xlam_cot": from_xlam_cot, "messages": from_messages}


def default_bfcl_answers(questions_path: str | os.PathLike) -> Path | None:
    """BFCL keeps answers in `possible_answer/<same file name>` next to the question file."""
    candidate = Path(questions_path).parent / "possible_answer" / Path(questions_path).name
    return candidate if candidate.is_file() else None


def load_records(
    source: str | os.PathLike | Iterable[Any], format: str = "auto", answers: str | os.PathLike | None = None
) -> Iterator[RawRow]:
    """Stream canonical records from a file or an iterable of rows.

    Yields `RawRow`s: `data` is the canonical record, or, when `error` is set, the original row (reader errors:
    `invalid_json`, `invalid_utf8`, `not_an_object`; conversion errors: `missing_field`, `tools_not_list`, ...).
    `format="auto"` detects the format from the first readable row and raises `InputError` when it cannot.
    """
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    answer_rows = None
    converter = CONVERTERS.get(format)
    for row in read_records(source):
        if row.error:
            yield row
            continue
        if converter is None and format == "auto":
            format = detect_format(row.data) or "auto"
            if format == "auto":
                raise InputError(
                    f"line {row.line}: cannot detect the format from keys {sorted(row.data)[:8]}; "
                    f"pass --format ({', '.join(FORMATS)})"
                )
            converter = CONVERTERS.get(format)
        if format == "bfcl" and answer_rows is None:
            answer_rows = _bfcl_answers(source, answers)
        try:
            if format == "bfcl":
                record = from_bfcl(row.data, answer_rows.get(row.data.get("id")))
            else:
                record = converter(row.data, row.line)
        except FormatError as e:
            yield RawRow(row.line, row.data, e.reason, f"line {row.line}: {e.message}")
            continue
        except (TypeError, AttributeError, KeyError) as e:  # wrong shapes deep inside a row
            yield RawRow(row.line, row.data, "malformed_record", f"line {row.line}: {type(e).__name__}: {e}")
            continue
        yield RawRow(row.line, record)


def _bfcl_answers(source: Any, answers: str | os.PathLike | None) -> dict:
    if answers is None and isinstance(source, (str, os.PathLike)):
        answers = default_bfcl_answers(source)
    if answers is None:
        return {}
    out = {}
    for row in read_records(answers):
        if row.error:
            raise InputError(f"{answers}: {row.message}")
        out[row.data["id"]] = row.data
    return out
