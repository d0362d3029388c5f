"""The epoch plan of an HDR job and the dataset whose content changes between epochs.

Trainer fixes `max_steps` (hence the LR schedule and the progress bar) before the first step. So every epoch's
size is decided up front: cold-start epochs are the base set, every round epoch has exactly `round_size` samples
(accepted answers cycled, plus base replay). Only *which* samples fill a round epoch is decided by the round.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from ..segments import COT_MASK

COLUMNS = ("input_ids", "labels", COT_MASK)


@dataclass(frozen=True)
class EpochPlan:
    cold_start_epochs: int
    max_rounds: int
    epochs_per_round: int
    base_size: int
    round_size: int

    @property
    def num_epochs(self) -> int:
        return self.cold_start_epochs + self.max_rounds * self.epochs_per_round

    def size(self, epoch: int) -> int:
        return self.base_size if epoch < self.cold_start_epochs else self.round_size

    def round_of(self, epoch: int) -> tuple[int, int]:
        """(round, epoch within the round); round 0 is the cold start."""
        if epoch < self.cold_start_epochs:
            return 0, epoch
        k, j = divmod(epoch - self.cold_start_epochs, self.epochs_per_round)
        return k + 1, j


class RoundDataset(torch.utils.data.Dataset):
    """A fixed-length view over the prepared base set and the prepared accepted answers of the current round."""

    def __init__(self, base):
        missing = set(COLUMNS) - set(base.column_names)
        if missing:
            raise ValueError(f"the prepared train dataset lacks {sorted(missing)}")
        self.base = base
        self.extra = None
        self.index: list[int] = list(range(len(base)))  # j >= 0: base[j]; j < 0: extra[-j - 1]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        j = self.index[i]
        row = self.base[j] if j >= 0 else self.extra[-j - 1]
        return {k: row[k] for k in COLUMNS}

    def show_base(self) -> None:
        self.extra, self.index = None, list(range(len(self.base)))

    def show_round(self, accepted, size: int, replay_ratio: float, seed: int) -> dict[str, int]:
        """Fill `size` slots: `replay_ratio` of them (all, if nothing was accepted) with base samples, the rest
        cycling through the accepted answers. Deterministic in `seed`."""
        rng = random.Random(seed)
        n_accepted = len(accepted) if accepted is not None else 0
        n_replay = size if n_accepted == 0 else min(size, round(replay_ratio * size))
        n_new = size - n_replay
        replay = [j for _ in range(math.ceil(n_replay / max(len(self.base), 1))) for j in rng.sample(range(len(self.base)), len(self.base))]
        new = [-(i % n_accepted) - 1 for i in range(n_new)] if n_accepted else []
        self.extra, self.index = accepted, replay[:n_replay] + new
        return {"replay": n_replay, "accepted_slots": n_new}
