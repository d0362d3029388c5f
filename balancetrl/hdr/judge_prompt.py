"""The judge prompt and the defensive parser of its verdict.

One place for the words the judges see and the one JSON shape they must answer with
(``{"score": float in [0, 1], "reason": str}``). The prompt is rendered deterministically
(sorted keys, fixed separators) because its hash is the cache key: the same item must
give byte-identical text in every round and every process.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

PROMPT_VERSION = 1  # bump when the wording changes: part of every cache key

SYSTEM_PROMPT = """\
You are a strict evaluator of function-calling answers.
You see the tools an assistant may call, the conversation so far, the reference calls \
(when known) and a candidate answer: its reasoning, the calls it makes and any text it says.
Judge whether the candidate answer is correct and useful for the user's last request:
- the right function(s) for the request, none missing and none superfluous;
- every argument present that is required, none invented, values faithful to the request \
(types, units, spelling), parallel calls in any order;
- when reference calls are given they are ground truth: an answer that differs in substance \
is wrong, one that differs only in equivalent formatting is right;
- the reasoning must support the calls and not contradict them; a plain-text answer or \
refusal is right only when no tool fits the request.
Answer with ONE JSON object and nothing else:
{"score": <number between 0 and 1, 1 = fully correct>, "reason": "<one short sentence>"}"""


# The same verdict as a JSON schema, in the OpenAI `response_format` shape, for a judge that can be held to it
# (vLLM's structured outputs): `params: {response_format: ...}` in the judge's entry, docs/hdr.md. A small local
# model asked in words often answers in prose; held to this it can only write a verdict `parse_verdict` reads.
# maxLength bounds the reason, or a weak model repeats itself until max_tokens and the cut-off JSON is unusable.
VERDICT_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "verdict",
        "schema": {
            "type": "object",
            "properties": {
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "reason": {"type": "string", "maxLength": 200},
            },
            "required": ["score", "reason"],
            "additionalProperties": False,
        },
    },
}


def _dump(value: Any) -> str:
    # No indent: indent forces json's pure-Python encoder, ~2.5 ms per prompt, which at
    # thousands of judgments a round is a visible share of the panel's client-side CPU.
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _render_message(m: dict) -> str:
    role = m.get("role", "?")
    parts = []
    if m.get("reasoning_content"):
        parts.append(f"[reasoning] {m['reasoning_content']}")
    if m.get("content"):
        c = m["content"]
        parts.append(c if isinstance(c, str) else _dump(c))
    if m.get("tool_calls"):
        parts.append("[calls] " + _dump(m["tool_calls"]))
    return f"<{role}>\n" + "\n".join(parts)


def render_user_prompt(
    tools: list, messages: list, reference: list | None, reasoning: str, calls: list, content: str
) -> str:
    ref = _dump(reference) if reference is not None else "(not known: judge on the request and the tools)"
    convo = "\n\n".join(_render_message(m) for m in messages) or "(empty)"
    return (
        f"## Tools\n{_dump(tools)}\n\n"
        f"## Conversation\n{convo}\n\n"
        f"## Reference calls\n{ref}\n\n"
        f"## Candidate answer\n"
        f"### Reasoning\n{reasoning or '(none)'}\n\n"
        f"### Calls\n{_dump(calls)}\n\n"
        f"### Text\n{content or '(none)'}\n\n"
        'Reply with the JSON object {"score": ..., "reason": ...} only.'
    )


def judge_messages(**item_fields: Any) -> list[dict]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": render_user_prompt(**item_fields)}]


class VerdictError(ValueError):
    """The judge answered, but not with a usable verdict (retried like a transport error)."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_REASON_MAX = 1000


def _candidates(text: str):
    # Models wrap JSON in fences or prose; try the whole text, fenced blocks, then every
    # balanced {...} span (raw_decode from each "{"), in that order.
    yield text.strip()
    for m in _FENCE.finditer(text):
        yield m.group(1).strip()
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = dec.raw_decode(text, i)
            except ValueError:
                continue
            yield obj


def parse_verdict(text: str | None) -> tuple[float, str]:
    """``(score, reason)`` from a judge's reply, or :class:`VerdictError` saying why not.

    Accepts a bare JSON object, a fenced one, or one embedded in prose; the score may be a
    number or a numeric string. Rejects booleans, NaN/inf and scores outside [0, 1] rather
    than clipping them: an out-of-range score means the judge ignored the instructions.
    """
    if not text or not text.strip():
        raise VerdictError("empty reply")
    last_problem = "no JSON object found"
    for cand in _candidates(text):
        obj = cand
        if isinstance(cand, str):
            try:
                obj = json.loads(cand)
            except ValueError:
                continue
        if not isinstance(obj, dict):
            continue
        if "score" not in obj:
            last_problem = "JSON object without 'score'"
            continue
        score = obj["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float, str)):
            raise VerdictError(f"score is not a number: {score!r}"[:200])
        try:
            score = float(score)
        except ValueError:
            raise VerdictError(f"score is not a number: {score!r}"[:200]) from None
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise VerdictError(f"score out of [0, 1]: {score!r}")
        reason = obj.get("reason", "")
        reason = reason if isinstance(reason, str) else json.dumps(reason, default=str)
        return score, reason[:_REASON_MAX]
    raise VerdictError(last_problem)
