"""Base Quality Check and Answer Check (paper §3.3; outcomes and reason codes in docs/data.md).

`check_record` sends every canonical record to exactly one outcome:

- `rejected`: fails the Base Quality Check (unusable: no query, bad tool schemas, no assistant turn, CoT missing
  or unclosed, call block that does not parse) — `reason` says which;
- `hard`: usable, but the produced calls fail the Answer Check against the reference (wrong function, missing
  or unknown parameter, wrong value, format defect) — the HDR loop's hard set;
- `base`: passes both.

Every failure has a stable code (`REASONS`) and a human message naming the turn, call and parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .calls import (
    CallParseError,
    from_tool_calls,
    split_assistant_output,
    to_tool_calls,
)
from .record import Record, SharedTool

REASONS = {
    # reader / loader (record could not even be converted)
    "invalid_json": "the line is not valid JSON",
    "invalid_utf8": "the line is not UTF-8",
    "not_an_object": "the record is not a JSON object",
    "missing_field": "a required field is missing",
    "invalid_tools_json": "'tools' is a string that is not valid JSON",
    "invalid_answers_json": "'answers' is a string that is not valid JSON",
    "answers_not_list": "'answers' is not a list of calls",
    "invalid_answers": "an entry of 'answers' is not a call",
    "invalid_tool": "a tool is not an object",
    "invalid_response": "the distilled response is not a string",
    "messages_not_list": "'messages' is not a list",
    "unsupported_bfcl": "a multi-turn BFCL question (only single-turn AST categories load)",
    "malformed_record": "a field has the wrong shape",
    "invalid_role": "a conversation turn has a role tag the format does not define",
    "invalid_turn_order": "conversation turns do not alternate user/observation and assistant/function_call",
    "invalid_function_call": "a function_call turn holds text instead of calls",
    "invalid_chatml": "ChatML text that is not a sequence of closed <|im_start|>…<|im_end|> turns",
    "unwritable_record": "a value JSON cannot hold (nesting too deep for the encoder, a non-JSON type)",
    # Base Quality Check
    "tools_not_list": "'tools' is not a list",
    "invalid_tool_schema": "a tool is not a valid function schema",
    "invalid_message": "a message is not an object with a known role",
    "empty_query": "no user message with non-empty content",
    "no_assistant_turn": "no assistant turn",
    "empty_assistant_turn": "an assistant turn has no reasoning, calls or content",
    "missing_cot": "an assistant turn has no CoT",
    "unclosed_cot": "a CoT block is opened but never closed",
    "text_before_cot": "text before the CoT block",
    "multiple_cot": "more than one CoT block in one turn",
    "call_parse_error": "a call block does not parse",
    "positional_arguments": "a call uses positional arguments",
    "unclosed_tool_call": "a <tool_call> block is not closed",
    "duplicate_calls": "calls both as text and as structured tool_calls",
    "reference_mismatch": "the reference does not have one entry per assistant turn",
    # Answer Check
    "format_leading_space": "xlam format defect: a space between '[' and the function name",
    "wrong_call_count": "a different number of calls than the reference",
    "wrong_function": "a call to a function the reference does not call",
    "unknown_function": "a call to a function that is not among the tools",
    "missing_required": "a required parameter is missing",
    "missing_parameter": "a parameter of the reference is missing",
    "unknown_parameter": "a parameter that the tool schema does not define",
    "unexpected_parameter": "a parameter the reference does not set",
    "wrong_type": "a value of the wrong type",
    "wrong_value": "a value different from the reference",
    "expected_call": "a text answer where the reference calls a function",
    "unexpected_call": "a call where the reference answers in text",
}
ANSWER_REASONS = frozenset(list(REASONS)[list(REASONS).index("format_leading_space"):])


@dataclass
class CheckResult:
    ok: bool
    reason: str | None = None
    message: str | None = None

    def __bool__(self) -> bool:
        return self.ok


OK = CheckResult(True)
_MISSING = object()


def _fail(reason: str, message: str) -> CheckResult:
    return CheckResult(False, reason, message)


@dataclass
class CheckOutcome:
    outcome: str  # "base" | "hard" | "rejected"
    record: dict  # the normalised record (base/hard) or the input record (rejected)
    reason: str | None = None
    message: str | None = None
    fixes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- values

_TYPE_CHECKS = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _type_ok(value: Any, schema: dict) -> bool:
    types = schema.get("type") if isinstance(schema, dict) else None
    if types is None:
        return True
    for t in types if isinstance(types, list) else [types]:
        check = _TYPE_CHECKS.get(t)
        if check is None or check(value):
            return True
    return False


def _coerce(value: Any, schema: dict) -> Any:
    """Type normalisation: numeric/boolean strings where the schema wants numbers/booleans."""
    t = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(value, str) and t in ("integer", "number"):
        try:
            number = float(value)
            return int(number) if number.is_integer() else number
        except ValueError:
            return value
    if isinstance(value, str) and t == "boolean" and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


# BFCL's own string normalisation (bfcl_eval ast_checker.standardize_string), so that our verdict on BFCL
# references is BFCL's verdict.
_BFCL_STRIP = re.compile(r"[ \,\.\/\-\_\*\^]")


def _std(value: Any) -> Any:
    return _BFCL_STRIP.sub("", value).lower().replace("'", '"') if isinstance(value, str) else value


def _bfcl_dict(value: dict, alternatives: list) -> bool:
    for alt in alternatives:
        if alt == "" or not isinstance(alt, dict):
            continue
        if all(k in alt and _std(v) in [_std(a) for a in alt[k]] for k, v in value.items()) and all(
            k in value or "" in alts for k, alts in alt.items()
        ):
            return True
    return False


def _bfcl_match(value: Any, alternatives: list, schema: dict) -> bool:
    """BFCL's acceptance rule for one parameter: `value` matches one of the `alternatives`."""
    t = schema.get("type")
    items = schema.get("items") or {}
    if t == "object" and isinstance(value, dict):
        return _bfcl_dict(value, alternatives)
    if t == "array" and items.get("type") == "object" and isinstance(value, list):
        return any(
            isinstance(alt, list) and len(alt) == len(value)
            and all(isinstance(v, dict) and _bfcl_dict(v, [a]) for v, a in zip(value, alt))
            for alt in alternatives
        )
    if isinstance(value, str):
        return _std(value) in [_std(a) for a in alternatives if isinstance(a, str)]
    if isinstance(value, list):
        return [_std(v) for v in value] in [[_std(x) for x in a] for a in alternatives if isinstance(a, list)]
    if isinstance(value, bool):
        return any(a is value for a in alternatives)
    return value in [a for a in alternatives if not isinstance(a, bool)]


# ------------------------------------------------------------------------------------------- calls


def _tool_index(tools: list) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}


def _compare_call(call: dict, ref: dict | None, params: dict | None, where: str) -> CheckResult:
    """One produced call against one reference call (`ref=None`: against the tool schema only)."""
    name, args = call["name"], call["arguments"]
    if ref is not None and name != ref["name"]:
        return _fail("wrong_function", f"{where}: calls {name!r}, the reference calls {ref['name']!r}")
    if params is None:
        return _fail("unknown_function", f"{where}: {name!r} is not among the tools")
    props = params.get("properties") or {}
    for p in params.get("required") or []:
        if p not in args:
            return _fail("missing_required", f"{where}: {name}() misses required parameter {p!r}")
    for p in args:
        if p not in props:
            return _fail("unknown_parameter", f"{where}: {name}() has no parameter {p!r}")
    if ref is None:
        for p, v in args.items():
            if not _type_ok(_coerce(v, props[p]), props[p]):
                return _fail("wrong_type", f"{where}: {name}({p}=…) expects {props[p].get('type')}, got "
                                           f"{type(v).__name__}")
        return OK
    alternatives = ref.get("alternatives")
    if alternatives is not None:
        return _compare_bfcl(name, args, alternatives, props, where)
    expected = ref.get("arguments") or {}
    for p, v in args.items():
        schema = props[p]
        value = _coerce(v, schema)
        if p not in expected:
            if "default" in schema and _equal(value, _coerce(schema["default"], schema)):
                continue
            return _fail("unexpected_parameter", f"{where}: {name}() sets {p}={v!r}, the reference does not")
        if not _equal(value, _coerce(expected[p], schema)):
            if not _type_ok(value, schema):
                return _fail("wrong_type", f"{where}: {name}({p}=…) expects {schema.get('type')}, got "
                                           f"{type(v).__name__}")
            return _fail("wrong_value", f"{where}: {name}({p}={v!r}), the reference has {expected[p]!r}")
    for p, v in expected.items():
        if p not in args:
            schema = props.get(p, {})
            if "default" in schema and _equal(_coerce(v, schema), _coerce(schema["default"], schema)):
                continue
            return _fail("missing_parameter", f"{where}: {name}() misses {p}={v!r} of the reference")
    return OK


def _compare_bfcl(name: str, args: dict, alternatives: dict, props: dict, where: str) -> CheckResult:
    for p, v in args.items():
        if p not in alternatives:
            return _fail("unexpected_parameter", f"{where}: {name}() sets {p}={v!r}, the reference does not")
        schema, alts = props[p], alternatives[p]
        if schema.get("type") == "number" and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)  # BFCL lets an int stand for a float
        if not _type_ok(v, schema):
            # BFCL's "variable" case: a value of the type of the first listed alternative (often None, for
            # "null is fine") is compared as given
            first = next((a for a in alts if a != ""), _MISSING)
            if first is not _MISSING and type(v) is type(first):
                if v in alts:
                    continue
                return _fail("wrong_value", f"{where}: {name}({p}={v!r}), expected one of {alts!r}")
            return _fail("wrong_type", f"{where}: {name}({p}=…) expects {schema.get('type')}, got "
                                       f"{type(v).__name__}")
        if not _bfcl_match(v, alts, schema):
            return _fail("wrong_value", f"{where}: {name}({p}={v!r}), expected one of {alts!r}")
    for p, alts in alternatives.items():
        if p not in args and "" not in alts:
            return _fail("missing_parameter", f"{where}: {name}() misses {p!r} (expected one of {alts!r})")
    return OK


def _assign(calls: list, refs: list, tools: dict, where: str) -> CheckResult:
    """Order-free matching of parallel calls to reference calls (backtracking; n is tiny)."""
    failure: list[CheckResult] = []
    return OK if _solve(0, calls, refs, tools, where, [False] * len(refs), failure) else failure[0]


def _solve(i: int, calls: list, refs: list, tools: dict, where: str, used: list, failure: list) -> bool:
    # A plain function, not a closure calling itself: such a closure is a reference cycle per record, which only
    # the cyclic GC frees (issue 11: memory grew with the input).
    if i == len(calls):
        return True
    for j, ref in enumerate(refs):
        if used[j]:
            continue
        r = _compare_call(calls[i], ref, tools.get(calls[i]["name"]), f"{where}, call {i + 1}")
        if r.ok:
            used[j] = True
            if _solve(i + 1, calls, refs, tools, where, used, failure):
                return True
            used[j] = False
        elif not failure or (failure[0].reason == "wrong_function" != r.reason):
            failure[:] = [r]  # keep the most informative failure: prefer a same-name mismatch
    return False


def answer_check(
    calls: list[dict] | None,
    reference: list[dict] | None,
    tools: list[dict],
    issues: list[str] | tuple = (),
    fix: bool = False,
    where: str = "turn 1",
) -> CheckResult:
    """Answer Check of one assistant turn.

    Args:
        calls: the produced calls (`{"name", "arguments"}` or OpenAI `tool_calls` entries), `None` for a text
            answer.
        reference: this turn's reference calls; `[]` means "answer in text"; `None` (unknown) checks the calls
            against the tool schemas only. A reference call with `alternatives` (from BFCL possible answers) is
            matched with BFCL's rules: any listed value, `""` = may be omitted, BFCL string normalisation.
        tools: canonical tools of the record.
        issues: format issues reported by the call parser (`"leading_space"`); fail unless `fix`.

    Returns:
        `CheckResult` with `.ok`, `.reason` (a `REASONS` code) and `.message`.
    """
    return _answer_check(from_tool_calls(calls) if calls is not None else None, reference, tools, issues, fix, where)


def _answer_check(calls, reference, tools, issues, fix, where) -> CheckResult:
    """`answer_check` of calls already in `{"name", "arguments": dict}` form."""
    tool_index = _tool_index(tools)
    if "leading_space" in issues and not fix:
        return _fail("format_leading_space", f"{where}: '[ func(...)]' has a space after '[' (use --fix)")
    if reference is not None and not calls and reference:
        return _fail("expected_call", f"{where}: answers in text, the reference calls "
                                      f"{', '.join(r['name'] for r in reference)}")
    if not calls:
        return OK
    if reference is None:
        for i, call in enumerate(calls):
            r = _compare_call(call, None, tool_index.get(call["name"]), f"{where}, call {i + 1}")
            if not r.ok:
                return r
        return OK
    if not reference:
        return _fail("unexpected_call", f"{where}: calls {calls[0]['name']!r}, the reference answers in text")
    if len(calls) != len(reference):
        return _fail("wrong_call_count", f"{where}: {len(calls)} call(s), the reference has {len(reference)}")
    return _assign(calls, reference, tool_index, where)


# ------------------------------------------------------------------------------------------- records

_ROLES = {"system", "user", "assistant", "tool", "developer"}


def _tools_ok(tools: Any) -> CheckResult:
    if not isinstance(tools, list):
        return _fail("tools_not_list", f"'tools' must be a list, got {type(tools).__name__}")
    for i, tool in enumerate(tools):
        if type(tool) is SharedTool and tool.schema_ok:
            continue  # checked when an earlier record offered it
        fn = tool.get("function") if isinstance(tool, dict) else None
        params = fn.get("parameters") if isinstance(fn, dict) else None
        if not (isinstance(fn, dict) and isinstance(fn.get("name"), str) and fn["name"] and isinstance(params, dict)):
            return _fail("invalid_tool_schema", f"tool {i + 1}: needs function.name and function.parameters")
        props, required = params.get("properties", {}), params.get("required", [])
        if params.get("type", "object") != "object" or not isinstance(props, dict) or not isinstance(required, list):
            return _fail("invalid_tool_schema", f"tool {fn['name']!r}: parameters must be an object schema")
        if not all(isinstance(r, str) for r in required):
            return _fail("invalid_tool_schema", f"tool {fn['name']!r}: 'required' must list parameter names")
        missing = [r for r in required if r not in props]
        if missing:
            return _fail("invalid_tool_schema", f"tool {fn['name']!r}: required {missing} not in properties")
        if type(tool) is SharedTool:
            tool.schema_ok = True
    return OK


def _has_text(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):  # content parts
        return any(isinstance(p, dict) and str(p.get("text", "")).strip() for p in content)
    return False


def normalise_assistant(msg: dict, cot_start: str, cot_end: str) -> tuple[dict, list[str]]:
    """Return the assistant message with CoT in `reasoning_content` and calls as structured `tool_calls`."""
    new, issues, _ = _normalise_assistant(msg, cot_start, cot_end)
    return new, issues


def _normalise_assistant(msg: dict, cot_start: str, cot_end: str) -> tuple[dict, list[str], list[dict] | None]:
    """`normalise_assistant`, also returning the calls as `{"name", "arguments"}` (None for a text turn)."""
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


def check_record(
    record: Record,
    fix: bool = False,
    require_cot: bool = True,
    cot_start: str = "<think>",
    cot_end: str = "</think>",
) -> CheckOutcome:
    """Run the Base Quality Check, then the Answer Check of every assistant turn.

    Args:
        record: a canonical record (`balancetrl.data.record.Record`, docs/data.md), as the loaders produce it.
        fix: repair fixable format defects (the xlam `[ func(...)]` space) instead of failing; repaired
            defects are listed in `outcome.fixes`.
        require_cot: every assistant turn must carry a CoT (the paper's data); set False for data without CoT.
        cot_start, cot_end: CoT markers inside raw assistant text.

    Returns:
        `CheckOutcome(outcome="base"|"hard"|"rejected", record, reason, message, fixes)`; for base/hard the record
        is normalised (CoT in `reasoning_content`, calls as `tool_calls` with dict arguments).
    """

    def reject(reason: str, message: str) -> CheckOutcome:
        return CheckOutcome("rejected", record, reason, message)

    if not isinstance(record, dict):
        return reject("not_an_object", "the record is not an object")
    r = _tools_ok(record.get("tools", []))
    if not r:
        return reject(r.reason, r.message)
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("role") in _ROLES for m in messages):
        return reject("invalid_message", "'messages' must be a list of objects with role in "
                                         f"{sorted(_ROLES)}")
    if not any(m["role"] == "user" and _has_text(m.get("content")) for m in messages):
        return reject("empty_query", "no user message with non-empty content")
    normalised, turn_issues, turn_calls = [], [], []
    for m in messages:
        if m["role"] != "assistant":
            normalised.append(m)
            continue
        turn = len(turn_issues) + 1
        try:
            new, issues, calls = _normalise_assistant(m, cot_start, cot_end)
        except CallParseError as e:
            return reject(e.reason, f"turn {turn}: {e.message}")
        except (TypeError, AttributeError, ValueError, RecursionError) as e:  # a field of the wrong shape
            return reject("malformed_record", f"turn {turn}: {type(e).__name__}: {str(e)[:200]}")
        if not (new.get("reasoning_content") or new.get("tool_calls") or _has_text(new.get("content"))):
            return reject("empty_assistant_turn", f"turn {turn}: no reasoning, calls or content")
        if require_cot and not (new.get("reasoning_content") or "").strip():
            return reject("missing_cot", f"turn {turn}: no {cot_start}…{cot_end} reasoning")
        normalised.append(new)
        turn_issues.append(issues)
        turn_calls.append(calls)
    if not turn_issues:
        return reject("no_assistant_turn", "the record has no assistant turn")
    reference = record.get("reference")
    if reference is not None and (not isinstance(reference, list) or len(reference) != len(turn_issues)):
        n = len(reference) if isinstance(reference, list) else type(reference).__name__
        return reject("reference_mismatch", f"{n} reference entries for {len(turn_issues)} assistant turn(s)")
    out = dict(record)
    out["messages"] = normalised
    fixes: list[str] = []
    for turn, (issues, calls) in enumerate(zip(turn_issues, turn_calls), start=1):
        ref = reference[turn - 1] if reference is not None else None
        try:
            result = _answer_check(calls, ref, out.get("tools", []), issues, fix, f"turn {turn}")
        except (CallParseError, KeyError, TypeError, AttributeError, RecursionError) as e:  # a malformed reference
            return reject("reference_mismatch", f"turn {turn}: malformed reference ({e})")
        if fix:
            fixes.extend(issues)  # repaired even if the turn then fails on content
        if not result.ok:
            return CheckOutcome("hard", out, result.reason, result.message, fixes)
    return CheckOutcome("base", out, fixes=fixes)
