"""Function-call syntaxes: parse them into `{"name", "arguments"}` dicts and render them back.

Three syntaxes cover what users meet:

- Python-call lists, BFCL/xlam style: `[get_weather(city="Paris"), f2(x=1)]` (dotted names allowed),
- JSON: a list of `{"name", "arguments"}` objects, or one such object,
- `<tool_call>{...}</tool_call>` blocks (ChatML / Qwen / Hermes).

Everything goes through `ast`/`json`; nothing is ever evaluated. The `<tool_call>` form is the one TRL's Qwen
response template (`trl.chat_template_utils.qwen3_template`) parses; we keep our own small parser for it because
the TRL/transformers parser costs ~75 µs per response (too slow for the 20k records/s check), accepts an unclosed
`<think>` silently and has a fixed CoT marker. tests/test_data_calls.py checks that both agree.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..cot import DEFAULT_COT, UnclosedCot, split_cot
from .io import why_unusable


class CallParseError(ValueError):
    """A call block or assistant output that cannot be parsed. `reason` is a machine-readable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class ParsedCalls:
    calls: list[dict]
    syntax: str  # "python" | "json" | "tool_call"
    issues: list[str] = field(default_factory=list)  # format problems that did not stop parsing


@dataclass
class AssistantOutput:
    """Structured view of one assistant turn's text (see `split_assistant_output`)."""

    reasoning: str | None
    calls: list[dict] | None
    content: str
    syntax: str | None = None
    issues: list[str] = field(default_factory=list)


_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
# The xlam/QwQ defect of paper App. A.2: a space between "[" and the first function name.
_LEADING_SPACE_RE = re.compile(r"^\[[ \t]+[A-Za-z_]")
# What an intended call list looks like; such text must parse, it is not a plain-text answer.
_LOOKS_LIKE_CALLS_RE = re.compile(r'^\[\s*(?:[A-Za-z_][\w.]*\s*\(|\{\s*"name")|^\{\s*"name"\s*:')
_BARE_CALL_RE = re.compile(r"^[A-Za-z_][\w.]*\((?:[A-Za-z_]\w*\s*=.*)?\)$", re.DOTALL)
_PYTHON_LIST_RE = re.compile(r"^\[\s*[A-Za-z_][\w.]*\s*\(")
# BFCL and some generators write JSON literals inside Python calls.
_JSON_NAMES = {"true": True, "false": False, "null": None}
# The size limit of an integer value in a Python call, here and in eval.guard (whose output the multi-turn handler
# parses back here: one limit, or a call passes the guard and fails that re-check). ~4,000 decimal digits: below
# the 4,300 past which Python refuses to print an int (json.dumps and repr included). In bits because a bit length
# is free and counting decimal digits is not.
MAX_INT_BITS = 13_300


def int_too_large(value: int) -> bool:
    return abs(value).bit_length() > MAX_INT_BITS


def _literal(node: ast.AST) -> Any:
    """Convert an AST literal to a JSON-like value (tuples and sets become lists)."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, (bytes, complex)) and node.value is not ...:
        if type(node.value) is int and int_too_large(node.value):
            # a hex literal parses to any size, but no JSON writer can then print it in decimal
            raise CallParseError("call_parse_error", "an integer too large to write as JSON")
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise CallParseError("call_parse_error", "dict unpacking (**) is not a literal value")
        keys = [_literal(k) for k in node.keys]
        if not all(isinstance(k, (str, int, float, bool)) or k is None for k in keys):
            raise CallParseError("call_parse_error", "a dict key is not a string or a number")
        return dict(zip(keys, (_literal(v) for v in node.values)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CallParseError("call_parse_error", "unary sign on a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    raise CallParseError(
        "call_parse_error", f"argument value is not a literal: {ast.dump(node)[:80]}"
    )


def _dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise CallParseError("call_parse_error", "function name is not a (dotted) identifier")


def parse_python_calls(text: str) -> list[dict]:
    """Parse `[f(a=1), g.h(b="x")]` or a single `f(a=1)` with `ast` (keyword arguments only)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise CallParseError("call_parse_error", f"not a Python call list: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes; nesting too deep for the parser
        raise CallParseError("call_parse_error", f"not a Python call list: {why_unusable(e)}") from None
    try:
        return _calls_from_tree(tree)
    except RecursionError:
        raise CallParseError("call_parse_error", "argument values nested too deeply") from None


def _calls_from_tree(tree: ast.Expression) -> list[dict]:
    body = tree.body
    nodes = body.elts if isinstance(body, (ast.List, ast.Tuple)) else [body]
    calls = []
    for node in nodes:
        if not isinstance(node, ast.Call):
            raise CallParseError("call_parse_error", "list element is not a function call")
        if node.args:
            raise CallParseError("positional_arguments", f"{_dotted_name(node.func)}: positional arguments")
        arguments = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise CallParseError("call_parse_error", "**kwargs in a call")
            arguments[kw.arg] = _literal(kw.value)
        calls.append({"name": _dotted_name(node.func), "arguments": arguments})
    return calls


def normalize_call(obj: Any) -> dict:
    """Accept `{"name", "arguments"}`, OpenAI `{"type": "function", "function": {...}}` or `parameters` (Llama);
    arguments given as a JSON string are decoded. Returns a fresh `{"name", "arguments"}` dict."""
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict):
        raise CallParseError("call_parse_error", f"a call must be an object, got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise CallParseError("call_parse_error", "call without a string 'name'")
    arguments = obj.get("arguments", obj.get("parameters"))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise CallParseError("call_parse_error", f"{name}: arguments are not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # an integer past Python's 4,300 digits; deep nesting
            raise CallParseError("call_parse_error",
                                 f"{name}: arguments are not usable JSON ({why_unusable(e)})") from None
    if not isinstance(arguments, dict):
        raise CallParseError("call_parse_error", f"{name}: arguments must be an object")
    return {"name": name, "arguments": arguments}


_JSON_DECODER = json.JSONDecoder()


def python_literal(text: str) -> Any:
    """A Python literal (`[{'a': 1, 'b': None}]`) → JSON-like value, parsed with `ast` and never evaluated."""
    try:
        return _literal(ast.parse(text.strip(), mode="eval").body)
    except SyntaxError as e:
        raise CallParseError("call_parse_error", f"not a Python literal: {e.msg}") from None
    except (RecursionError, MemoryError, ValueError, TypeError) as e:  # too deep, huge ints, unhashable keys
        raise CallParseError("call_parse_error", f"not a usable Python literal: {why_unusable(e)}") from None


def parse_json_values(text: str, separator: str | None = None) -> list:
    """Several JSON values separated by whitespace, e.g. one call object per line (JSON lines in one block), or by
    `separator` and whitespace. Raises `json.JSONDecodeError`."""
    values, pos, end = [], 0, len(text)
    while pos < end:
        value, pos = _JSON_DECODER.raw_decode(text, pos)
        values.append(value)
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if separator is not None and pos < end and text[pos] == separator:
            pos += 1
            while pos < end and text[pos] in " \t\r\n":
                pos += 1
    return values


def parse_json_calls(text: str) -> list[dict]:
    """A JSON list of calls, one call object, or several call objects one per line (a common way to write
    parallel calls inside one `<tool_call>` block) or separated by `;` (Llama 3.x parallel calls, the form vLLM's
    llama3_json parser reads and balancetrl's llama3_training template renders). The argument key may be
    `arguments` or `parameters`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise CallParseError("call_parse_error", f"not valid JSON: {e.msg} (char {e.pos})") from None
        try:
            value = parse_json_values(text, separator=";")
        except json.JSONDecodeError as e2:
            raise CallParseError("call_parse_error", f"not valid JSON: {e2.msg} (char {e2.pos})") from None
        except (ValueError, RecursionError) as e2:  # an integer past Python's 4,300 digits; deep nesting
            raise CallParseError("call_parse_error", f"not usable JSON: {why_unusable(e2)}") from None
        if not all(isinstance(v, dict) for v in value):
            raise CallParseError("call_parse_error", "several JSON values in one block must all be call objects") from None
    except (ValueError, RecursionError) as e:  # an integer past Python's 4,300 digits; deep nesting
        raise CallParseError("call_parse_error", f"not usable JSON: {why_unusable(e)}") from None
    items = value if isinstance(value, list) else [value]
    return [normalize_call(item) for item in items]


def parse_tool_call_blocks(text: str) -> tuple[list[dict], str]:
    """Parse every `<tool_call>…</tool_call>` block; returns (calls, text outside the blocks)."""
    calls = []
    for body in _TOOL_CALL_RE.findall(text):
        calls.extend(parse_json_calls(body.strip()))
    rest = _TOOL_CALL_RE.sub("", text)
    if "<tool_call>" in rest or "</tool_call>" in rest:
        raise CallParseError("unclosed_tool_call", "a <tool_call> block is not closed")
    return calls, rest.strip()


def parse_calls(text: str) -> ParsedCalls:
    """Parse a call block in any supported syntax.

    Raises `CallParseError` (reason `call_parse_error`, `positional_arguments`, `unclosed_tool_call`) when the
    text is not a call block. A Python list with the xlam leading-space defect (`[ func(...)]`) parses, and its
    `issues` contain `"leading_space"` so the Answer Check can flag (or, with `fix`, accept) it.
    """
    stripped = text.strip()
    if "<tool_call>" in stripped:
        calls, rest = parse_tool_call_blocks(stripped)
        if rest:
            raise CallParseError("call_parse_error", "text between or around <tool_call> blocks")
        return ParsedCalls(calls, "tool_call")
    if not stripped:
        raise CallParseError("call_parse_error", "empty call block")
    if stripped[0] == "{" or (stripped[0] == "[" and not _PYTHON_LIST_RE.match(stripped)):
        try:
            return ParsedCalls(parse_json_calls(stripped), "json")
        except CallParseError:
            if stripped[0] == "{" or stripped[1:].lstrip()[:1] in ("{", "]"):
                raise
    issues = ["leading_space"] if _LEADING_SPACE_RE.match(stripped) else []
    return ParsedCalls(parse_python_calls(stripped), "python", issues)


def split_assistant_output(text: str, cot_start: str = DEFAULT_COT[0], cot_end: str = DEFAULT_COT[1]) -> AssistantOutput:
    """Split generated assistant text into reasoning, calls and content; see `parse_assistant_output`."""
    try:
        split = split_cot(text, cot_start, cot_end)
    except UnclosedCot as e:
        raise CallParseError("unclosed_cot", str(e)) from None
    # training reads any number of blocks anywhere in the turn; a well-formed record has one, first
    if split.blocks and text[: split.blocks[0].start].strip():
        raise CallParseError("text_before_cot", f"text before {cot_start}")
    if len(split.blocks) > 1 or cot_end in split.rest:
        raise CallParseError("multiple_cot", "more than one CoT block in one turn")
    reasoning, rest = split.reasoning, split.rest
    if "<tool_call>" in rest or "</tool_call>" in rest:
        calls, content = parse_tool_call_blocks(rest)
        return AssistantOutput(reasoning, calls, content, "tool_call")
    body = rest.strip()
    if _LOOKS_LIKE_CALLS_RE.match(body):
        parsed = parse_calls(body)
        return AssistantOutput(reasoning, parsed.calls, "", parsed.syntax, parsed.issues)
    if _BARE_CALL_RE.match(body):
        # `f(x=1)` without brackets (some prompting models); prose such as "Sure (see below)" stays text
        try:
            return AssistantOutput(reasoning, parse_python_calls(body), "", "python")
        except CallParseError:
            pass
    return AssistantOutput(reasoning, None, body)


def parse_assistant_output(
    text: str, cot_start: str = DEFAULT_COT[0], cot_end: str = DEFAULT_COT[1]
) -> tuple[str | None, list[dict] | None, str]:
    """Turn one generated assistant turn back into `(reasoning, calls, content)`.

    Args:
        text: the decoded assistant text, without the chat template's end-of-turn token.
        cot_start, cot_end: CoT markers. Output that starts inside the CoT (the template pre-wrote `cot_start`)
            is accepted: everything before `cot_end` is reasoning.

    Returns:
        `reasoning`: the stripped CoT text, or `None` when there is no CoT.
        `calls`: `[{"name": str, "arguments": dict}, ...]` from `<tool_call>` blocks, a JSON list or a Python-call
            list, or `None` when the turn is a plain-text answer.
        `content`: the remaining text (the answer or refusal; `""` for a pure call turn).

    Raises:
        `CallParseError` with `.reason` in {`unclosed_cot`, `text_before_cot`, `multiple_cot`, `call_parse_error`,
        `positional_arguments`, `unclosed_tool_call`} when the text is malformed.

    Example:
        >>> parse_assistant_output('<think>Paris.</think>[get_weather(city="Paris")]')
        ('Paris.', [{'name': 'get_weather', 'arguments': {'city': 'Paris'}}], '')
    """
    out = split_assistant_output(text, cot_start, cot_end)
    return out.reasoning, out.calls, out.content


def to_tool_calls(calls: list[dict]) -> list[dict]:
    """`{"name", "arguments"}` → the OpenAI/TRL `tool_calls` entries of an assistant message."""
    return [{"type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]


def from_tool_calls(tool_calls: list) -> list[dict]:
    """OpenAI/TRL `tool_calls` (arguments as dict or JSON string) → `{"name", "arguments"}` dicts."""
    return [normalize_call(tc) for tc in tool_calls]


def render_tool_call_block(calls: list[dict]) -> str:
    """Render calls the way ChatML/Qwen templates do: one `<tool_call>\\n{json}\\n</tool_call>` per call."""
    return "\n".join(
        "<tool_call>\n"
        + json.dumps({"name": c["name"], "arguments": c["arguments"]}, ensure_ascii=False)
        + "\n</tool_call>"
        for c in calls
    )


def render_python_calls(calls: list[dict]) -> str:
    """Render calls as a BFCL-style Python list, `[f(a=1), g(b='x')]` (values via `repr`, parseable by ast)."""
    parts = [
        f"{c['name']}(" + ", ".join(f"{k}={v!r}" for k, v in c["arguments"].items()) + ")" for c in calls
    ]
    return "[" + ", ".join(parts) + "]"
