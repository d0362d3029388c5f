"""What every generation backend shares: the request types, the one completion record, the two interfaces callers
take a backend by, sharding across ranks, seeding that leaves the training RNG alone, and the progress bar of long
generation."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

Conversation = list[dict[str, Any]]
Tools = list[dict[str, Any]] | None


@dataclass
class Completion:
    """One generated assistant turn."""

    text: str  # decoded up to (excluding) the first stop token
    prompt_tokens: int
    completion_tokens: int  # generated tokens, the stop token included when generation reached it
    latency: float  # seconds: this sample's share of its batch's wall time


# Two interfaces, one per kind of caller; TransformersGeneration offers both. Defaults (`= ...`) are each backend's.
@runtime_checkable
class GenerationBackend(Protocol):
    """Conversations in, texts out: what HDR regeneration asks of a backend (``TransformersGeneration``,
    ``VLLMBackend``). Collective under several processes: every rank passes the same prompts."""

    def generate(self, prompts: list[Conversation], tools: list[Tools], *, num_generations: int = ...,
                 temperature: float = ..., max_new_tokens: int = ..., seed: int | None = ...) -> list[list[str]]:
        """Return, per prompt, ``num_generations`` completion texts of the assistant turn that follows it."""
        ...


@runtime_checkable
class CompletionBackend(Protocol):
    """Rendered prompts (token ids) in, ``Completion`` records out: what evaluation asks of an engine
    (``TransformersGeneration``, ``OfflineVLLM``), greedy unless told otherwise."""

    progress: str | None  # the name of the progress bar ``complete`` shows, None for none: evaluation sets it per part

    def complete(self, prompt_ids: list[list[int]], *, num_generations: int = ..., temperature: float = ...,
                 max_new_tokens: int = ..., seed: int | None = ...) -> list[list[Completion]]:
        """Return, per prompt, ``num_generations`` completions with their token counts and latency."""
        ...


def shard_bounds(num_items: int, num_processes: int, process_index: int) -> tuple[int, int]:
    """Contiguous shard ``[start, stop)`` of rank ``process_index``: ranks hold ``ceil(n / world)`` items each,
    the last ones fewer (possibly none). Gathering the shards in rank order restores the input order."""
    per_rank = -(-num_items // num_processes)
    start = min(process_index * per_rank, num_items)
    return start, min(start + per_rank, num_items)


def padded_shard(num_items: int, num_processes: int, process_index: int) -> tuple[list[int], int]:
    """This rank's item indices (its `shard_bounds` shard) padded to ``ceil(n / world)`` with copies of its first item
    (item 0 on an empty shard), and how many of them are real.

    Every rank then runs the same number of ``generate`` calls: under ZeRO-3 and FSDP2, transformers' ``generate``
    syncs the ranks at every token (``synced_gpus``), so a rank with fewer batches would leave the others waiting in
    their last one forever. The padded rows' outputs are dropped before the gather.
    """
    start, stop = shard_bounds(num_items, num_processes, process_index)
    real = list(range(start, stop))
    per_rank = -(-num_items // num_processes)
    filler = real[0] if real else 0
    return real + [filler] * (per_rank - len(real)) if num_items else [], len(real)


def check_request(prompts: Sequence, tools: Sequence | None, num_generations, temperature, max_new_tokens) -> None:
    if tools is not None and len(prompts) != len(tools):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(tools)} tool lists; pass None for a prompt without tools"
        )
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def gather(accelerator, local: list) -> list:
    if accelerator is None or accelerator.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    return gather_object(local)


@contextmanager
def seeded(seed: int | None, device: torch.device):
    """Seed sampling without touching the training RNG streams: HDR resume needs the same texts for the same
    (weights, seed), and training after a round must not depend on how many tokens were sampled in it."""
    if seed is None:
        yield
        return
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # also seeds every CUDA device
        yield


def progress_bar(total: int, desc: str | None, *, main_process: bool = True, unit: str = "sample"):
    """tqdm bar (done / total, rate) on the main process; ``desc=None`` hides it. Shown on non-TTY streams too
    (``make demo`` pipes its output), where tqdm's own default would hide it."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=desc is None or not main_process, dynamic_ncols=True)
