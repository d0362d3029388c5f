"""The canonical record: what every loader produces and every check consumes (docs/data.md explains it in full).

One record is one conversation with tools, in TRL's conversational tool-calling shape plus a `reference`:

```python
{
    "id": "xlam-17",
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "...",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "reasoning_content": "The user wants ...",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "name": "get_weather", "content": "{\\"temp\\": 21}"},
        {"role": "assistant", "reasoning_content": "...", "content": "It is 21 °C in Paris."},
    ],
    "reference": [[{"name": "get_weather", "arguments": {"city": "Paris"}}], []],
}
```

Loaders may leave an assistant turn as raw text in `content` (`<think>…</think>` and a call block); the Base
Quality Check parses it, and the records it writes to `base.jsonl`/`hard.jsonl` are normalised: CoT in
`reasoning_content`, calls as `tool_calls` with dict arguments.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class FunctionSchema(TypedDict):
    name: str
    description: NotRequired[str]
    parameters: dict[str, Any]  # JSON Schema of an object: {"type": "object", "properties": {...}, "required": [...]}


class Tool(TypedDict):
    type: Literal["function"]
    function: FunctionSchema


class FunctionCall(TypedDict):
    name: str
    arguments: dict[str, Any]  # a dict in canonical records (OpenAI's JSON-string arguments are decoded)


class ToolCall(TypedDict):
    type: Literal["function"]
    function: FunctionCall


class Message(TypedDict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: NotRequired[str | list | None]  # list: OpenAI content parts ({"type": "text", "text": ...})
    reasoning_content: NotRequired[str]  # assistant only: the CoT, without its markers
    tool_calls: NotRequired[list[ToolCall]]  # assistant only
    name: NotRequired[str]  # tool only: the function whose result this is
    tool_call_id: NotRequired[str]  # tool only, when the source has ids


class ReferenceCall(TypedDict):
    name: str
    arguments: dict[str, Any]  # one accepted value per parameter
    # BFCL possible answers: {param: [accepted values]}, `""` among them = may be omitted; matched with BFCL's rules
    alternatives: NotRequired[dict[str, list]]


class Record(TypedDict):
    id: str
    tools: list[Tool]
    messages: list[Message]
    # One entry per assistant turn, in order: the calls that turn must make (`[]`: it must answer in text).
    # Absent: the calls are checked against the tool schemas only (no hard set can be formed).
    reference: NotRequired[list[list[ReferenceCall]]]


class SharedTool(dict):
    """A canonical tool (`Tool`) converted once and shared by every record that offers it.

    Datasets repeat the same tools across many rows; a shared tool keeps its JSON encoding (written into every
    output line as is) and whether it passed the schema check, so neither is redone per record. Nothing may
    mutate a shared tool: copy it first.
    """

    __slots__ = ("json", "schema_ok")

    def __init__(self, tool: dict):
        super().__init__(tool)
        self.json: str | None = None
        self.schema_ok = False

    def __reduce__(self):  # copies and pickles are plain dicts
        return dict, (dict(self),)
