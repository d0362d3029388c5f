"""Loaders from the formats users have to the canonical record (docs/data.md; typed in `record.py`).

Formats (`--format` names):

- `xlam`: xlam-function-calling-60k rows, `{"id", "query", "tools", "answers"}` (tools/answers as JSON strings or
  lists). The assistant turn is the ground-truth calls, so there is no CoT.
- `xlam_cot`: the same plus a distilled response (`response`, `output`, `completion` or `generation`) holding
  `<think>…</think>` and a call block. The response is kept as raw assistant `content`; the Base Quality Check
  parses it, so a malformed response is rejected with a reason instead of failing the load.
- `messages`: conversational `{"messages", "tools"}` rows (multi-turn, OpenAI/TRL `tool_calls`, role `tool`,
  reasoning fields or reasoning content parts), including canonical records themselves.
- `ms_swift`: ms-swift's agent rows, `messages` with `tool_call` / `tool_response` turns (`from_ms_swift`).
- `llamafactory_v1`: LLaMA-Factory's v1 rows, `messages` of typed content parts with a `value`
  (`from_llamafactory_v1`). `auto` reads the three `messages`-family formats row by row (`from_any_messages`).
- `sharegpt` / `openai`: LLaMA-Factory's two conversation formattings (`from_sharegpt`, `from_openai`), role and
  column names configurable like its `dataset_info.json` (`ConversationTags`, `load_dataset_info`).
- `hermes`: Hermes-style ChatML text with `<tool_call>` / `<tool_response>` blocks (`from_hermes`).
- `bfcl`: BFCL question files (`{"id", "question", "function"}`) with their possible-answer file. The reference
  keeps BFCL's accepted alternatives (see `bfcl_reference`), the assistant turn is built from the first ones.

Rows that cannot be converted come back as `RawRow`s with `error` set (a reason code) and `data` kept, so the
check command writes them to `rejected.jsonl`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .calls import (
    DEFAULT_COT,
    CallParseError,
    normalize_call,
    parse_json_calls,
    parse_json_values,
    python_literal,
    split_assistant_output,
    to_tool_calls,
)
from .io import InputError, RawRow, read_records, why_unusable
from .record import Record, SharedTool

FORMATS = ("xlam", "xlam_cot", "messages", "ms_swift", "llamafactory_v1", "sharegpt", "openai", "hermes", "bfcl")
RESPONSE_KEYS = ("response", "output", "completion", "generation")


class FormatError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def detect_format(row: dict) -> str | None:
    """Guess the format of one row; `None` when it matches none or is ambiguous."""
    if "messages" in row:
        return messages_kind(row["messages"])
    if "conversations" in row:
        return "sharegpt"
    if isinstance(row.get("text"), str) and "<|im_start|>" in row["text"]:
        return "hermes"
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
        except (ValueError, RecursionError) as e:
            raise FormatError(f"invalid_{field}_json", f"'{field}' is not usable JSON: {why_unusable(e)}") from None
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


_MAPPING_HINT = "; rows of this shape are read with a mapping file (--mapping / dataset_mapping, docs/data.md)"


def _calls(value: Any) -> list[dict]:
    calls = _decode(value, "answers")
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


# ---------------------------------------------------------------- converters


def from_xlam(row: dict, line: int = 0) -> Record:
    """One xlam-function-calling-60k row → canonical record (assistant = ground truth, reference = same)."""
    _require(row, "query", "tools", "answers")
    if not isinstance(row["query"], str):
        raise FormatError("invalid_query", f"'query' is a {type(row['query']).__name__}, not the request as text"
                                           + (" (a conversation given as turns, as API-Bank's)" + _MAPPING_HINT
                                              if isinstance(row["query"], list) else ""))
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


# Content parts that carry reasoning: {"type": "thinking", "thinking": …} (Anthropic), {"type": "reasoning", "text": …}
# (OpenAI Responses, LLaMA-Factory's openai data); their text keys, in order of preference.
_REASONING_PARTS = {"thinking": ("thinking", "text"), "reasoning": ("reasoning", "text", "summary"),
                    "reasoning_content": ("reasoning_content", "text")}


def _split_parts(msg: dict) -> None:
    """Content given as parts: reasoning parts go to `reasoning_content`, text parts are joined into `content`.
    Other part types (images, ...) leave the content as it is."""
    parts = msg.get("content")
    if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
        return
    reasoning, text = [], []
    for part in parts:
        kind = part.get("type")
        if kind in _REASONING_PARTS:
            value = next((part[k] for k in _REASONING_PARTS[kind] if isinstance(part.get(k), str)), None)
            if value is None:
                raise FormatError("invalid_message", f"a {kind!r} content part without text")
            reasoning.append(value)
        elif kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        else:
            return
    if reasoning:
        if msg.get("reasoning_content"):
            raise FormatError("invalid_message", "reasoning both in content parts and in reasoning_content")
        msg["reasoning_content"] = "\n\n".join(reasoning)
    msg["content"] = "".join(text)


def _message(msg: Any) -> Any:
    if not isinstance(msg, dict):
        return msg
    msg = dict(msg)
    for alias in ("thinking", "reasoning"):
        if alias in msg and "reasoning_content" not in msg:
            msg["reasoning_content"] = msg.pop(alias)
    if msg.get("role") == "assistant":
        _split_parts(msg)
    if isinstance(msg.get("tool_calls"), list):
        fixed = []
        for tc in msg["tool_calls"]:
            try:
                fixed.append(to_tool_calls([normalize_call(tc)])[0])
            except CallParseError:
                fixed.append(tc)  # left as is: the Base Quality Check rejects it with a reason
        msg["tool_calls"] = fixed
    return msg


def from_messages(row: dict, line: int = 0) -> Record:
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


# ---------------------------------------------------------------- ms-swift agent rows and LLaMA-Factory v1 rows


def name_results(messages: list[dict]) -> list[dict]:
    """Give the `tool` messages that answer a structured call turn one to one the name of their call (in place).
    With another number of results than calls which result answers which call is unknown: no name is set."""
    for i, message in enumerate(messages):
        calls = message.get("tool_calls") if message.get("role") == "assistant" else None
        if not calls:
            continue
        end = i + 1
        while end < len(messages) and messages[end].get("role") == "tool":
            end += 1
        if end - i - 1 == len(calls):
            for call, result in zip(calls, messages[i + 1:end]):
                result.setdefault("name", call["function"]["name"])
    return messages


def json_call_turn(value: Any, where: str) -> list[dict]:
    """A call written as JSON (a string, or already an object; `{"name", "arguments"}` or a list of them) → tool_calls."""
    if isinstance(value, (dict, list)):
        try:
            calls = [normalize_call(c) for c in (value if isinstance(value, list) else [value])]
        except CallParseError as e:
            raise FormatError(e.reason, f"{where}: {e.message}") from None
        return to_tool_calls(calls)
    return _call_turn(value, where)["tool_calls"]


def agent_messages(turns: Any, roles: dict[str, str], role_key: str = "role", content_key: str = "content",
                   call=json_call_turn, field: str = "messages") -> list[dict]:
    """Conversation turns where calls and their results are turns of their own (ms-swift's `tool_call` /
    `tool_response`, mapped rows) → canonical messages.

    `roles` maps the data's role tags to `system`, `user`, `assistant`, `tool` or `tool_call`. Consecutive call
    turns are one assistant turn with parallel calls, and an assistant text right before them belongs to that turn
    (ms-swift writes the CoT there); results name their call when they answer the calls one to one.
    """
    if not isinstance(turns, list):
        raise FormatError("messages_not_list", f"'{field}' must be a list of turns")
    messages: list[dict] = []
    open_calls = False  # the last turns were a call turn and its results: a result may follow
    for i, turn in enumerate(turns):
        where = f"turn {i + 1}"
        if not isinstance(turn, dict):
            raise FormatError("invalid_message", f"{where}: not an object")
        tag = turn.get(role_key)
        role = roles.get(tag) if isinstance(tag, str) else None
        if role is None:
            raise FormatError("invalid_role", f"{where}: unknown {role_key!r} {tag!r} (known: {', '.join(sorted(roles))})")
        content = turn.get(content_key)
        if role == "tool_call":
            tool_calls = call(content, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and (open_calls or "tool_calls" not in last):
                last.setdefault("tool_calls", []).extend(tool_calls)
            else:
                messages.append({"role": "assistant", "tool_calls": tool_calls})
            open_calls = True
        elif role == "tool":
            if not open_calls:
                raise FormatError("invalid_turn_order", f"{where}: a tool result without a call turn before it")
            messages.append({"role": "tool", "content": content})
        else:
            messages.append({"role": role, "content": content})
            open_calls = False
    return name_results(messages)


# ms-swift's roles; `tool` is accepted as the older spelling of `tool_response`
_SWIFT_ROLES = {"system": "system", "user": "user", "assistant": "assistant", "tool_call": "tool_call",
                "tool_response": "tool", "tool": "tool"}


def tool_list(value: Any) -> list[dict]:
    """A row's tools (a list or a JSON string of them); none when the column is absent or empty."""
    return [] if value is None or value == "" or value == [] else _tools(value)


def from_ms_swift(row: dict, line: int = 0) -> Record:
    """ms-swift agent row (`messages` with `tool_call` turns holding a JSON `{"name", "arguments"}` and
    `tool_response` turns, `tools` a JSON string) → canonical record."""
    _require(row, "messages")
    return {"id": str(row.get("id", f"row-{line}")), "tools": tool_list(row.get("tools")),
            "messages": agent_messages(row["messages"], _SWIFT_ROLES)}


_V1_ROLES = ("system", "user", "assistant", "tool")


def _v1_message(msg: Any, where: str) -> dict:
    """One LLaMA-Factory v1 message: `content` parts `{"type": "text" | "reasoning" | "tool_call", "value": str}`;
    text parts joined into `content`, reasoning parts into `reasoning_content` (joined as LLaMA-Factory's renderer
    joins them: back to back), `tool_call` parts (JSON `{"name", "arguments"}`) into `tool_calls`."""
    if not isinstance(msg, dict):
        raise FormatError("invalid_message", f"{where}: not an object")
    role = msg.get("role")
    if role not in _V1_ROLES:
        raise FormatError("invalid_role", f"{where}: unknown role {role!r} (known: {', '.join(_V1_ROLES)})")
    parts = msg.get("content")
    if isinstance(parts, str):
        parts = [{"type": "text", "value": parts}]
    if not isinstance(parts, list):
        raise FormatError("invalid_message", f"{where}: 'content' must be a list of parts")
    text, reasoning, calls = [], [], []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        value = part.get("value") if isinstance(part, dict) else None
        if kind == "tool_call" and role == "assistant":
            calls += json_call_turn(value, where)
        elif not isinstance(value, str):
            raise FormatError("invalid_message", f"{where}: a {kind!r} content part without a string 'value'")
        elif kind == "text":
            text.append(value)
        elif kind == "reasoning" and role == "assistant":
            reasoning.append(value)
        else:
            raise FormatError("invalid_message", f"{where}: a {kind!r} content part in a {role} turn (text, and for "
                                                 "the assistant reasoning and tool_call, are read)")
    message = {"role": role}
    if text or not (calls or reasoning):
        message["content"] = "".join(text)
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def from_llamafactory_v1(row: dict, line: int = 0) -> Record:
    """LLaMA-Factory v1 row (`messages` whose `content` is a list of typed parts with a `value`, `tools` a JSON
    string; its `reason_tool_use` demo data) → canonical record. `loss_weight` is not kept: every assistant turn
    trains, as in every other format."""
    _require(row, "messages")
    turns = row["messages"]
    if not isinstance(turns, list):
        raise FormatError("messages_not_list", "'messages' must be a list")
    messages = [_v1_message(m, f"turn {i + 1}") for i, m in enumerate(turns)]
    for i, m in enumerate(messages):
        if m["role"] == "tool" and not (i and (messages[i - 1]["role"] == "tool" or messages[i - 1].get("tool_calls"))):
            raise FormatError("invalid_turn_order", f"turn {i + 1}: a tool result without a call turn before it")
    return {"id": str(row.get("id", f"row-{line}")), "tools": tool_list(row.get("tools")), "messages": name_results(messages)}


MESSAGES_FAMILY = ("messages", "ms_swift", "llamafactory_v1")


def messages_kind(messages: Any) -> str:
    """Which member of the `messages` family a row's messages are: ms-swift (call and result roles), LLaMA-Factory
    v1 (content parts with a `value`) or plain `messages`."""
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                if m.get("role") in ("tool_call", "tool_response"):
                    return "ms_swift"
                content = m.get("content")
                if type(content) is list and content and type(content[0]) is dict and "value" in content[0] \
                        and "text" not in content[0]:
                    return "llamafactory_v1"
    return "messages"


def from_any_messages(row: dict, line: int = 0) -> Record:
    """Auto-detected `messages`-family data: each row is read as the member it is (a file may start with plain rows
    that carry no call turn, which look the same in all three)."""
    return CONVERTERS[messages_kind(row.get("messages"))](row, line)


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


def from_bfcl(question: dict, answer: dict | None = None) -> Record:
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


# ---------------------------------------------------------------- LLaMA-Factory and Hermes conversations


@dataclass(frozen=True)
class ConversationTags:
    """Column and role names of conversation data, named and defaulted as in LLaMA-Factory's `dataset_info.json`
    (`columns` and `tags` of an entry; see `from_dataset_info`).

    `aliases=True` (the defaults, used by auto-detection) also accepts the other common spellings of each role:
    user/human, assistant/gpt, tool/observation, so Hermes-style sharegpt data (`from: tool`) loads as it is.
    """

    messages: str = "conversations"
    system: str | None = "system"
    tools: str | None = "tools"
    role_tag: str = "from"
    content_tag: str = "value"
    user_tag: str = "human"
    assistant_tag: str = "gpt"
    observation_tag: str = "observation"
    function_tag: str = "function_call"
    system_tag: str = "system"
    aliases: bool = True

    @classmethod
    def openai(cls) -> ConversationTags:
        """LLaMA-Factory's `formatting: openai` defaults."""
        return cls(messages="messages", role_tag="role", content_tag="content", user_tag="user",
                   assistant_tag="assistant", observation_tag="tool")

    @classmethod
    def from_dataset_info(cls, entry: dict) -> tuple[str, ConversationTags]:
        """One `dataset_info.json` entry → (`--format` name, tags). Keys it does not set keep their defaults."""
        if not isinstance(entry, dict):
            raise InputError("a dataset_info entry must be a JSON object")
        formatting = entry.get("formatting", "alpaca")
        if formatting not in ("sharegpt", "openai"):
            raise InputError(f"dataset_info formatting {formatting!r} is not tool-calling data; use sharegpt or openai")
        base = cls.openai() if formatting == "openai" else cls()
        known = {f.name for f in dataclasses.fields(cls)} - {"aliases"}
        settings = {**(entry.get("columns") or {}), **(entry.get("tags") or {})}
        ignored = {"images", "videos", "audios", "prompt", "query", "response", "history", "chosen", "rejected",
                   "kto_tag"}
        unknown = sorted(set(settings) - known - ignored)
        if unknown:
            raise InputError(f"dataset_info: unknown column/tag {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return formatting, dataclasses.replace(base, aliases=False,
                                               **{k: v for k, v in settings.items() if k in known})

    def role_map(self) -> dict[str, str]:
        """Role tag in the data → canonical role (`function_call` for a call turn)."""
        roles = {self.user_tag: "user", self.assistant_tag: "assistant", self.observation_tag: "tool",
                 self.function_tag: "function_call", self.system_tag: "system"}
        if self.aliases:
            for tag, role in (("human", "user"), ("user", "user"), ("gpt", "assistant"), ("assistant", "assistant"),
                              ("observation", "tool"), ("tool", "tool"), ("function_call", "function_call")):
                roles.setdefault(tag, role)
        return roles


def load_dataset_info(path: str | os.PathLike, name: str | None = None) -> tuple[str, ConversationTags]:
    """Read LLaMA-Factory's `dataset_info.json` (or a file holding one entry) → (`--format` name, tags).
    `name` picks the entry; it may be left out when the file holds only one."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read the dataset_info file ({e})") from None
    if isinstance(info, dict) and ("formatting" in info or "columns" in info or "tags" in info):
        entry = info
    elif isinstance(info, dict) and name is not None:
        if name not in info:
            raise InputError(f"{path}: no entry {name!r} (entries: {', '.join(sorted(info)[:10])})")
        entry = info[name]
    elif isinstance(info, dict) and len(info) == 1:
        entry = next(iter(info.values()))
    else:
        raise InputError(f"{path}: several entries; name the one to use")
    return ConversationTags.from_dataset_info(entry)



def resolve_format(format: str, dataset_info: str | os.PathLike | None = None,
                   dataset_info_name: str | None = None) -> tuple[str, ConversationTags | None]:
    """(format, tags) for a load: `format` as given, or the formatting and tags of LLaMA-Factory's `dataset_info`
    (a `format` other than `auto` must then agree with it)."""
    if not dataset_info:
        return format, None
    fmt, tags = load_dataset_info(dataset_info, dataset_info_name)
    if format not in ("auto", fmt):
        raise InputError(f"format {format!r} contradicts the formatting {fmt!r} of dataset_info {dataset_info}")
    return fmt, tags

_TOOL_RESPONSE_RE = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)
_TOOLS_BLOCK_RE = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)
_CHATML_TURN_RE = re.compile(r"<\|im_start\|>([A-Za-z_]+)\n?(.*?)<\|im_end\|>", re.DOTALL)
_CHATML_REST_RE = re.compile(r"(?:\s|<\|endoftext\|>)*")


def _tool_results(text: str, names: list[str] | None) -> list[dict] | None:
    """`<tool_response>` blocks (Hermes, Qwen) → one `tool` message each; `None` when `text` is not made of them."""
    blocks = _TOOL_RESPONSE_RE.findall(text)
    if not blocks or _TOOL_RESPONSE_RE.sub("", text).strip():
        return None
    return _tool_messages([b.strip() for b in blocks], names)


def _tool_messages(results: list[str], names: list[str] | None) -> list[dict]:
    # The function name is known when the results answer the previous call turn one to one.
    named = names is not None and len(names) == len(results)
    return [{"role": "tool", "content": r, **({"name": names[i]} if named else {})} for i, r in enumerate(results)]


def _tools_from_system(text: str) -> list[dict] | None:
    """The `<tools>…</tools>` list of a Hermes/Qwen system prompt: a JSON list, JSON objects one per line, or a
    Python-literal list (Hermes writes `[{'type': 'function', …}]`), parsed with `json`/`ast`, never evaluated."""
    blocks = [b.strip() for b in _TOOLS_BLOCK_RE.findall(text)]
    if not blocks:
        return None
    # Hermes' prompt names the tags before the list ("within <tools></tools> XML tags"): the list is the last block.
    body = next((b for b in reversed(blocks) if b), "")
    try:
        value = json.loads(body) if body else []
    except (ValueError, RecursionError):
        try:
            value = parse_json_values(body)
        except (ValueError, RecursionError):
            try:
                value = python_literal(body)
            except CallParseError as e:
                raise FormatError("invalid_tools_json", f"the <tools> block of the system prompt: {e.message}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise FormatError("tools_not_list", "the <tools> block of the system prompt is not a list of tools")
    return [to_canonical_tool(t) for t in value]


def _call_turn(value: Any, where: str, cot: tuple[str, str] = DEFAULT_COT) -> dict:
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


def _check_turn_order(kinds: list[str]) -> None:
    """LLaMA-Factory's rule: user/tool turns and assistant turns alternate, starting with the user, ending with the
    assistant (consecutive tool results count as one turn)."""
    merged = [k for i, k in enumerate(kinds) if not (k == "tool" and i and kinds[i - 1] == "tool")]
    for i, kind in enumerate(merged):
        if (kind in ("user", "tool")) != (i % 2 == 0):
            raise FormatError("invalid_turn_order", f"turn {i + 1} is {kind!r}: user/observation and "
                                                    "assistant/function_call turns must alternate")
    if len(merged) % 2:
        raise FormatError("invalid_turn_order", "the conversation ends without an assistant or function_call turn")


def _conversation(row: dict, line: int, tags: ConversationTags, keep_keys: bool,
                  cot: tuple[str, str] = DEFAULT_COT) -> Record:
    """Shared by `sharegpt` and `openai`: map the roles, turn call turns and tool results into canonical messages."""
    _require(row, tags.messages)
    turns = row[tags.messages]
    if not isinstance(turns, list):
        raise FormatError("messages_not_list", f"'{tags.messages}' must be a list")
    roles = tags.role_map()
    tool_value = row.get(tags.tools) if tags.tools else None
    tools = _tools(tool_value) if tool_value not in (None, "", []) else None
    messages: list[dict] = []
    system = row.get(tags.system) if tags.system else None
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    kinds: list[str] = []
    last_calls: list[str] | None = None
    for i, turn in enumerate(turns):
        where = f"turn {i + 1}"
        if not isinstance(turn, dict):
            raise FormatError("invalid_message", f"{where}: not an object")
        tag = turn.get(tags.role_tag)
        role = roles.get(tag) if isinstance(tag, str) else None
        if role is None:
            raise FormatError("invalid_role", f"{where}: unknown {tags.role_tag!r} {tag!r} (known: "
                                              f"{', '.join(sorted(roles))})")
        value = turn.get(tags.content_tag)
        if role == "system":
            if i != 0:
                raise FormatError("invalid_turn_order", f"{where}: a system turn after the first turn")
            if not isinstance(value, str):
                raise FormatError("invalid_message", f"{where}: the content is not a string")
            if tools is None:
                tools = _tools_from_system(value)
                if tools is not None:
                    continue  # the chat template renders the tool list (and its instructions) itself
            messages.append({"role": "system", "content": value})
            continue
        if role == "function_call":
            message = _call_turn(value, where, cot)
            last_calls = [c["function"]["name"] for c in message["tool_calls"]]
            messages.append(message)
            kinds.append("assistant")
            continue
        extra = {k: v for k, v in turn.items() if k not in (tags.role_tag, tags.content_tag)} if keep_keys else {}
        if role == "tool" and not extra:
            results = _tool_results(value, last_calls) if isinstance(value, str) else None
            messages.extend(results or _tool_messages([value], last_calls))
            kinds.extend(["tool"] * len(results or [value]))
            continue
        if role == "user" and isinstance(value, str) and "<tool_response>" in value:
            results = _tool_results(value, last_calls)  # Qwen renders tool results as a user turn
            if results is not None:
                messages.extend(results)
                kinds.extend(["tool"] * len(results))
                continue
        message = _message({"role": role, **({"content": value} if tags.content_tag in turn else {}), **extra})
        if role == "assistant" and message.get("tool_calls"):
            last_calls = [c.get("function", c).get("name") for c in message["tool_calls"] if isinstance(c, dict)]
        messages.append(message)
        kinds.append(role)
    _check_turn_order(kinds)
    return {"id": str(row.get("id", f"row-{line}")), "tools": tools or [], "messages": messages}


def from_sharegpt(row: dict, line: int = 0, tags: ConversationTags | None = None,
                  cot: tuple[str, str] = DEFAULT_COT) -> Record:
    """LLaMA-Factory sharegpt row (`conversations` of `{"from", "value"}` turns: human / gpt / function_call /
    observation / system, plus a `tools` JSON string) → canonical record. Hermes-style sharegpt rows (`from: tool`,
    `<tool_call>`/`<tool_response>` blocks, tools in the system prompt's `<tools>` block) load too."""
    return _conversation(row, line, tags or ConversationTags(), keep_keys=False, cot=cot)


def from_openai(row: dict, line: int = 0, tags: ConversationTags | None = None,
                cot: tuple[str, str] = DEFAULT_COT) -> Record:
    """LLaMA-Factory's `openai` formatting: `messages` with `role`/`content`, `tool_calls`, `tool` results and
    reasoning (`reasoning_content`, or reasoning content parts) → canonical record, with LLaMA-Factory's turn-order
    rule. Same result as `messages` for data that follows that rule; tags configurable with `dataset_info`."""
    return _conversation(row, line, tags or ConversationTags.openai(), keep_keys=True, cot=cot)


def from_hermes(row: dict, line: int = 0, tags: ConversationTags | None = None) -> Record:
    """Hermes-style ChatML text (`text`: `<|im_start|>role\\n…<|im_end|>` turns; calls in `<tool_call>` blocks of
    assistant turns, results in `<tool_response>` blocks of `tool` or `user` turns, tools in the system prompt's
    `<tools>` block or a `tools` column) → canonical record. Assistant turns stay raw text for the check to parse."""
    _require(row, "text")
    text = row["text"]
    if not isinstance(text, str):
        raise FormatError("invalid_chatml", "'text' must be a string")
    turns, pos = [], 0
    for m in _CHATML_TURN_RE.finditer(text):
        if text[pos:m.start()].strip():
            raise FormatError("invalid_chatml", f"text outside <|im_start|>…<|im_end|> at char {pos}")
        turns.append({"role": m.group(1), "content": m.group(2).strip("\n")})
        pos = m.end()
    rest = text[pos:]
    if "<|im_start|>" in rest:
        raise FormatError("invalid_chatml", "a <|im_start|> turn is not closed by <|im_end|>")
    if _CHATML_REST_RE.fullmatch(rest) is None or not turns:
        raise FormatError("invalid_chatml", "no <|im_start|>role … <|im_end|> turns" if not turns
                          else f"text outside <|im_start|>…<|im_end|> at char {pos}")
    tags = ConversationTags(messages="turns", tools="tools", system=None, role_tag="role", content_tag="content",
                            user_tag="user", assistant_tag="assistant", observation_tag="tool", aliases=False)
    return _conversation({**row, "turns": turns}, line, tags, keep_keys=False)


# formats whose `function_call` turns may hold a CoT block before the calls, split at load time with the run's markers
CALL_TURN_FORMATS = ("sharegpt", "openai")
CONVERTERS = {"xlam": from_xlam, "xlam_cot": from_xlam_cot, "messages": from_messages, "ms_swift": from_ms_swift,
              "llamafactory_v1": from_llamafactory_v1, "sharegpt": from_sharegpt, "openai": from_openai,
              "hermes": from_hermes}


def default_bfcl_answers(questions_path: str | os.PathLike) -> Path | None:
    """BFCL keeps answers in `possible_answer/<same file name>` next to the question file."""
    candidate = Path(questions_path).parent / "possible_answer" / Path(questions_path).name
    return candidate if candidate.is_file() else None


def _converter(format: str, tags: ConversationTags | None, cot: tuple[str, str]):
    converter = CONVERTERS.get(format)
    if converter is None:
        return None
    kwargs = {"tags": tags} if tags is not None else {}
    if format in CALL_TURN_FORMATS:
        kwargs["cot"] = tuple(cot)
    return functools.partial(converter, **kwargs) if kwargs else converter


def load_records(
    source: str | os.PathLike | Iterable[Any],
    format: str = "auto",
    answers: str | os.PathLike | None = None,
    tags: ConversationTags | None = None,
    cot: tuple[str, str] = DEFAULT_COT,
    mapping=None,
) -> Iterator[RawRow]:
    """Stream canonical records from a file or an iterable of rows.

    Yields `RawRow`s: `data` is the canonical record, or, when `error` is set, the original row (reader errors:
    `invalid_json`, `invalid_utf8`, `not_an_object`; conversion errors: `missing_field`, `tools_not_list`, ...).
    `format="auto"` detects the format from the first readable row and raises `InputError` when it cannot.
    `tags`: column and role names of `sharegpt`/`openai` data (see `load_dataset_info`); needs that format named.
    `cot`: the (start, end) CoT markers of the run, used where a format holds CoT inside a call turn (`function_call`
    turns of `sharegpt`/`openai` data); elsewhere raw assistant text is split by the checks with the same markers.
    `mapping`: a `balancetrl.data.mapping.RowMapping` describing rows of no built-in format (then `format` stays
    `auto`: the mapping is the format).
    """
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if tags is not None and format not in ("sharegpt", "openai"):
        raise InputError(f"column/role tags apply to the sharegpt and openai formats, not to {format!r}")
    if mapping is not None and (format != "auto" or tags is not None):
        raise InputError("a mapping describes the rows itself: use it without a format or dataset_info")
    answer_rows = None
    converter = mapping.convert if mapping is not None else _converter(format, tags, cot)
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
            converter = _converter(format, tags, cot)
            if format in MESSAGES_FAMILY:
                converter = from_any_messages
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
        except (TypeError, AttributeError, KeyError, ValueError) as e:  # wrong shapes deep inside a row
            yield RawRow(row.line, row.data, "malformed_record", f"line {row.line}: {type(e).__name__}: {e}")
            continue
        except RecursionError:
            yield RawRow(row.line, row.data, "malformed_record", f"line {row.line}: values nested too deeply")
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
        if not isinstance(row.data.get("id"), str):
            raise InputError(f"{answers}: line {row.line}: a possible-answer row needs a string 'id' (the id of its "
                             f"question); got keys {sorted(row.data)[:8]}")
        out[row.data["id"]] = row.data
    return out
