"""The LLM judge panel of the HDR loop: every candidate scored by every judge, then a vote.

Calls go through ``litellm.acompletion`` (any provider LiteLLM speaks), all concurrent
under one semaphore, each with a per-call timeout. A judge that still fails after its
retries *abstains*: the verdict records the error, the round goes on. A candidate passes
when at least ``min_votes`` of the judges that answered score it ``>= threshold``.

Written by hand rather than taken from LiteLLM, and why:
- retries: LiteLLM's ``num_retries`` only sees exceptions; a 200 whose text is not a
  valid verdict must be re-asked too, and every attempt must be counted and costed
  exactly. So LiteLLM (and the OpenAI SDK under it) gets ``max_retries=0`` and the loop
  here retries transport errors and bad verdicts alike, with exponential backoff + jitter.
- cache: ``litellm.cache`` is process-global, needs ``diskcache``, and would store raw
  replies including unusable ones (a retry would then be served the same bad text). Here
  only parsed verdicts are stored, one small JSON file per (judge, prompt) key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .judge_prompt import PROMPT_VERSION, VerdictError, build_messages, parse_verdict

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported anywhere

logger = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 0.7  # the paper's judge setting
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
        return build_messages(
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


# --------------------------------------------------------------------------- cache
class VerdictCache:
    """One JSON file per (judge, prompt) key; written atomically so a killed round never
    leaves a half-written entry. Holds the verdict and what it cost, never a request."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(spec: JudgeSpec, messages: list[dict]) -> str:
        blob = json.dumps({"v": PROMPT_VERSION, "judge": spec.identity, "messages": messages}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None  # absent, or corrupt: ask again

    def put(self, key: str, entry: dict) -> None:
        p = self._path(key)
        p.parent.mkdir(exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.{random.getrandbits(32):08x}.tmp")
        try:
            tmp.write_text(json.dumps(entry, sort_keys=True))
            os.replace(tmp, p)
        except OSError as e:  # a full disk costs a re-ask next time, never this verdict
            logger.warning("verdict cache write failed (%s): %s", p, e)
            tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- panel
class JudgePanel:
    def __init__(
        self,
        judges: Any,
        threshold: float = 0.5,
        min_votes: int | None = None,
        concurrency: int = 16,
        timeout: float = 60.0,
        retries: int = 3,
        cache_dir: str | os.PathLike | None = None,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        breaker_after: int | None = 20,
    ):
        self.judges = parse_judges(judges)
        if not self.judges:
            raise ValueError("a judge panel needs at least one judge")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if min_votes is not None and not 1 <= min_votes <= len(self.judges):
            raise ValueError(f"min_votes must be in [1, {len(self.judges)}], got {min_votes}")
        if concurrency < 1 or timeout <= 0 or retries < 0:
            raise ValueError("concurrency >= 1, timeout > 0 and retries >= 0 required")
        self.threshold, self.min_votes = float(threshold), min_votes
        self.concurrency, self.timeout, self.retries = int(concurrency), float(timeout), int(retries)
        self.backoff, self.backoff_max = float(backoff), float(backoff_max)
        self.breaker_after = breaker_after
        self.cache = VerdictCache(cache_dir) if cache_dir is not None else None
        self.last_totals: PanelTotals | None = None
        self.history: list[PanelTotals] = []  # one entry per judge()/ajudge() call

    # -- public --------------------------------------------------------------------------
    def judge(self, items: list[JudgeItem]) -> list[PanelResult]:
        """Blocking ``ajudge``. Runs its own event loop; if the caller already runs one
        (a notebook), runs in a worker thread instead of failing."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._owned_loop_run(items))
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            return ex.submit(asyncio.run, self._owned_loop_run(items)).result()

    async def _owned_loop_run(self, items: list[JudgeItem]) -> list[PanelResult]:
        try:
            return await self.ajudge(items)
        finally:
            # This loop dies with the call: let LiteLLM's logging worker finish its queued
            # callbacks (cost logging, any user success_callback) here, or it carries them
            # to the next round's loop with a warning. Internal API: best effort only.
            try:
                from litellm.litellm_core_utils.logging_worker import (
                    GLOBAL_LOGGING_WORKER,
                )

                await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), timeout=5.0)
            except Exception as e:  # noqa: BLE001
                logger.debug("could not flush LiteLLM's logging worker: %s", e)

    async def ajudge(self, items: list[JudgeItem]) -> list[PanelResult]:
        t0 = time.monotonic()
        items = list(items)
        sem = asyncio.Semaphore(self.concurrency)
        inflight: dict[str, asyncio.Task] = {}  # identical prompts this round: one call
        keys = {s.name: self._secret(s) for s in self.judges}
        breakers = {s.name: _Breaker(s.name, self.breaker_after) for s in self.judges}  # fresh each round
        tasks = []
        for item in items:
            msgs = item.prompt_messages()
            for spec in self.judges:
                key = VerdictCache.key(spec, msgs)
                first = inflight.get(key)
                if first is None:
                    call = self._one(spec, keys[spec.name], msgs, key, sem, breakers[spec.name])
                    inflight[key] = first = asyncio.ensure_future(_never_raises(call, spec.name))
                    tasks.append(first)
                else:
                    tasks.append(asyncio.ensure_future(_as_duplicate(first)))
        verdicts = await asyncio.gather(*tasks)
        n = len(self.judges)
        results = [self._vote(item, verdicts[i * n:(i + 1) * n]) for i, item in enumerate(items)]
        totals = PanelTotals.from_results(results, wall_s=time.monotonic() - t0)
        self.last_totals = totals
        self.history.append(totals)
        for name, jt in totals.per_judge.items():
            if jt.abstained:
                logger.warning("judge %s abstained on %d/%d candidates", name, jt.abstained, jt.verdicts)
        logger.info("judge panel: %d candidates, %d passed, %d calls, %d cached, $%.4f, %.1fs",
                    totals.items, totals.items_passed, totals.total.calls, totals.total.cache_hits,
                    totals.total.cost_usd, totals.wall_s)
        return results

    # -- internals ----------------------------------------------------------------------
    def required_votes(self, answered: int) -> int:
        return self.min_votes if self.min_votes is not None else answered // 2 + 1

    def _vote(self, item: JudgeItem, verdicts: list[Verdict]) -> PanelResult:
        answered = sum(not v.abstained for v in verdicts)
        votes_for = sum(bool(v.passed) for v in verdicts)
        need = self.required_votes(answered)
        return PanelResult(item.sample_id, item.candidate_index, list(verdicts), votes_for, answered, need,
                           passed=answered > 0 and votes_for >= need)

    @staticmethod
    def _secret(spec: JudgeSpec) -> str | None:
        return os.environ.get(spec.api_key_env) if spec.api_key_env else None

    def _from_cache(self, spec: JudgeSpec, key: str) -> Verdict | None:
        hit = self.cache.get(key) if self.cache else None
        if not hit or not isinstance(hit.get("score"), (int, float)):
            return None
        return Verdict(spec.name, float(hit["score"]), hit["score"] >= self.threshold, str(hit.get("reason", "")),
                       cached=True, cost_usd=0.0)

    async def _one(self, spec: JudgeSpec, secret: str | None, msgs: list[dict], key: str,
                   sem: asyncio.Semaphore, breaker: _Breaker) -> Verdict:
        cached = self._from_cache(spec, key)
        if cached is not None:
            return cached
        v = Verdict(spec.name)
        if spec.api_key_env and not secret:
            v.abstained, v.error = True, f"environment variable {spec.api_key_env} is not set"
            return v
        import litellm  # deferred: ~2 s import, only paid when judging

        # LiteLLM prints a "Give Feedback" banner to stdout on every failed call; a down judge
        # would flood the training log with thousands. Failures are in the verdicts instead.
        litellm.suppress_debug_info = True

        kwargs = {"temperature": DEFAULT_TEMPERATURE, **spec.params}
        if spec.api_base:
            kwargs["api_base"] = spec.api_base
        if secret:
            kwargs["api_key"] = secret
        asked_wait = 0.0  # the server's Retry-After, when it sent one
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1) * (0.5 + random.random() / 2)  # jitter: no herd
                await asyncio.sleep(min(self.backoff_max, max(delay, asked_wait)))
            async with sem:
                if breaker.open:
                    v.error = breaker.open
                    break
                v.attempts += 1
                try:
                    # wait_for is a backstop: the HTTP timeout covers the request, not e.g. DNS stalls
                    resp = await asyncio.wait_for(
                        litellm.acompletion(model=spec.model, messages=msgs, timeout=self.timeout,
                                            max_retries=0, num_retries=0, **kwargs),
                        timeout=self.timeout + 5.0,
                    )
                except Exception as e:  # noqa: BLE001 -- any failure of one call is one failed attempt
                    status = getattr(e, "status_code", None)
                    v.error = _scrub(f"{type(e).__name__}{f' (HTTP {status})' if status else ''}: {e}", secret)
                    if status != 429:  # rate-limited is busy, not down: backoff handles it
                        breaker.failed(v.error)
                    asked_wait = _retry_after(e)
                    if _hopeless(e):
                        break
                    continue
            breaker.answered()  # even an unusable verdict shows the judge is up
            _charge(v, resp, litellm)
            try:
                score, reason = parse_verdict(_text_of(resp))
            except VerdictError as e:
                v.error = f"VerdictError: {_scrub(str(e), secret)}"
                continue
            v.score, v.reason, v.passed = score, _scrub(reason, secret), score >= self.threshold
            if self.cache:
                self.cache.put(key, {"judge": spec.name, "model": spec.model, "score": score, "reason": v.reason,
                                     "cost_usd": v.cost_usd, "prompt_tokens": v.prompt_tokens,
                                     "completion_tokens": v.completion_tokens, "created": time.time()})
            return v
        v.abstained = True
        logger.debug("judge %s abstains after %d attempts: %s", spec.name, v.attempts, v.error)
        return v


class _Breaker:
    """Per judge and round: after ``after`` failed calls in a row, the judge is taken as
    down and abstains on the rest of the round at once. Without it a judge that hangs
    (every call runs into the timeout) would hold concurrency slots for
    items x attempts x timeout and stall the healthy judges."""

    def __init__(self, name: str, after: int | None):
        self.name, self.after, self.streak, self.open = name, after, 0, None

    def failed(self, error: str) -> None:
        self.streak += 1
        if self.after and self.streak >= self.after and not self.open:
            self.open = f"judge taken as down for this round after {self.streak} failed calls in a row; last: {error}"
            logger.warning("judge %s: %s", self.name, self.open)

    def answered(self) -> None:
        self.streak = 0


async def _never_raises(call, judge: str) -> Verdict:
    # A bug or an unforeseen error in one judgment must cost that vote, not the round.
    try:
        return await call
    except Exception as e:
        logger.exception("judge %s: unexpected error", judge)
        return Verdict(judge, abstained=True, error=f"internal {type(e).__name__}: {e}"[:2000])


async def _as_duplicate(first: asyncio.Task) -> Verdict:
    v = await first
    if v.abstained:
        return Verdict(**{**v.to_dict(), "attempts": 0, "cost_usd": 0.0, "prompt_tokens": 0, "completion_tokens": 0})
    return Verdict(v.judge, v.score, v.passed, v.reason, cached=True, cost_usd=0.0)


def _text_of(resp: Any) -> str | None:
    try:
        return resp.choices[0].message.content
    except (AttributeError, IndexError, TypeError):
        return None


def _charge(v: Verdict, resp: Any, litellm: Any) -> None:
    # Every answered attempt is paid for, also the ones whose verdict is unusable.
    usage = getattr(resp, "usage", None)
    v.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
    v.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
    cost = (getattr(resp, "_hidden_params", None) or {}).get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=resp)
        except Exception:  # noqa: BLE001 -- unknown price: recorded as None, not as 0
            cost = None
    v.cost_usd = None if cost is None or v.cost_usd is None else v.cost_usd + float(cost)


def _retry_after(e: Exception) -> float:
    # A 429/503 may say how long to wait; honour it (capped by backoff_max at the caller).
    # LiteLLM keeps the provider's headers in litellm_response_headers (e.response is rebuilt, empty).
    headers = getattr(e, "litellm_response_headers", None) or getattr(getattr(e, "response", None), "headers", None)
    try:
        return max(0.0, float(headers.get("retry-after"))) if headers else 0.0
    except (TypeError, ValueError):  # absent, or an HTTP-date: fall back to our backoff
        return 0.0


def _hopeless(e: Exception) -> bool:
    # Bad key, bad request, unknown model: retrying only repeats the failure.
    status = getattr(e, "status_code", None)
    return status in (400, 401, 403, 404)


def _scrub(text: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text[:2000]
