"""One generation layer for every part that asks a model for answers (the HDR rounds, BFCL evaluation), the way
TRL keeps ``trl/generation/`` for all its trainers.

- ``base``: the two interfaces a caller takes a backend by: ``GenerationBackend.generate`` (conversations in, texts
  out: HDR regeneration) and ``CompletionBackend.complete`` (token ids in, ``Completion`` records out: evaluation).
- ``prompts``: a conversation and its tools rendered up to an open assistant turn with the training chat template.
- ``transformers_backend.TransformersGeneration``: batched ``model.generate`` (greedy or seeded sampling, sharded
  across ranks, progress bar on the main process).
- ``prefix_cache``: ``PrefixCache``, the transformers backend's prefix reuse (each conversation's KV cache kept across
  its multi-turn steps), counted as vLLM counts its prefix caching.
- ``vllm_backend``: ``VLLMBackend`` over TRL's ``VLLMGeneration`` (training-time, weight sync) and ``OfflineVLLM``
  (scoring a saved model).
- ``decoding``: stop tokens and ids → text.
- ``journal``: ``GenerationJournal``, finished greedy batches on disk, so a killed run resumes (``weights_fingerprint``
  ties a journal to the weights that wrote it).
- ``parse_assistant_output`` (from ``balancetrl.data.calls``, where the dataset checks use it too): the one parser
  that turns an output into reasoning + calls + content, so an output is read the same way in training and scoring.
"""

from __future__ import annotations

from ..data.calls import CallParseError, parse_assistant_output
from .base import (
    Completion,
    CompletionBackend,
    Conversation,
    GenerationBackend,
    Tools,
    padded_shard,
    progress_bar,
    shard_bounds,
)
from .decoding import (
    END_OF_TURN_TOKENS,
    completion_length,
    decode_completion,
    stop_token_ids,
)
from .journal import GenerationJournal, weights_fingerprint
from .prompts import render_prompt_texts, render_prompts, tokenize_prompt_texts
from .transformers_backend import TransformersGeneration
from .vllm_backend import OfflineVLLM, VLLMBackend, VLLMSettings, vllm_call_plan

__all__ = [
    "END_OF_TURN_TOKENS", "CallParseError", "Completion", "CompletionBackend", "Conversation", "GenerationBackend",
    "GenerationJournal", "OfflineVLLM", "Tools",
    "TransformersGeneration", "VLLMBackend", "VLLMSettings", "completion_length", "decode_completion",
    "parse_assistant_output", "progress_bar", "render_prompt_texts", "render_prompts",
    "padded_shard", "shard_bounds", "stop_token_ids", "tokenize_prompt_texts", "vllm_call_plan", "weights_fingerprint",
]
