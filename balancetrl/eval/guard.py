r"""Execution guard: model-chosen calls are checked before bfcl's executor turns them into Python source and
``eval``s it.

bfcl's multi-turn executor builds ``name(key=repr(value), ...)`` strings from the model's calls and evaluates them
in its own module namespace. A function name, an argument name or a value is therefore code. A call is executable
only when its name is one of the entry's functions (those offered to the model, and the Miss Func entries' held-out
ones, which bfcl's own ground truth may call before they are offered), every argument name is an
identifier of that function's schema, and every value is plain data (str, int, finite float, bool, None, and lists
and string-keyed dicts of those), which is what the parsers produce from JSON or ``ast`` literals. Value limits are
the parsers' (``data.calls.MAX_INT_BITS``; depth 32, far below theirs): the multi-turn handler parses the guard's
output back before bfcl runs it, and that re-check must accept everything the guard passed. Anything else rejects
the whole step: nothing of it is executed and the model has made no call. The types are checked exactly (a
subclass could print itself as anything), so a value's source is what the built-in ``repr`` writes.

Before its ``eval``, bfcl's executor (``multi_turn_utils._process_method_calls``) rewrites every match of
``\b([a-zA-Z_]\w*)\s*(?=\()`` naming a method of the entry's classes into ``<instance>.name``, string literals
included: ``echo(content='run ls(now)')`` would run as ``echo(content='run <instance>.ls(now)')``. So a value is
written as its ``repr`` with every ``(`` replaced by ``\x28`` (``_source``). That text is still one literal of the
same value, and nothing of the model's text becomes code:

- in the ``repr`` of these types a ``(`` occurs only inside a string literal: ints, finite floats, bools, None,
  lists and dicts print none of their own;
- there it is never part of an escape sequence (``repr`` writes a backslash only as ``\\`` or to start
  ``\n``/``\xhh``/``\uhhhh``-style escapes of letters and hex digits), so ``\x28`` stands where a whole character
  stood and is itself a whole escape, read back as ``(`` (``ast.literal_eval`` returns the value unchanged);
- the only ``(`` left in a call's source is the one after its function name, the only match bfcl's rewrite finds.
"""

from __future__ import annotations

import keyword
import math
from typing import Any

from ..data.calls import MAX_INT_BITS, int_too_large


class RejectedCall(ValueError):
    """A model call that must not be executed. ``reason`` is a machine-readable code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _is_identifier(name: Any) -> bool:
    return type(name) is str and name.isidentifier() and not keyword.iskeyword(name)


def _check_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > 32:
        raise RejectedCall("value_too_deep", f"{where}: value nested deeper than 32 levels")
    kind = type(value)  # exactly: see the module docstring
    if kind is int and int_too_large(value):
        # the parsers' limit: decode_execute parses this call back, and must not refuse what passed here
        raise RejectedCall("value_too_large", f"{where}: an integer of {abs(value).bit_length()} bits, over the "
                                              f"limit of {MAX_INT_BITS}")
    if value is None or kind in (bool, int, str):
        return
    if kind is float:
        if not math.isfinite(value):  # repr gives `inf`/`nan`: names, not literals
            raise RejectedCall("non_literal_value", f"{where}: non-finite number {value!r}")
        return
    if kind is list:
        for item in value:
            _check_value(item, where, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise RejectedCall("non_literal_value", f"{where}: dict key {key!r} is not a string")
            _check_value(item, where, depth + 1)
        return
    raise RejectedCall("non_literal_value", f"{where}: {kind.__name__} is not a literal value")


def _source(value: Any) -> str:
    """A value ``_check_value`` accepted, as a Python literal without ``(``: bfcl's rewrite leaves it alone (module
    docstring)."""
    return repr(value).replace("(", "\\x28")


def executable_calls(calls: list[dict], functions: list[dict]) -> list[str]:
    """bfcl executor strings (``name(key=repr(value),...)``, bfcl's own ``convert_to_function_call`` format) of
    ``calls`` (``{"name", "arguments"}`` dicts), or ``RejectedCall`` naming the first call that must not run.

    ``functions``: the bfcl function docs of the entry (offered at this step, or held out by Miss Func).
    """
    docs = {doc["name"]: doc for doc in functions}
    out = []
    for call in calls:
        name, arguments = call.get("name"), call.get("arguments")
        if not _is_identifier(name) or name not in docs:
            raise RejectedCall("unknown_function", f"{name!r} is not one of the functions offered to the model")
        if not isinstance(arguments, dict):
            raise RejectedCall("non_literal_value", f"{name}: arguments must be an object")
        properties = (docs[name].get("parameters") or {}).get("properties") or {}
        for key, value in arguments.items():
            if not _is_identifier(key):
                raise RejectedCall("bad_argument_name", f"{name}: argument name {key!r} is not an identifier")
            if key not in properties:
                raise RejectedCall("unknown_argument", f"{name}: {key!r} is not a parameter of its schema")
            _check_value(value, f"{name}.{key}")
        out.append(f"{name}(" + ",".join(f"{key}={_source(value)}" for key, value in arguments.items()) + ")")
    return out
