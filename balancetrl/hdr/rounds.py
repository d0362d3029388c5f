"""One HDR round as plain data flow: regenerate hard samples, gate them by rule, let the judges vote, accept.

No trainer here: the callback passes in a generation backend and a judge panel (or None for the rule gate alone).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cot import DEFAULT_COT
from ..data.answers import answer_check, check_generated
from ..data.calls import from_tool_calls, to_tool_calls
from .verdicts import Candidate, JudgeItem

if TYPE_CHECKING:  # the generation layer imports torch; the callback loads it only when a round runs
    from ..generation import GenerationBackend


@dataclass
class HardSample:
    """A hard record and the assistant turn to regenerate (the first whose reference calls it fails)."""

    record: dict
    turn: int  # index into record["messages"]
    reference: list | None

    @property
    def id(self) -> str:
        return str(self.record.get("id"))

    @property
    def prompt(self) -> list[dict]:
        return self.record["messages"][: self.turn]

    @property
    def tools(self) -> list:
        return self.record.get("tools") or []


def hard_sample(record: dict) -> HardSample:
    references = record.get("reference")
    assistant_turns = [i for i, m in enumerate(record["messages"]) if m.get("role") == "assistant"]
    if not assistant_turns:
        raise ValueError(f"hard sample {record.get('id')!r} has no assistant turn")
    for n, i in enumerate(assistant_turns):
        ref = references[n] if isinstance(references, list) and n < len(references) else None
        calls = record["messages"][i].get("tool_calls")
        produced = from_tool_calls(calls) if calls else None
        if ref is not None and not answer_check(produced, ref, record.get("tools") or []).ok:
            return HardSample(record, i, ref)
    n = len(assistant_turns) - 1
    ref = references[n] if isinstance(references, list) and n < len(references) else None
    return HardSample(record, assistant_turns[-1], ref)


@dataclass
class CandidateLog:
    sample_id: str
    index: int
    text: str
    gate: str  # "passed" or the rejection reason
    reasoning: str | None = None
    calls: list | None = None
    content: str = ""
    judged: bool = False
    passed: bool | None = None
    verdicts: list = field(default_factory=list)


@dataclass
class RoundResult:
    round: int
    accepted: list[dict]  # new training records
    still_hard: list[dict]  # the hard records left
    candidates: list[CandidateLog]
    judge_totals: dict[str, Any]

    def summary(self, hard_before: int) -> dict[str, Any]:
        judged = [c for c in self.candidates if c.judged]
        totals = self.judge_totals.get("total", {})
        return {
            "round": self.round,
            "hard_before": hard_before,
            "hard_remaining": len(self.still_hard),
            "generated": len(self.candidates),
            "gate_rejected": sum(c.gate != "passed" for c in self.candidates),
            "judged": len(judged),
            "judge_passed": sum(bool(c.passed) for c in judged),
            "accepted": len(self.accepted),
            "judge_verdicts": int(totals.get("verdicts", 0)),
            "judge_abstained": int(totals.get("abstained", 0)),
            "judge_requests": int(totals.get("calls", 0)),
            "judge_cache_hits": int(totals.get("cache_hits", 0)),
            "judge_cost_usd": float(totals.get("cost_usd") or 0.0),
            "judge_prompt_tokens": int(totals.get("prompt_tokens", 0)),
            "judge_completion_tokens": int(totals.get("completion_tokens", 0)),
        }


def gate(sample: HardSample, text: str, index: int, require_cot: bool, cot: tuple[str, str]) -> CandidateLog:
    """The free, deterministic Answer Check: an answer that fails it never reaches a judge."""
    answer = check_generated(text, sample.reference, sample.tools, require_cot, cot)
    return CandidateLog(sample.id, index, text, answer.verdict, answer.reasoning, answer.calls, answer.content)


def accepted_record(sample: HardSample, log: CandidateLog, round_index: int) -> dict:
    message: dict[str, Any] = {"role": "assistant"}
    if log.reasoning:
        message["reasoning_content"] = log.reasoning
    if log.calls:
        message["tool_calls"] = to_tool_calls(log.calls)
    else:
        message["content"] = log.content
    record = {key: copy.deepcopy(value) for key, value in sample.record.items() if key not in ("messages", "reference")}
    record["messages"] = copy.deepcopy(sample.prompt) + [message]
    references = sample.record.get("reference")
    if isinstance(references, list):
        n_turns = sum(m.get("role") == "assistant" for m in record["messages"])
        record["reference"] = copy.deepcopy(references[:n_turns])
    record["hdr"] = {"round": round_index, "candidate": log.index}
    return record


def run_round(
    samples: list[HardSample],
    backend: GenerationBackend,
    panel,
    *,
    round_index: int,
    num_generations: int,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    require_cot: bool = True,
    cot: tuple[str, str] = DEFAULT_COT,
    judge_fn=None,
    trainable=None,
) -> RoundResult:
    """Regenerate, gate, judge and accept. `judge_fn(items) -> list[PanelResult]` defaults to `panel.judge`
    (the callback passes one that judges on the main process only and broadcasts). `trainable(record) -> bool`
    rejects an accepted answer the trainer could not tokenize (it then stays hard)."""
    texts = backend.generate(
        [s.prompt for s in samples], [s.tools or None for s in samples], num_generations=num_generations,
        temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
    )
    logs = [[gate(s, text, i, require_cot, cot) for i, text in enumerate(outs)] for s, outs in zip(samples, texts)]
    survivors = [log for per_sample in logs for log in per_sample if log.gate == "passed"]
    totals: dict[str, Any] = {}
    if panel is not None and survivors:
        by_id = {s.id: s for s in samples}
        items = [
            JudgeItem(sample_id=log.sample_id, tools=by_id[log.sample_id].tools, messages=by_id[log.sample_id].prompt,
                      candidate=Candidate(log.reasoning or "", log.calls or [], log.content),
                      reference=by_id[log.sample_id].reference, candidate_index=log.index)
            for log in survivors
        ]
        results, totals = (judge_fn or _judge_with(panel))(items)
        for log, result in zip(survivors, results):
            log.judged, log.passed = True, result["passed"]
            log.verdicts = result["verdicts"]
    else:
        for log in survivors:  # the rule gate is the judge
            log.passed = True
    accepted, still_hard = [], []
    for sample, per_sample in zip(samples, logs):
        record = None
        for log in per_sample:
            if log.passed:
                record = accepted_record(sample, log, round_index)
                if trainable is None or trainable(record):
                    break
                log.gate, log.passed, record = "untrainable", False, None
        if record is None:
            still_hard.append(sample.record)
        else:
            accepted.append(record)
    return RoundResult(round_index, accepted, still_hard, [log for p in logs for log in p], totals)


def _judge_with(panel):
    def judge(items):
        results = panel.judge(items)
        return [r.to_dict() for r in results], panel.last_totals.to_dict() if panel.last_totals else {}

    return judge
