"""BFCL question files with their possible answers (`bfcl`): single-turn AST categories."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..calls import to_tool_calls
from ..io import InputError, read_records
from ..record import Record
from .common import FormatError, require, to_canonical_tool


def bfcl_pick(alternatives: list, schema: dict | None = None) -> tuple[bool, Any]:
    """First concrete value of a BFCL alternatives list (`""` marks "may be omitted"); dicts inside hold
    alternatives themselves. Returns (has_value, value)."""
    for alt in alternatives:
        if alt == "":
            continue
        if isinstance(alt, dict):
            return True, _pick_dict(alt)
        if isinstance(alt, list) and alt and all(isinstance(x, dict) for x in alt):
            return True, [_pick_dict(x) for x in alt]
        return True, alt
    return False, None


def _pick_dict(alt: dict) -> dict:
    out = {}
    for k, v in alt.items():
        ok, value = bfcl_pick(v if isinstance(v, list) else [v])
        if ok:
            out[k] = value
    return out


def bfcl_reference(ground_truth: list[dict]) -> list[dict]:
    """BFCL `[{fname: {param: [alternatives]}}]` → reference calls with `arguments` (first alternatives) and
    `alternatives` (BFCL's lists, compared with BFCL's rules by the Answer Check)."""
    calls = []
    for entry in ground_truth:
        for name, params in entry.items():
            arguments = {}
            for p, alts in params.items():
                ok, value = bfcl_pick(alts)
                if ok:
                    arguments[p] = value
            calls.append({"name": name, "arguments": arguments, "alternatives": params})
    return calls


def from_bfcl(question: dict, answer: dict | None = None) -> Record:
    """One BFCL question row (+ its possible-answer row) → canonical record. Single-turn categories only."""
    require(question, "id", "question", "function")
    turns = question["question"]
    if not isinstance(turns, list) or len(turns) != 1 or not isinstance(turns[0], list):
        raise FormatError("unsupported_bfcl", "only single-turn BFCL questions (AST categories) are supported")
    functions = question["function"] if isinstance(question["function"], list) else [question["function"]]
    record = {"id": question["id"], "tools": [to_canonical_tool(f) for f in functions], "messages": list(turns[0])}
    if answer is not None:
        reference = bfcl_reference(answer["ground_truth"])
        record["reference"] = [reference]
        plain = [{"name": c["name"], "arguments": c["arguments"]} for c in reference]
        record["messages"].append({"role": "assistant", "tool_calls": to_tool_calls(plain)})
    return record


def default_bfcl_answers(questions_path: str | os.PathLike) -> Path | None:
    """BFCL keeps answers in `possible_answer/<same file name>` next to the question file."""
    candidate = Path(questions_path).parent / "possible_answer" / Path(questions_path).name
    return candidate if candidate.is_file() else None


def bfcl_answers(source: Any, answers: str | os.PathLike | None) -> dict:
    if answers is None and isinstance(source, (str, os.PathLike)):
        answers = default_bfcl_answers(source)
    if answers is None:
        return {}
    out = {}
    for row in read_records(answers):
        if row.error:
            raise InputError(f"{answers}: {row.message}")
        if not isinstance(row.data.get("id"), str):
            raise InputError(f"{answers}: line {row.line}: a possible-answer row needs a string 'id' (the id of its "
                             f"question); got keys {sorted(row.data)[:8]}")
        out[row.data["id"]] = row.data
    return out
