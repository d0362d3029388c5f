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
import logging
import os
import random
import time
from typing import Any

from .judge_prompt import VerdictError, parse_verdict
from .verdict_cache import VerdictCache
from .verdicts import (  # noqa: F401 -- re-exported: the panel's public records
    DEFAULT_TEMPERATURE,
    Candidate,
    JudgeItem,
    JudgeSpec,
    JudgeTotals,
    PanelResult,
    PanelTotals,
    Verdict,
    check_panel_settings,
    parse_judges,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported anywhere

logger = logging.getLogger(__name__)



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
        check_panel_settings(len(self.judges), threshold, min_votes, concurrency, timeout, retries)
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
