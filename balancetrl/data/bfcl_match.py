"""BFCL's acceptance rule for one parameter value against its possible answers (`bfcl_eval`'s AST checker).

A BFCL possible-answer entry lists, per parameter, every accepted value (`""` = may be omitted); strings compare
after BFCL's own normalisation. Re-implemented rather than called because `bfcl_eval`'s checker judges a whole
model output against a whole test entry, while the Answer Check needs one value and a reason code when it fails;
tests/test_data_bfcl_agreement.py checks that both agree on BFCL's own data.
"""

from __future__ import annotations

import re
from typing import Any

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


def bfcl_match(value: Any, alternatives: list, schema: dict) -> bool:
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
