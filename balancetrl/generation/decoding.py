"""Where a completion ends (stop tokens) and how its ids become text."""

from __future__ import annotations

from collections.abc import Sequence

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>")


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """End-of-turn ids: the tokenizer's EOS, the model's generation-config EOS and the usual end-of-turn tokens the
    vocabulary has (ChatML models stop on ``<|im_end|>`` while their tokenizer's EOS may be ``<|endoftext|>``)."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    ids = []
    candidates = [tokenizer.eos_token_id]
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None:
        eos = generation_config.eos_token_id
        candidates.extend(eos if isinstance(eos, (list, tuple)) else [eos])
    vocab = tokenizer.get_vocab()
    candidates.extend(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    for token_id in candidates:
        if token_id is not None and token_id not in ids:
            ids.append(int(token_id))
    return ids


def completion_length(token_ids: Sequence[int], stop_ids: Sequence[int]) -> int:
    """Generated tokens up to and including the first stop token (all of them when none was reached)."""
    stops = set(stop_ids)
    for i, token_id in enumerate(token_ids):
        if token_id in stops:
            return i + 1
    return len(token_ids)


def decode_completion(tokenizer, token_ids: Sequence[int], stop_ids: Sequence[int]) -> str:
    """Completion text up to (excluding) the first stop token.

    Special tokens before the stop are kept: a tokenizer may mark ``<think>`` or ``<tool_call>`` special, and the
    parser needs them. Padding only ever follows the stop, so cutting there drops it too.
    """
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    token_ids = list(token_ids)
    stops = set(stop_ids)
    for i, token_id in enumerate(token_ids):
        if token_id in stops:
            token_ids = token_ids[:i]
            break
    return tokenizer.decode(token_ids, skip_special_tokens=False)
