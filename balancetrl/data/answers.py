"""Answer Check (paper §3.3): the calls of one assistant turn against the turn's reference calls.

A call fails on the first difference: wrong function, missing or unknown parameter, wrong type or value (after type
normalisation: "3" for an integer is 3), a format defect. Parallel calls match the reference in any order.
References from BFCL possible answers (`alternatives`) follow BFCL's rules (`bfcl_match`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cot import DEFAULT_COT
from .bfcl_match import bfcl_match
from .calls import CallParseError, from_tool_calls, parse_assistant_output
from .reasons import OK, CheckResult, fail

_MISSING = object()

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


def _tool_index(tools: list) -> dict[str, dict]:
    return {t["function"]["name"]: t["function"].get("parameters") or {} for t in tools}


def _compare_call(call: dict, ref: dict | None, params: dict | None, where: str) -> CheckResult:
    """One produced call against one reference call (`ref=None`: against the tool schema only)."""
    name, args = call["name"], call["arguments"]
    if ref is not None and name != ref["name"]:
        return fail("wrong_function", f"{where}: calls {name!r}, the reference calls {ref['name']!r}")
    if params is None:
        return fail("unknown_function", f"{where}: {name!r} is not among the tools")
    props = params.get("properties") or {}
    for p in params.get("required") or []:
        if p not in args:
            return fail("missing_required", f"{where}: {name}() misses required parameter {p!r}")
    for p in args:
        if p not in props:
            return fail("unknown_parameter", f"{where}: {name}() has no parameter {p!r}")
    if ref is None:
        for p, v in args.items():
            if not _type_ok(_coerce(v, props[p]), props[p]):
                return fail("wrong_type", f"{where}: {name}({p}=…) expects {props[p].get('type')}, got "
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
            return fail("unexpected_parameter", f"{where}: {name}() sets {p}={v!r}, the reference does not")
        if not _equal(value, _coerce(expected[p], schema)):
            if not _type_ok(value, schema):
                return fail("wrong_type", f"{where}: {name}({p}=…) expects {schema.get('type')}, got "
                                           f"{type(v).__name__}")
            return fail("wrong_value", f"{where}: {name}({p}={v!r}), the reference has {expected[p]!r}")
    for p, v in expected.items():
        if p not in args:
            schema = props.get(p, {})
            if "default" in schema and _equal(_coerce(v, schema), _coerce(schema["default"], schema)):
                continue
            return fail("missing_parameter", f"{where}: {name}() misses {p}={v!r} of the reference")
    return OK


def _compare_bfcl(name: str, args: dict, alternatives: dict, props: dict, where: str) -> CheckResult:
    for p, v in args.items():
        if p not in alternatives:
            return fail("unexpected_parameter", f"{where}: {name}() sets {p}={v!r}, the reference does not")
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
                return fail("wrong_value", f"{where}: {name}({p}={v!r}), expected one of {alts!r}")
            return fail("wrong_type", f"{where}: {name}({p}=…) expects {schema.get('type')}, got "
                                       f"{type(v).__name__}")
        if not bfcl_match(v, alts, schema):
            return fail("wrong_value", f"{where}: {name}({p}={v!r}), expected one of {alts!r}")
    for p, alts in alternatives.items():
        if p not in args and "" not in alts:
            return fail("missing_parameter", f"{where}: {name}() misses {p!r} (expected one of {alts!r})")
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
    return answer_check_parsed(from_tool_calls(calls) if calls is not None else None, reference, tools, issues, fix, where)


def answer_check_parsed(calls, reference, tools, issues, fix, where) -> CheckResult:
    """`answer_check` of calls already in `{"name", "arguments": dict}` form (as the Base Quality Check leaves them)."""
    tool_index = _tool_index(tools)
    if "leading_space" in issues and not fix:
        return fail("format_leading_space", f"{where}: '[ func(...)]' has a space after '[' (use --fix)")
    if reference is not None and not calls and reference:
        return fail("expected_call", f"{where}: answers in text, the reference calls "
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
        return fail("unexpected_call", f"{where}: calls {calls[0]['name']!r}, the reference answers in text")
    if len(calls) != len(reference):
        return fail("wrong_call_count", f"{where}: {len(calls)} call(s), the reference has {len(reference)}")
    return _assign(calls, reference, tool_index, where)


@dataclass
class GeneratedAnswer:
    """A generated assistant turn, parsed, and its Answer Check verdict."""

    verdict: str  # "passed" or the rejection reason (`parse:<code>`, `no_cot`, `empty_answer`, an answer-check reason)
    reasoning: str | None = None
    calls: list | None = None
    content: str = ""


def check_generated(text: str, reference: list | None, tools: list, require_cot: bool,
                    cot: tuple[str, str] = DEFAULT_COT) -> GeneratedAnswer:
    """The free, deterministic Answer Check of generated text (HDR's gate, held-out evaluation): parsed without
    evaluating it, then its calls against `reference` (no reference: any parseable, non-empty answer passes)."""
    try:
        reasoning, calls, content = parse_assistant_output(text, *cot)
    except CallParseError as e:
        return GeneratedAnswer(f"parse:{getattr(e, 'reason', 'error')}")
    except (ValueError, TypeError, RecursionError):  # model output the parsers did not foresee: never stop training
        return GeneratedAnswer("parse:error")
    answer = GeneratedAnswer("passed", reasoning, calls, content)
    if require_cot and not reasoning:
        answer.verdict = "no_cot"
    elif calls is None and not content.strip():
        answer.verdict = "empty_answer"
    elif reference is not None:
        try:
            result = answer_check(calls, reference, tools)
        except (ValueError, TypeError, RecursionError):
            answer.verdict = "parse:error"
            return answer
        if not result.ok:
            answer.verdict = result.reason or "answer_check"
    return answer
