"""The judge panel's records: who judges (`JudgeSpec`), what is judged (`JudgeItem`), what came back (`Verdict`,
`PanelResult`) and what it cost (`JudgeTotals`, `PanelTotals`). Everything serialises to plain JSON for the HDR state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .judge_prompt import judge_messages

DEFAULT_TEMPERATURE = 0.7  # the paper's judge setting
# set by the panel on every call: a judge's params may not override them
_RESERVED = {"model", "messages", "api_base", "api_key", "timeout", "num_retries", "max_retries", "stream"}


# --------------------------------------------------------------------------- config
@dataclass
class JudgeSpec:
    """One judge. ``api_key_env`` names an environment variable; the key itself never
    enters a config, a cache or a log. ``name`` labels verdicts and keys the cache
    (default: ``model``); give the same model twice distinct names to ensemble it."""

    model: str
    api_base: str | None = None
    api_key_env: str | None = None
    params: dict = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"judge model must be a non-empty string, got {self.model!r}")
        bad = _RESERVED & set(self.params)
        if bad:
            raise ValueError(f"judge {self.model!r}: params may not set {sorted(bad)} (set by the panel)")
        self.name = self.name or self.model

    @property
    def identity(self) -> str:
        # api_base is left out on purpose: moving a judge to another endpoint of the same
        # model (a resumed job on a new host) must still hit the cache.
        params = {"temperature": DEFAULT_TEMPERATURE, **self.params}  # what is sent, defaults included
        return json.dumps({"name": self.name, "model": self.model, "params": params}, sort_keys=True, default=str)


def parse_judges(value: Any) -> list[JudgeSpec]:
    """Judges from YAML-friendly values: ``"openai/gpt-4o"``, ``"a,b"``, a dict with keys
    model/api_base/api_key_env/params/name, or a list mixing strings and dicts."""
    if value is None:
        return []
    if isinstance(value, JudgeSpec):
        return [value]
    if isinstance(value, str):
        return [JudgeSpec(model=m.strip()) for m in value.split(",") if m.strip()]
    if isinstance(value, dict):
        if "api_key" in value:
            raise ValueError("judge config must not contain 'api_key': put the key in an env var and name it in api_key_env")
        unknown = set(value) - {"model", "api_base", "api_key_env", "params", "name"}
        if unknown:
            raise ValueError(f"unknown judge keys {sorted(unknown)}; allowed: model, api_base, api_key_env, params, name")
        return [JudgeSpec(**{**value, "params": dict(value.get("params") or {})})]
    if isinstance(value, (list, tuple)):
        specs = [s for v in value for s in parse_judges(v)]
        names = [s.name for s in specs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate judges {dup}: give each a distinct 'name'")
        return specs
    raise TypeError(f"cannot read judges from {type(value).__name__}")


def check_panel_settings(n_judges: int, threshold: Any, min_votes: Any, concurrency: Any, timeout: Any, retries: Any,
                         names: dict[str, str] | None = None) -> None:
    """Raise `ValueError` naming the setting (through `names`, e.g. `hdr.judge_threshold`) that a panel of
    `n_judges` judges cannot work with. Shared by `JudgePanel` and `HDRConfig`, which checks before any model
    loads."""
    names = names or {}

    def bad(key: str, value: Any, need: str) -> ValueError:
        return ValueError(f"{names.get(key, key)} must be {need}, got {value!r}")

    def real(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN

    def integer(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not (real(threshold) and 0.0 <= threshold <= 1.0):
        raise bad("threshold", threshold, "a number in [0, 1] (a judge's score passes at >= it)")
    if min_votes is not None and not (integer(min_votes) and 1 <= min_votes <= max(n_judges, 1)):
        raise bad("min_votes", min_votes, f"an integer in [1, {n_judges}] (the number of judges) or unset "
                                          "(a strict majority)")
    if not (integer(concurrency) and concurrency >= 1):
        raise bad("concurrency", concurrency, "an integer >= 1")
    if not (real(timeout) and timeout > 0):
        raise bad("timeout", timeout, "a number of seconds > 0")
    if not (integer(retries) and retries >= 0):
        raise bad("retries", retries, "an integer >= 0")


# --------------------------------------------------------------------------- data
@dataclass
class Candidate:
    reasoning: str = ""
    calls: list = field(default_factory=list)
    content: str = ""


@dataclass
class JudgeItem:
    """One candidate answer to judge. ``messages`` is the conversation before the answer;
    ``reference`` the ground-truth calls when known (else None)."""

    sample_id: str
    tools: list
    messages: list
    candidate: Candidate
    reference: list | None = None
    candidate_index: int = 0  # which of the n generations of this sample

    def __post_init__(self):
        if isinstance(self.candidate, dict):
            self.candidate = Candidate(**self.candidate)

    def prompt_messages(self) -> list[dict]:
        c = self.candidate
        return judge_messages(
            tools=self.tools, messages=self.messages, reference=self.reference,
            reasoning=c.reasoning, calls=c.calls, content=c.content,
        )


@dataclass
class Verdict:
    judge: str
    score: float | None = None
    passed: bool | None = None
    reason: str = ""
    abstained: bool = False
    error: str | None = None  # the last error; with a score set, one that a retry overcame
    cached: bool = False  # served without a new call (disk cache, or a duplicate prompt this round)
    cost_usd: float | None = 0.0  # paid in *this* round; None if LiteLLM knows no price
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0  # requests actually sent in this round

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PanelResult:
    sample_id: str
    candidate_index: int
    verdicts: list[Verdict]
    votes_for: int
    answered: int
    required: int  # votes needed among those that answered
    passed: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["verdicts"] = [v.to_dict() for v in self.verdicts]
        return d


@dataclass
class JudgeTotals:
    verdicts: int = 0
    answered: int = 0
    abstained: int = 0
    passed: int = 0
    cache_hits: int = 0
    calls: int = 0  # requests sent (every attempt)
    failed_calls: int = 0
    cost_usd: float = 0.0
    cost_unknown_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, v: Verdict) -> None:
        self.verdicts += 1
        self.answered += not v.abstained
        self.abstained += v.abstained
        self.passed += bool(v.passed)
        self.cache_hits += v.cached
        self.calls += v.attempts
        self.failed_calls += v.attempts - (0 if v.abstained or v.cached else 1)
        if v.cost_usd is None:
            self.cost_unknown_calls += 1
        else:
            self.cost_usd += v.cost_usd
        self.prompt_tokens += v.prompt_tokens
        self.completion_tokens += v.completion_tokens


@dataclass
class PanelTotals:
    """Accounting for one ``judge()`` call (one HDR round)."""

    items: int = 0
    items_passed: int = 0
    wall_s: float = 0.0
    total: JudgeTotals = field(default_factory=JudgeTotals)
    per_judge: dict[str, JudgeTotals] = field(default_factory=dict)

    @classmethod
    def from_results(cls, results: Iterable[PanelResult], wall_s: float = 0.0) -> PanelTotals:
        t = cls(wall_s=wall_s)
        for r in results:
            t.items += 1
            t.items_passed += r.passed
            for v in r.verdicts:
                t.total.add(v)
                t.per_judge.setdefault(v.judge, JudgeTotals()).add(v)
        return t

    def to_dict(self) -> dict:
        return asdict(self)
