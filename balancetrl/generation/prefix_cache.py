"""Prefix reuse for the transformers backend: the KV cache of a conversation's last prompt + completion, kept so that
its next step (the same conversation, a tool result and the next request appended) prefills only what is new.

What vLLM's prefix caching does for the vLLM backend, done by hand for ``model.generate``:

- After a batch, each row's KV (its prompt and the completion tokens that were fed back, without the left padding)
  is kept with the token ids it was computed from. At most ``capacity`` sequences are kept, the least recently used
  dropped first. A kept sequence whose whole prompt a new row starts with (its conversation, one step on) is
  replaced by that row's sequence: one per conversation. A shorter match (another conversation with the same system
  prompt and tools) is reused all the same and leaves the kept sequence in place.
- For a new prompt the kept sequence with the longest common *token* prefix is chosen: matched on ids, never assumed,
  since the chat template re-renders a generated assistant turn (a tool call as ``tool_calls``, reasoning dropped)
  and those ids need not be the ones the model generated. At least the prompt's last token is always computed anew.
- A batch is never re-formed: its rows are left-padded to one width ``W`` as without reuse, and the batch's cache is
  the rows' kept KV stacked at their padded columns. Every row must start computing at the same column, so the
  batch reuses ``C = W - max(new tokens of a row)`` columns: row ``i`` (``L_i`` tokens) reuses ``L_i - (W - C)`` of
  its own prompt tokens (none when that is not positive), and the padding columns are zeros, masked as padding
  always is. A row without a match in the batch (a new conversation) therefore limits what the others reuse.
  Reused KV was computed by an earlier forward of another shape (a longer prompt, a decode step, another batch), so
  it can differ from a fresh prefill in the last bits, as a change of batch size can; the tests compare greedy texts.
- Only full-attention ``DynamicLayer`` caches are reused (Llama, Qwen, SmolLM, Mistral without a sliding window ...):
  a sliding-window, linear-attention or static cache holds no exact per-token prefix to cut, so a model whose
  ``generate`` builds another cache generates without reuse (a warning says so; the prompt tokens are still counted).

Counts, in prompt tokens, shaped as vLLM's own counters (``vllm_backend.prefix_cache_counts``): ``queries`` every
prompt token of the batches generated, ``hits`` those whose KV came from a kept sequence instead of being computed,
``hit_rate`` their ratio. ``queries - hits`` is what was prefilled.

The kept KV belongs to the weights that computed it: ``clear()`` after any weight update (the HDR rounds, which
train between rounds, never turn reuse on).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch


@dataclass(eq=False)  # compared by identity
class _Kept:
    ids: torch.Tensor  # int64, on the CPU: the tokens whose KV `layers` hold
    prompt_length: int  # how many of them were the prompt (the rest: completion tokens)
    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [1, kv_heads, len(ids), head_dim]


def common_prefix_length(a: torch.Tensor, b: torch.Tensor) -> int:
    """Length of the longest common prefix of two 1-d id tensors."""
    n = min(len(a), len(b))
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0, 0]) if len(differ) else n


def _reusable(cache) -> bool:
    """A cache whose every layer is a plain full-attention ``DynamicLayer`` (keys and values hold every position)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    layers = getattr(cache, "layers", None)
    return (isinstance(cache, DynamicCache) and bool(layers)
            and all(type(layer) is DynamicLayer and layer.keys is not None and layer.keys.dim() == 4
                    for layer in layers))


class PrefixCache:
    """The kept sequences of one ``TransformersGeneration`` and the counters (module docstring)."""

    def __init__(self, capacity: int, enabled: bool = True):
        if capacity < 1:
            raise ValueError(f"the prefix cache keeps at least one sequence, got capacity={capacity}")
        self.capacity = capacity
        self.enabled = enabled
        self.kept: list[_Kept] = []  # least recently used first
        self.queries = 0
        self.hits = 0
        self.supported: bool | None = None  # unknown until a batch's cache has been seen

    def counts(self) -> dict:
        """``{"enabled", "queries", "hits", "hit_rate"}`` so far (tokens; ``hit_rate`` None before any query)."""
        rate = self.hits / self.queries if self.queries else None
        return {"enabled": self.enabled, "queries": self.queries, "hits": self.hits, "hit_rate": rate}

    def clear(self) -> None:
        """Drop every kept sequence (the counters stay)."""
        self.kept = []

    def count(self, batch: list[list[int]]) -> None:
        """Count the prompt tokens of a batch generated without lookup."""
        self.queries += sum(len(ids) for ids in batch)

    @property
    def active(self) -> bool:
        """On, and not found unusable for this model."""
        return self.enabled and self.supported is not False

    def past(self, batch: list[list[int]]):
        """The stacked cache for ``batch`` left-padded to its longest row, or None when nothing is reused; counts the
        batch's queries and hits. Returns ``(cache or None, matches)``: per row, ``(kept sequence, common prefix
        length)`` or None, for ``keep``."""
        self.count(batch)
        matches: list[tuple[_Kept, int] | None] = [None] * len(batch)
        if not self.active or not self.kept:
            return None, matches
        for row, ids in enumerate(batch):
            ids_t = torch.tensor(ids, dtype=torch.long)
            best, length = None, 0
            for kept in reversed(self.kept):  # the most recent wins a tie
                # at least the last prompt token is computed: its logits give the first new token
                n = min(common_prefix_length(kept.ids, ids_t), len(ids) - 1)
                if n > length:
                    best, length = kept, n
            if best is not None:
                matches[row] = (best, length)
        for kept in {id(m[0]): m[0] for m in matches if m is not None}.values():  # used: now the most recent
            self.kept = [k for k in self.kept if k is not kept] + [kept]
        # every row starts computing at the same column: the row with the most new tokens sets it
        new_columns = max(len(ids) - (m[1] if m else 0) for ids, m in zip(batch, matches))
        reused = [max(0, len(ids) - new_columns) for ids in batch]
        if not any(reused):
            return None, matches
        columns = max(len(ids) for ids in batch) - new_columns
        first = next(matches[row][0] for row, r in enumerate(reused) if r)
        layers = []
        for layer, (keys, values) in enumerate(first.layers):
            k = keys.new_zeros((len(batch), keys.shape[1], columns, keys.shape[3]))
            v = values.new_zeros((len(batch), values.shape[1], columns, values.shape[3]))
            for row, r in enumerate(reused):
                if r:  # the row's first r tokens, at its padded columns; its padding stays zero (masked)
                    kept_k, kept_v = matches[row][0].layers[layer]
                    k[row, :, columns - r :] = kept_k[0, :, :r]
                    v[row, :, columns - r :] = kept_v[0, :, :r]
            layers.append((k, v))
        self.hits += sum(reused)
        from transformers.cache_utils import DynamicCache

        return DynamicCache(layers), matches

    def keep(self, batch: list[list[int]], width: int, cache, completions: list[list[int]], lengths: list[int],
             matches: list) -> None:
        """Keep each row's KV from ``cache`` (the batch's, after ``generate``; rows left-padded to ``width``): its
        prompt and its first ``lengths[row]`` completion tokens, as many of them as were fed back to the model."""
        if not self.enabled:
            return
        if not _reusable(cache):
            if self.supported is None:
                kinds = sorted({type(layer).__name__ for layer in getattr(cache, "layers", [])})
                built = "returned no cache" if cache is None else f"built a {type(cache).__name__} ({', '.join(kinds)})"
                warnings.warn(f"prefix reuse needs full-attention DynamicLayer caches; this model's generate {built}: "
                              "generating without reuse", stacklevel=3)
            self.supported = False
            self.kept = []
            return
        self.supported = True
        fed = cache.layers[0].keys.shape[2] - width  # completion tokens fed back (a batch's last token never is)
        continued = {id(kept) for kept, length in filter(None, matches) if length >= kept.prompt_length}
        self.kept = [kept for kept in self.kept if id(kept) not in continued]  # superseded by the rows continuing them
        for row, ids in enumerate(batch):
            n = min(lengths[row], fed)
            start, stop = width - len(ids), width + n
            layers = [(layer.keys[row : row + 1, :, start:stop].clone(),
                       layer.values[row : row + 1, :, start:stop].clone()) for layer in cache.layers]
            self.kept.append(_Kept(torch.tensor(list(ids) + list(completions[row][:n]), dtype=torch.long), len(ids),
                                   layers))
        del self.kept[: max(0, len(self.kept) - self.capacity)]
