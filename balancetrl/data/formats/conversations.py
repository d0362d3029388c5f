"""LLaMA-Factory's conversation formattings (`sharegpt`, `openai`, with `dataset_info.json` column and role tags)
and Hermes-style ChatML text (`hermes`)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ...cot import DEFAULT_COT
from ..calls import CallParseError, parse_json_values, python_literal
from ..io import InputError
from ..record import Record
from .common import FormatError, call_turn, parse_tools, require, to_canonical_tool
from .messages import normalize_message


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
    require(row, tags.messages)
    turns = row[tags.messages]
    if not isinstance(turns, list):
        raise FormatError("messages_not_list", f"'{tags.messages}' must be a list")
    roles = tags.role_map()
    tool_value = row.get(tags.tools) if tags.tools else None
    tools = parse_tools(tool_value) if tool_value not in (None, "", []) else None
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
            message = call_turn(value, where, cot)
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
        message = normalize_message({"role": role, **({"content": value} if tags.content_tag in turn else {}), **extra})
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
    require(row, "text")
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
