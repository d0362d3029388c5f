"""Base Quality Check (paper §3.3): is a record usable at all?

A usable record has valid tool schemas, a non-empty query, and assistant turns whose CoT is present and closed and
whose call block parses (`normalise_assistant` puts the CoT in `reasoning_content` and the calls in `tool_calls`),
and one reference entry per assistant turn. What it hands on is what the Answer Check reads: `QualityPass`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cot import DEFAULT_COT
from .calls import CallParseError, from_tool_calls, split_assistant_output, to_tool_calls
from .reasons import OK, CheckResult, fail
from .record import SharedTool


@dataclass
class QualityPass:
    """A record that passed: its messages with the assistant turns normalised and, per assistant turn, the format
    issues of its call block and its calls (`{"name", "arguments"}`, None for a text answer)."""

    messages: list[dict]
    issues: list[list[str]]
    calls: list[list[dict] | None]


_ROLES = {"system", "user", "assistant", "tool", "developer"}


def _tools_ok(tools: Any) -> CheckResult:
    if not isinstance(tools, list):
        return fail("tools_not_list", f"'tools' must be a list, got {type(tools).__name__}")
    for i, tool in enumerate(tools):
        if type(tool) is SharedTool and tool.schema_ok:
            continue  # checked when an earlier record offered it
        fn = tool.get("function") if isinstance(tool, dict) else None
        params = fn.get("parameters") if isinstance(fn, dict) else None
        if not (isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"] and isinstance(params, dict)):
            return fail("invalid_tool_schema", f"tool {i + 1}: needs function.name and function.parameters")
        props, required = params.get("properties", {}), params.get("required", [])
        if params.get("type", "object") != "object" or not isinstance(props, dict) or not isinstance(required, list):
            return fail("invalid_tool_schema", f"tool {fn['name']!r}: parameters must be an object schema")
        if not all(isinstance(r, str) for r in required):
            return fail("invalid_tool_schema", f"tool {fn['name']!r}: 'required' must list parameter names")
        missing = [r for r in required if r not in props]
        if missing:
            return fail("invalid_tool_schema", f"tool {fn['name']!r}: required {missing} not in properties")
        if type(tool) is SharedTool:
            tool.schema_ok = True
    return OK


def _has_text(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):  # content parts
        return any(isinstance(p, dict) and str(p.get("text", "")).strip() for p in content)
    return False


def normalise_assistant(msg: dict, cot_start: str, cot_end: str) -> tuple[dict, list[str], list[dict] | None]:
    """The assistant message with CoT in `reasoning_content` and calls as structured `tool_calls`, the format issues
    of its call block, and its calls as `{"name", "arguments"}` (None for a text answer)."""
    reasoning = msg.get("reasoning_content")
    tool_calls = msg.get("tool_calls") or None
    content = msg.get("content")
    issues: list[str] = []
    calls = from_tool_calls(tool_calls) if tool_calls is not None else None
    if reasoning is not None and not isinstance(reasoning, str):
        raise CallParseError("malformed_record", f"reasoning_content must be a string, got {type(reasoning).__name__}")
    if isinstance(reasoning, str) and (cot_start in reasoning or cot_end in reasoning):
        # e.g. a truncated generation whose opening tag leaked into the CoT field
        if cot_start in reasoning and cot_end not in reasoning:
            raise CallParseError("unclosed_cot", f"reasoning_content holds an unclosed {cot_start}")
        raise CallParseError("multiple_cot", f"reasoning_content holds {cot_start}/{cot_end} markers")
    if isinstance(content, str) and content:
        out = split_assistant_output(content, cot_start, cot_end)
        if out.calls is not None and calls is not None:
            raise CallParseError("duplicate_calls", "calls both in content and in tool_calls")
        if out.reasoning is not None and reasoning:
            raise CallParseError("multiple_cot", "CoT both in content and in reasoning_content")
        reasoning = reasoning or out.reasoning
        calls = calls if calls is not None else out.calls
        content = out.content
        issues = out.issues
    new = {k: v for k, v in msg.items() if k not in ("reasoning_content", "tool_calls", "content")}
    new["role"] = "assistant"
    if reasoning is not None:
        new["reasoning_content"] = reasoning
    if calls is not None:
        new["tool_calls"] = to_tool_calls(calls)
    if content or calls is None:
        new["content"] = content if content is not None else ""
    return new, issues, calls


def quality_check(
    record: Any, require_cot: bool = True, cot_start: str = DEFAULT_COT[0], cot_end: str = DEFAULT_COT[1]
) -> tuple[CheckResult, QualityPass | None]:
    """`(OK, QualityPass)` for a usable record, else `(failure, None)` with a `REASONS` code and a message."""
    if not isinstance(record, dict):
        return fail("not_an_object", "the record is not an object"), None
    r = _tools_ok(record.get("tools", []))
    if not r:
        return r, None
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("role") in _ROLES for m in messages):
        return fail("invalid_message", f"'messages' must be a list of objects with role in {sorted(_ROLES)}"), None
    if not any(m["role"] == "user" and _has_text(m.get("content")) for m in messages):
        return fail("empty_query", "no user message with non-empty content"), None
    passed = QualityPass([], [], [])
    for m in messages:
        if m["role"] != "assistant":
            passed.messages.append(m)
            continue
        turn = len(passed.issues) + 1
        try:
            new, issues, calls = normalise_assistant(m, cot_start, cot_end)
        except CallParseError as e:
            return fail(e.reason, f"turn {turn}: {e.message}"), None
        except (TypeError, AttributeError, ValueError, RecursionError) as e:  # a field of the wrong shape
            return fail("malformed_record", f"turn {turn}: {type(e).__name__}: {str(e)[:200]}"), None
        if not (new.get("reasoning_content") or new.get("tool_calls") or _has_text(new.get("content"))):
            return fail("empty_assistant_turn", f"turn {turn}: no reasoning, calls or content"), None
        if require_cot and not (new.get("reasoning_content") or "").strip():
            return fail("missing_cot", f"turn {turn}: no {cot_start}…{cot_end} reasoning"), None
        passed.messages.append(new)
        passed.issues.append(issues)
        passed.calls.append(calls)
    if not passed.issues:
        return fail("no_assistant_turn", "the record has no assistant turn"), None
    reference = record.get("reference")
    if reference is not None and (not isinstance(reference, list) or len(reference) != len(passed.issues)):
        n = len(reference) if isinstance(reference, list) else type(reference).__name__
        return fail("reference_mismatch", f"{n} reference entries for {len(passed.issues)} assistant turn(s)"), None
    return OK, passed
