"""Forgetting, measured: how far a tuned model has moved from its base model on prompts outside the training task.

The base model answers each prompt greedily; both models then score that answer teacher-forced
(`balancetrl.eval.teacher_forced`) and, per prompt, paired:

- `tuned_nll_*`: the tuned model's NLL of the base model's own answer (`base_nll_*` is the base's, for scale);
- `kl_*`: the token-level KL(base ‖ tuned) = Σ_v p_base(v) (log p_base(v) − log p_tuned(v)) at each answer
  position (the position that predicts an answer token), summed and averaged over the answer.

A model compared with itself scores KL 0 and `tuned_nll == base_nll`. The answer is the base's completion text
re-tokenized, followed by the end-of-turn token when generation stopped there; both models score the same ids.

Default prompt set (`irrelevance_prompts`): the user questions of BFCL's `irrelevance` category (bfcl-eval's
`BFCL_v4_irrelevance.json`, shipped in the package: general questions none of the entry's functions answers), asked
without tools and without bfcl's system prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..generation import TransformersGeneration, render_prompts, stop_token_ids
from .teacher_forced import next_token_log_probs

PROMPT_SET = "bfcl:irrelevance"


def irrelevance_prompts(limit: int | None = None) -> list[dict]:
    """`{"id", "messages"}` of the first `limit` BFCL irrelevance entries: their user turn, no tools."""
    from . import bfcl

    return [{"id": item["id"], "messages": [dict(m) for m in item["prompt_entry"]["question"][0]]}
            for item in bfcl.load_category("irrelevance", limit)]


def _answer_ids(tokenizer, completion, max_new_tokens: int, stop_id: int) -> list[int]:
    ids = tokenizer(completion.text, add_special_tokens=False)["input_ids"]
    # generation ran to a stop token unless it used every new token (then it may have been cut off)
    return ids + [stop_id] if completion.completion_tokens < max_new_tokens else ids


@dataclass
class BaseAnswer:
    """The base model's greedy answer to one prompt, as token ids both models score."""
    prompt_ids: list[int]
    answer_ids: list[int]
    text: str


def base_answers(base_model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 128, *,
                 batch_size: int = 4, chat_template: str | None = None) -> list[BaseAnswer]:
    """The base model's greedy answer to each prompt (a conversation without tools): generated once, then scored
    against any number of tuned models by `score_answers`."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    prompt_ids = render_prompts(tokenizer, prompts, None, chat_template)
    engine = TransformersGeneration(base_model, tokenizer, batch_size=batch_size)
    completions = [row[0] for row in engine.complete(prompt_ids, max_new_tokens=max_new_tokens)]
    stop_id = stop_token_ids(tokenizer, base_model)[0]
    return [BaseAnswer(p, _answer_ids(tokenizer, c, max_new_tokens, stop_id), c.text)
            for p, c in zip(prompt_ids, completions, strict=True)]


def score_answers(base_model, tuned_model, answers: list[BaseAnswer], batch_size: int = 4) -> list[dict]:
    """One row per answer, in order: `answer`, `prompt_tokens`, `answer_tokens`, `base_nll_sum/mean`,
    `tuned_nll_sum/mean`, `kl_sum`, `kl_mean`, `kl_max`. Both models must share the tokenizer's vocabulary."""
    sequences = [a.prompt_ids + a.answer_ids for a in answers]
    base_lp = next_token_log_probs(base_model, sequences, batch_size)
    tuned_lp = next_token_log_probs(tuned_model, sequences, batch_size)
    rows = []
    for a, lp_b, lp_t in zip(answers, base_lp, tuned_lp, strict=True):
        if lp_b.shape != lp_t.shape:
            raise ValueError(f"the base and tuned models score {lp_b.shape[-1]} and {lp_t.shape[-1]} vocabulary "
                             "entries: forgetting compares models of one tokenizer")
        rows.append({"answer": a.text, "prompt_tokens": len(a.prompt_ids), "answer_tokens": len(a.answer_ids),
                     **answer_measures(lp_b, lp_t, a.answer_ids, len(a.prompt_ids))})
    return rows


def forgetting(base_model, tuned_model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 128, *,
               batch_size: int = 4, chat_template: str | None = None) -> list[dict]:
    """Per prompt (a conversation without tools), the base model's greedy answer and the paired measures above
    (`base_answers`, then `score_answers`)."""
    answers = base_answers(base_model, tokenizer, prompts, max_new_tokens, batch_size=batch_size,
                           chat_template=chat_template)
    return score_answers(base_model, tuned_model, answers, batch_size)


def answer_measures(lp_base: torch.Tensor, lp_tuned: torch.Tensor, answer: list[int], prompt_len: int) -> dict:
    """NLL of `answer` under both models and KL(base ‖ tuned) at its positions, from next-token log-probs of
    prompt + answer (row `t` predicts token `t + 1`, so answer token `j` is predicted by row `prompt_len - 1 + j`)."""
    rows = slice(prompt_len - 1, prompt_len - 1 + len(answer))
    lp_b, lp_t = lp_base[rows], lp_tuned[rows]
    targets = torch.tensor(answer, dtype=torch.long)[:, None]
    p_b = lp_b.exp()
    kl = torch.where(p_b > 0, p_b * (lp_b - lp_t), torch.zeros_like(p_b)).sum(-1)
    n = len(answer)
    base_nll = float(-lp_b.gather(1, targets).sum())
    tuned_nll = float(-lp_t.gather(1, targets).sum())
    return {
        "base_nll_sum": base_nll, "base_nll_mean": base_nll / n if n else None,
        "tuned_nll_sum": tuned_nll, "tuned_nll_mean": tuned_nll / n if n else None,
        "kl_sum": float(kl.sum()), "kl_mean": float(kl.mean()) if n else None, "kl_max": float(kl.max()) if n else None,
    }


def summarize(rows: list[dict]) -> dict:
    """Token-weighted (Σ over all answer tokens) and prompt-mean KL and NLLs of `forgetting`'s rows."""
    tokens = sum(r["answer_tokens"] for r in rows)
    scored = [r for r in rows if r["answer_tokens"]]

    def both(key: str) -> dict:
        return {"token_weighted": sum(r[f"{key}_sum"] for r in rows) / tokens if tokens else None,
                "prompt_mean": sum(r[f"{key}_mean"] for r in scored) / len(scored) if scored else None}

    return {"prompts": len(rows), "answer_tokens": tokens, "kl": both("kl"), "tuned_nll": both("tuned_nll"),
            "base_nll": both("base_nll")}
