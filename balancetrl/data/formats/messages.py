"""The `messages` family: TRL/OpenAI conversational rows (`messages`), ms-swift's agent rows (`ms_swift`) and
LLaMA-Factory's v1 rows (`llamafactory_v1`); `auto` reads each row as the member it is (`from_any_messages`)."""

from __future__ import annotations

from typing import Any

from ..calls import CallParseError, normalize_call, to_tool_calls
from ..record import Record
from .common import FormatError, call_turn, decode_field, require, to_canonical_tool, tool_list

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


def normalize_message(msg: Any) -> Any:
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
    require(row, "messages")
    messages = row["messages"]
    if not isinstance(messages, list):
        raise FormatError("messages_not_list", "'messages' must be a list")
    tools = decode_field(row.get("tools") or [], "tools")
    if isinstance(tools, list):
        tools = [to_canonical_tool(t) for t in tools]
    record = {"id": str(row.get("id", f"row-{line}")), "tools": tools, "messages": [normalize_message(m) for m in messages]}
    if row.get("reference") is not None:
        record["reference"] = row["reference"]
    return record


# ---------------------------------------------------------------- call and result turns: ms-swift, LLaMA-Factory v1


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
    return call_turn(value, where)["tool_calls"]


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


def from_ms_swift(row: dict, line: int = 0) -> Record:
    """ms-swift agent row (`messages` with `tool_call` turns holding a JSON `{"name", "arguments"}` and
    `tool_response` turns, `tools` a JSON string) → canonical record."""
    require(row, "messages")
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
    require(row, "messages")
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
    return _FAMILY[messages_kind(row.get("messages"))](row, line)


_FAMILY = {"messages": from_messages, "ms_swift": from_ms_swift, "llamafactory_v1": from_llamafactory_v1}
