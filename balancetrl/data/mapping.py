"""A declarative mapping for rows in no format `balancetrl check` knows: which columns hold what, which role tags
mean what, where the answer calls are and what their name / argument keys are (docs/data.md, "Mapping other rows").

In the spirit of LLaMA-Factory's `dataset_info.json` (`columns`, `tags`), extended to the shapes it cannot describe:
a query given as a list of turns (API-Bank), call turns and result turns of their own, answer calls with other keys
(SealTool / ToolAlpaca `{"tool": ..., "parameters": ...}`). One small YAML or JSON file:

```yaml
columns: {query: query, tools: tools, answers: answers}
roles: {agent: assistant}
calls: {name: tool, arguments: parameters}
```

An unknown key is an error that names it (and the closest known key), like a recipe's.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .calls import CallParseError, from_tool_calls, normalize_call, to_tool_calls
from .formats import FormatError, agent_messages, tool_list
from .io import InputError
from .record import Record

# what a role tag may mean
ROLE_TARGETS = ("system", "user", "assistant", "tool", "tool_call")
DEFAULT_ROLES = {role: role for role in ROLE_TARGETS}


@dataclass(frozen=True)
class RowMapping:
    r"""
    How to read rows of a shape no built-in format has. Loaded from a mapping file with `load_mapping`; the file's
    sections are `columns` (the first six fields), `tags` (`role_tag`, `content_tag`), `roles` and `calls`
    (`name`, `arguments`).

    Parameters:
        id (`str`, *optional*, defaults to `"id"`):
            Column holding the row's id (`row-N` when the row has none).
        query (`str`, *optional*, defaults to `"query"`):
            Column holding the conversation before the answer: a string (one user turn) or a list of turns (read
            with `role_tag`, `content_tag` and `roles`).
        tools (`str`, *optional*, defaults to `"tools"`):
            Column holding the tools: a list or a JSON string of OpenAI tools or bare `{name, description,
            parameters}` objects (JSON-Schema or xlam-style parameters). `null`: the rows offer no tools.
        answers (`str`, *optional*, defaults to `"answers"`):
            Column holding the calls the final assistant turn makes: a list of calls, one call, or a JSON string of
            either, each call read with `calls`. They also become the row's `reference`. `null`: the query holds the
            whole conversation. A dotted path (`output.calls`) reaches into nested objects.
        system (`str`, *optional*):
            Column holding a system prompt, placed first.
        response (`str`, *optional*):
            Column holding a distilled response (raw assistant text with a CoT block and calls, as `xlam_cot`'s):
            the final assistant turn is that text, the answers stay the reference. Rows without it answer with
            the answer calls.
        role_tag (`str`, *optional*, defaults to `"role"`):
            Key of a turn's role tag.
        content_tag (`str`, *optional*, defaults to `"content"`):
            Key of a turn's content.
        roles (`dict[str, str]`, *optional*):
            Role tags of the data → `system`, `user`, `assistant`, `tool` (a call result) or `tool_call` (a turn
            holding a call, read with `calls`). Added to the defaults, which map those five names to themselves.
        call_name (`str`, *optional*, defaults to `"name"`):
            Key of a call's function name (`calls.name` in the file).
        call_arguments (`str`, *optional*, defaults to `"arguments"`):
            Key of a call's arguments, an object or a JSON string (`calls.arguments` in the file).
    """

    id: str = "id"
    query: str = "query"
    tools: str | None = "tools"
    answers: str | None = "answers"
    system: str | None = None
    response: str | None = None
    role_tag: str = "role"
    content_tag: str = "content"
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    call_name: str = "name"
    call_arguments: str = "arguments"

    def call(self, value: Any, where: str) -> list[dict]:
        """A call turn's content or the answers (`where == "answers"`) → tool_calls, read with this mapping's call
        keys: a call object, a list of them, or a JSON string of either."""
        reason = "invalid_answers" if where == "answers" else "call_parse_error"
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                if where == "answers":
                    raise FormatError("invalid_answers_json", "'answers' is not valid JSON") from None
                raise FormatError("invalid_function_call", f"{where}: a call turn must hold a call (JSON), got "
                                                           "text") from None
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list):
            raise FormatError("answers_not_list" if where == "answers" else reason,
                              f"{where}: calls must be a list or an object, got {type(value).__name__}")
        calls = []
        for item in value:
            if not isinstance(item, dict) or self.call_name not in item:
                keys = ", ".join(sorted(map(str, item))[:8]) if isinstance(item, dict) else type(item).__name__
                raise FormatError(reason, f"{where}: a call without {self.call_name!r} (calls.name of the mapping); "
                                          f"got {keys}")
            try:
                calls.append(normalize_call({"name": item[self.call_name],
                                             "arguments": item.get(self.call_arguments)}))
            except CallParseError as e:
                raise FormatError(reason, f"{where}: {e.message}") from None
        return to_tool_calls(calls)

    def convert(self, row: dict, line: int = 0) -> Record:
        """One row → canonical record."""
        query = _get(row, self.query)
        if query is None:
            raise FormatError("missing_field", f"missing field: {self.query} (columns.query of the mapping)")
        if isinstance(query, str):
            messages = [{"role": "user", "content": query}]
        elif isinstance(query, list):
            messages = agent_messages(query, self.roles, self.role_tag, self.content_tag, call=self.call,
                                      field=self.query)
        else:
            raise FormatError("invalid_query", f"'{self.query}' must be a string or a list of turns, got "
                                               f"{type(query).__name__}")
        system = _get(row, self.system) if self.system else None
        if isinstance(system, str) and system.strip():
            messages.insert(0, {"role": "system", "content": system})
        row_id = _get(row, self.id)
        record = {"id": str(row_id if row_id is not None else f"row-{line}"), "tools": tool_list(_get(row, self.tools)),
                  "messages": messages}
        if self.answers is None:
            return record
        answers = _get(row, self.answers)
        if answers is None:
            raise FormatError("missing_field", f"missing field: {self.answers} (columns.answers of the mapping)")
        tool_calls = self.call(answers, "answers")
        response = _get(row, self.response) if self.response else None
        if response is not None:
            if not isinstance(response, str):
                raise FormatError("invalid_response", f"'{self.response}' must be a string")
            messages.append({"role": "assistant", "content": response})
        else:
            messages.append({"role": "assistant", "tool_calls": tool_calls})
        # every assistant turn needs a reference entry: the conversation's own turns are ground truth, as in xlam
        record["reference"] = [from_tool_calls(m.get("tool_calls") or []) for m in messages[:-1]
                               if m["role"] == "assistant"] + [from_tool_calls(tool_calls)]
        return record


def _get(row: dict, path: str | None) -> Any:
    """`row[path]`, or for a dotted path absent as a key, the nested value (`None` when any step is missing)."""
    if path is None:
        return None
    if path in row:
        return row[path]
    value: Any = row
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


# the file's layout: section → {file key: RowMapping field}
_SECTIONS = {
    "columns": {k: k for k in ("id", "query", "tools", "answers", "system", "response")},
    "tags": {"role_tag": "role_tag", "content_tag": "content_tag"},
    "calls": {"name": "call_name", "arguments": "call_arguments"},
}
_OPTIONAL = {"tools", "answers", "system", "response"}  # columns that may be null


def _unknown(key: str, known, where: str) -> InputError:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return InputError(f"{where}: unknown key '{key}'{hint}; known: {', '.join(known)}")


def parse_mapping(spec: Any, source: str = "mapping") -> RowMapping:
    """The mapping file's content (a dict) → `RowMapping`; any unknown key or bad value is an `InputError` naming
    it."""
    if not isinstance(spec, dict):
        raise InputError(f"{source}: a mapping must be an object with sections {', '.join([*_SECTIONS, 'roles'])}")
    values: dict[str, Any] = {}
    for section, body in spec.items():
        if section == "roles":
            if not isinstance(body, dict):
                raise InputError(f"{source}: `roles` must map role tags to one of {', '.join(ROLE_TARGETS)}")
            for tag, target in body.items():
                if target not in ROLE_TARGETS:
                    raise InputError(f"{source}: roles.{tag}: {target!r} is not one of {', '.join(ROLE_TARGETS)}")
            values["roles"] = {**DEFAULT_ROLES, **body}
            continue
        if section not in _SECTIONS:
            raise _unknown(str(section), [*_SECTIONS, "roles"], source)
        if not isinstance(body, dict):
            raise InputError(f"{source}: `{section}` must be an object")
        for key, value in body.items():
            if key not in _SECTIONS[section]:
                raise _unknown(str(key), list(_SECTIONS[section]), f"{source}: `{section}`")
            name = _SECTIONS[section][key]
            if not (isinstance(value, str) and value) and not (value is None and name in _OPTIONAL):
                raise InputError(f"{source}: {section}.{key} must be a column/key name"
                                 f"{' or null' if name in _OPTIONAL else ''}, got {value!r}")
            values[name] = value
    return RowMapping(**values)


def load_mapping(path: str | os.PathLike) -> RowMapping:
    """Read a mapping file (YAML, or JSON, which YAML reads too)."""
    import yaml

    try:
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the mapping file ({e})") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not YAML/JSON ({e})") from None
    return parse_mapping(spec, str(path))


