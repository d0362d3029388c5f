"""Our Answer Check against bfcl-eval's own AST checker on BFCL `simple_python` (the package's data).

For every question: the candidate built from the possible answers (our BFCL loader's assistant turn) must pass
both checkers, and four mutants (wrong function, missing required parameter, wrong value, extra unknown
parameter) must fail both. Agreement is the share of (question, variant) pairs with the same verdict.
"""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from balancetrl.data.answers import answer_check
from balancetrl.data.calls import from_tool_calls
from balancetrl.data.formats import load_records

# slow: importing bfcl_eval's checker imports every model handler of the package (10+ s on 2 cores).
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval not installed"),
    pytest.mark.slow,
]

# A model whose config keeps dotted names (math.factorial) as they are, so names are compared verbatim.
BFCL_MODEL = "gorilla-openfunctions-v2"


def _bfcl_files(category="simple_python"):
    root = Path(importlib.util.find_spec("bfcl_eval").submodule_search_locations[0]) / "data"
    return root / f"BFCL_v4_{category}.json", root / "possible_answer" / f"BFCL_v4_{category}.json"


def _mutate_value(value, alternatives):
    """A value of the same type that is not among the accepted alternatives (None if we cannot make one)."""
    if isinstance(value, bool):
        candidate = not value
    elif isinstance(value, int):
        candidate = value + 7919
    elif isinstance(value, float):
        candidate = value + 7919.5
    elif isinstance(value, str):
        candidate = value + " qqzzx"
    elif isinstance(value, list):
        if value and isinstance(value[0], dict):
            return None
        candidate = value + ([value[0]] if value else ["qqzzx"])
    elif isinstance(value, dict):
        if not value:
            return None
        key = next(iter(value))
        inner = _mutate_value(value[key], [])
        if inner is None:
            return None
        candidate = {**value, key: inner}
    else:
        return None
    return None if candidate in alternatives else candidate


def _variants(call, tool):
    """(label, expected_ok, call) for the candidate and its mutants."""
    yield "candidate", True, call
    yield "wrong_function", False, {"name": call["name"] + "_other", "arguments": call["arguments"]}
    required = tool["parameters"].get("required", [])
    present = [p for p in required if p in call["arguments"]]
    if present:
        args = dict(call["arguments"])
        del args[present[0]]
        yield "missing_required", False, {"name": call["name"], "arguments": args}
    for p, v in call["arguments"].items():
        new = _mutate_value(v, call["_alternatives"].get(p, []))
        if new is not None:
            yield "wrong_value", False, {"name": call["name"], "arguments": {**call["arguments"], p: new}}
            break
    yield "unknown_parameter", False, {"name": call["name"], "arguments": {**call["arguments"], "zz_unknown": 1}}
    # Variants both should accept or both reject, where the two rule sets could drift apart:
    # BFCL's "" = may be omitted, unless the schema requires it (simple_python_17 and _200 list a required
    # parameter as omittable; both checkers then still reject the omission, so those are not "optional" here)
    optional = [p for p, alts in call["_alternatives"].items()
                if "" in alts and p in call["arguments"] and p not in required]
    if optional:
        args = {k: v for k, v in call["arguments"].items() if k != optional[0]}
        yield "omit_optional", True, {"name": call["name"], "arguments": args}
    for p, v in call["arguments"].items():
        if isinstance(v, str) and v.strip():  # BFCL ignores case, spaces and ,./-_*^ in strings
            yield "string_variant", True, {"name": call["name"], "arguments": {**call["arguments"],
                                                                              p: " " + v.upper() + "."}}
            break
    for p, v in call["arguments"].items():
        if isinstance(v, int) and not isinstance(v, bool):  # a number given as a string is a type error
            yield "number_as_string", False, {"name": call["name"], "arguments": {**call["arguments"], p: str(v)}}
            break


def run_agreement(category="simple_python"):
    """Returns (pairs, agreeing pairs, disagreements, {variant: [pairs, agreeing]}). A variant changes the first
    call of the candidate; for categories other than simple_python only ours == theirs is required."""
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker

    questions_path, answers_path = _bfcl_files(category)
    questions = {q["id"]: q for q in map(json.loads, questions_path.read_text().splitlines())}
    answers = {a["id"]: a for a in map(json.loads, answers_path.read_text().splitlines())}
    rows = list(load_records(questions_path, format="bfcl"))
    assert len(rows) == len(questions) and not any(r.error for r in rows)
    pairs, agree, disagreements, by_label = 0, 0, [], {}
    for row in rows:
        record = row.data
        q = questions[record["id"]]
        calls = from_tool_calls(record["messages"][-1]["tool_calls"])
        first = dict(calls[0], _alternatives=record["reference"][0][0]["alternatives"])
        tool = next(f for f in q["function"] if f["name"] == first["name"])
        for label, expected, variant in _variants(first, tool):
            variant = {"name": variant["name"], "arguments": copy.deepcopy(variant["arguments"])}
            produced = [variant] + calls[1:]
            ours = answer_check(produced, record["reference"][0], record["tools"]).ok
            theirs = ast_checker(q["function"], [{c["name"]: c["arguments"]} for c in produced],
                                 answers[record["id"]]["ground_truth"], Language.PYTHON, category,
                                 BFCL_MODEL)["valid"]
            pairs += 1
            by_label.setdefault(label, [0, 0])[0] += 1
            if ours == theirs and (ours == expected or category != "simple_python"):
                agree += 1
                by_label[label][1] += 1
            else:
                disagreements.append((record["id"], label, expected, ours, theirs, variant))
    return pairs, agree, disagreements, by_label


def test_answer_check_agrees_with_bfcl_ast_checker_on_simple_python(capsys):
    pairs, agree, disagreements, by_label = run_agreement()
    with capsys.disabled():
        print(f"\nBFCL simple_python agreement: {agree}/{pairs} = {agree / pairs:.2%}; per variant "
              + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in by_label.items()))
    # every question yields a candidate, a wrong-function and an unknown-parameter variant
    assert by_label["candidate"][0] == by_label["wrong_function"][0] == by_label["unknown_parameter"][0] == 400
    assert by_label["missing_required"][0] > 350 and by_label["wrong_value"][0] > 350
    assert by_label["omit_optional"][0] > 100 and by_label["string_variant"][0] > 250
    assert disagreements == []


@pytest.mark.parametrize("category", ["multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple",
                                      "live_parallel", "live_parallel_multiple"])
def test_answer_check_agrees_with_bfcl_on_other_python_ast_categories(category, capsys):
    pairs, agree, disagreements, _ = run_agreement(category)
    with capsys.disabled():
        print(f"\nBFCL {category} agreement: {agree}/{pairs} = {agree / pairs:.2%}")
    assert disagreements == []
