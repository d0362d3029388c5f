"""What every format's converter shares: the error it raises, field decoding, tool schemas (with the caches that
convert each distinct tool once) and call turns written as JSON."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from ...cot import DEFAULT_COT
from ..calls import CallParseError, parse_json_calls, split_assistant_output, to_tool_calls
from ..io import why_unusable
from ..record import SharedTool


class FormatError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def decode_field(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise FormatError(f"invalid_{field}_json", f"'{field}' is not valid JSON: {e.msg}") from None
        except (ValueError, RecursionError) as e:
            raise FormatError(f"invalid_{field}_json", f"'{field}' is not usable JSON: {why_unusable(e)}") from None
    return value


def require(row: dict, *fields: str) -> None:
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
_JSON = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


@functools.lru_cache(maxsize=16384)
def _shared_tool(text: str) -> SharedTool:
    """One tool of a JSON array of tools, converted once per distinct text."""
    return SharedTool(to_canonical_tool(json.loads(text)))


@functools.lru_cache(maxsize=2048)
def _tool_array(text: str) -> list[dict] | None:
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
            _, pos = _JSON.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        tools.append(_shared_tool(text[start:pos]))
        pos = _WS.match(text, pos).end()
        sep = text[pos:pos + 1]
        pos = _WS.match(text, pos + 1).end()
        if sep == "]":
            return tools if pos == len(text) else None
        if sep != ",":
            return None


def parse_tools(value: Any) -> list[dict]:
    """A row's tools: a list, or a JSON string of one (cached per distinct string), converted to canonical tools."""
    if isinstance(value, str):
        tools = _tool_array(value)
        if tools is not None:
            return tools
    tools = decode_field(value, "tools")
    if not isinstance(tools, list):
        raise FormatError("tools_not_list", f"'tools' must be a list, got {type(tools).__name__}")
    return [to_canonical_tool(t) for t in tools]


def tool_list(value: Any) -> list[dict]:
    """A row's tools (a list or a JSON string of them); none when the column is absent or empty."""
    return [] if value is None or value == "" or value == [] else parse_tools(value)


def call_turn(value: Any, where: str, cot: tuple[str, str] = DEFAULT_COT) -> dict:
    """A `function_call` turn (JSON calls, optionally after a CoT block in the `cot` markers) → assistant message
    with tool_calls."""
    if not isinstance(value, str):
        raise FormatError("invalid_message", f"{where}: the content is not a string")
    try:
        try:
            calls, reasoning = parse_json_calls(value.strip()), None
        except CallParseError:
            out = split_assistant_output(value, *cot)
            calls, reasoning = out.calls, out.reasoning
            if calls is None or out.content:
                raise FormatError("invalid_function_call", f"{where}: a function_call turn must hold calls (JSON), "
                                                           f"got text") from None
    except CallParseError as e:
        raise FormatError(e.reason, f"{where}: {e.message}") from None
    message = {"role": "assistant", "tool_calls": to_tool_calls(calls)}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return message
