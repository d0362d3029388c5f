"""Teacher forcing: a model's next-token log-probabilities over given token sequences (batched, no grad).

The one forward pass the held-out NLL (`balancetrl.eval.heldout`) and the forgetting measures
(`balancetrl.eval.forgetting`) both read: row `t` of a sequence's result is `log p(· | ids[:t+1])`, the distribution
the model puts on token `t + 1`, log-softmaxed in float64 from the model's logits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def next_token_log_probs(
    model, sequences: Sequence[Sequence[int]], batch_size: int = 8
) -> Iterator[torch.Tensor]:
    """Yield, per sequence and in input order, a `[len(ids) - 1, vocab]` float64 CPU tensor of next-token
    log-probabilities (row `t` predicts `ids[t + 1]`).

    Sequences are right-padded into batches of `batch_size` under an attention mask: a causal model's outputs at
    the real positions do not depend on padding that follows them. The model runs in eval mode (no dropout) and is
    put back in the mode it was in.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, ids in enumerate(sequences):
        if len(ids) < 2:
            raise ValueError(f"sequence {i} has {len(ids)} token(s); scoring needs at least 2")
    device = next(model.parameters()).device
    pad_id = 0  # any id: padded positions are masked out and never read back
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start : start + batch_size]
            width = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
                attention_mask[row, : len(ids)] = 1
            # no_grad around the forward only, never across a `yield`: grad mode is global, and a generator suspended
            # inside no_grad (two of them interleaved, as forgetting reads base and tuned) leaves it off for the caller
            with torch.no_grad():
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
                rows = [torch.log_softmax(logits[row, : len(ids) - 1].to("cpu", torch.float64), dim=-1)
                        for row, ids in enumerate(batch)]
            yield from rows
    finally:
        model.train(was_training)
