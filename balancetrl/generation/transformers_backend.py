"""The transformers backend: batched, left-padded ``model.generate`` on the model in memory (CPU machines, tests,
evaluation without vLLM)."""

from __future__ import annotations

import time
from contextlib import nullcontext

import torch

from .base import (
    Completion,
    Conversation,
    Tools,
    check_request,
    gather,
    padded_shard,
    progress_bar,
    seeded,
)
from .decoding import completion_length, decode_completion, stop_token_ids
from .journal import GenerationJournal, decoding_context
from .prefix_cache import PrefixCache
from .prompts import render_prompts


class TransformersGeneration:
    """Batched, left-padded ``model.generate``; greedy at ``temperature=0``, else seeded sampling.

    ``model`` may be wrapped (DDP, DeepSpeed engine, FSDP; pass ``trainer.model_wrapped``) or a PEFT model: with an
    ``accelerator`` it is unwrapped through TRL's ``unwrap_model_for_generation`` (ZeRO-3 parameters gathered,
    gradient checkpointing paused), as GRPOTrainer does for its non-vLLM path. Plain temperature sampling
    (``top_p=1``, ``top_k=0``) by default, like TRL's vLLM defaults, so both backends sample the same distribution.

    Collective under multiple processes: every rank passes the same full list, works on its contiguous shard and
    gets the full result back in input order. ``progress`` names the progress bar shown on the main process
    (``None``: no bar). ``sort_by_length`` batches prompts of similar length together (less padding); it changes
    which prompts share a batch, hence sampled texts, so HDR keeps input order. ``journal`` (a
    ``GenerationJournal``, greedy and one process only) replays the batches it holds and records each new one as it
    finishes: a killed run resumes at the batch it was in.

    ``prefix_caching`` keeps each row's KV cache (prompt + completion) after a batch and reuses the longest common
    token prefix for the prompts of later batches (``prefix_cache.py``): a multi-turn step then prefills only what its
    conversation gained since the step before. Batches are formed as without it; greedy texts were the same wherever
    compared (reused KV comes from a forward of another shape, so it may differ in the last bits, as another batch
    size may). It keeps up to ``prefix_cache_size`` sequences (default ``batch_size``: one per conversation in flight) in device memory,
    and only for one completion per prompt (greedy, or ``num_generations=1``). Off by default: the kept KV belongs to
    the weights that computed it (call ``clear_prefix_cache()`` after changing them). ``prefix_cache()`` gives the
    counts (prompt tokens), shaped as ``OfflineVLLM.prefix_cache()``: ``queries``, ``hits``, ``hit_rate``.
    """

    def __init__(
        self,
        model,
        tokenizer,
        accelerator=None,
        batch_size: int = 8,
        chat_template: str | None = None,
        chat_template_kwargs: dict | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        progress: str | None = None,
        sort_by_length: bool = False,
        journal: GenerationJournal | None = None,
        prefix_caching: bool = False,
        prefix_cache_size: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if journal is not None and accelerator is not None and accelerator.num_processes > 1:
            raise ValueError("a generation journal records one process's batches; resume with a single process")
        self.model = model
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.accelerator = accelerator
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.chat_template_kwargs = chat_template_kwargs
        self.top_p = top_p
        self.top_k = top_k
        self.progress = progress
        self.sort_by_length = sort_by_length
        self.journal = journal
        self._prefix = PrefixCache(prefix_cache_size or batch_size, enabled=prefix_caching)

    def prefix_cache(self) -> dict:
        """Prefix reuse so far: ``{"enabled", "queries", "hits", "hit_rate"}``, in prompt tokens (``queries``: those
        of every batch generated, a journal replay excluded; ``hits``: those whose KV was reused, not computed)."""
        return self._prefix.counts()

    def clear_prefix_cache(self) -> None:
        """Drop the kept KV caches (needed after the weights change)."""
        self._prefix.clear()

    def _unwrapped(self):
        if self.accelerator is None:
            return nullcontext(self.model)
        from trl.models.utils import unwrap_model_for_generation

        return unwrap_model_for_generation(self.model, self.accelerator)

    def _full_params(self):
        if self.accelerator is None:
            return nullcontext()
        from trl.distributed import DistributedBackend

        # FSDP1 keeps shards outside forward; generate's many small forwards would each re-gather (and could hang
        # when ranks run different step counts), so materialise once, as GRPOTrainer does.
        return DistributedBackend(self.accelerator).summon_full_params(self.model, recurse=False)

    def _rank(self) -> tuple[int, int]:
        if self.accelerator is None:
            return 0, 1
        return self.accelerator.process_index, self.accelerator.num_processes

    def generate(
        self,
        prompts: list[Conversation],
        tools: list[Tools],
        *,
        num_generations: int = 1,
        temperature: float = 0.7,
        max_new_tokens: int = 512,
        seed: int | None = None,
    ) -> list[list[str]]:
        """Per conversation, ``num_generations`` completion texts (the HDR interface)."""
        check_request(prompts, tools, num_generations, temperature, max_new_tokens)
        rank, world = self._rank()
        indices, real = padded_shard(len(prompts), world, rank)
        prompt_ids = render_prompts(self.tokenizer, [prompts[i] for i in indices], [tools[i] for i in indices],
                                    self.chat_template, self.chat_template_kwargs)
        local = self._complete(prompt_ids, num_generations, temperature, max_new_tokens, seed)[:real]
        return gather(self.accelerator, [[c.text for c in row] for row in local])

    def complete(
        self,
        prompt_ids: list[list[int]],
        *,
        num_generations: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 512,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """Per already rendered prompt (token ids), ``num_generations`` completions with token counts and latency
        (the evaluation interface: greedy by default)."""
        check_request(prompt_ids, None, num_generations, temperature, max_new_tokens)
        rank, world = self._rank()
        indices, real = padded_shard(len(prompt_ids), world, rank)
        local = self._complete([prompt_ids[i] for i in indices], num_generations, temperature, max_new_tokens, seed)
        return gather(self.accelerator, local[:real])

    def _complete(self, prompt_ids, num_generations, temperature, max_new_tokens, seed) -> list[list[Completion]]:
        if self.journal is not None and temperature > 0:
            raise ValueError(
                "a generation journal replays greedy batches only (temperature=0): a sampled batch depends on the "
                "RNG state the batches before it left; generate without the journal"
            )
        order = list(range(len(prompt_ids)))
        if self.sort_by_length:
            order.sort(key=lambda i: len(prompt_ids[i]))
        out: list[list[Completion] | None] = [None] * len(prompt_ids)
        main = self.accelerator is None or self.accelerator.is_main_process
        with self._unwrapped() as model, self._full_params(), torch.no_grad():
            was_training = model.training
            model.eval()  # no dropout while generating
            bar = progress_bar(len(prompt_ids), self.progress, main_process=main)
            try:
                device = next(model.parameters()).device
                with seeded(seed, device):
                    for i in range(0, len(order), self.batch_size):
                        idx = order[i : i + self.batch_size]
                        rows = self._journaled_batch(
                            model, [prompt_ids[j] for j in idx], device, num_generations, temperature, max_new_tokens
                        )
                        for j, row in zip(idx, rows):
                            out[j] = row
                        bar.update(len(idx))
            finally:
                bar.close()
                model.train(was_training)
        return out  # type: ignore[return-value]

    def _journaled_batch(self, model, batch, device, num_generations, temperature, max_new_tokens):
        """The batch's completions: replayed from the journal when it holds them, else generated (and recorded)."""
        if self.journal is None:
            return self._generate_batch(model, batch, device, num_generations, temperature, max_new_tokens)
        key = self.journal.key(batch, num_generations=num_generations, max_new_tokens=max_new_tokens,
                               device=str(device), stop=stop_token_ids(self.tokenizer, model),
                               pad=self.tokenizer.pad_token_id, context=decoding_context(model))
        rows = self.journal.get(key)
        if rows is None:
            started, cpu_started = time.perf_counter(), time.process_time()
            rows = self._generate_batch(model, batch, device, num_generations, temperature, max_new_tokens)
            self.journal.put(key, rows, time.perf_counter() - started, time.process_time() - cpu_started)
        return rows

    def _generate_batch(self, model, batch, device, num_generations, temperature, max_new_tokens):
        stop_ids = stop_token_ids(self.tokenizer, model)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stop_ids[0]
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1

        sampling = temperature > 0
        # Greedy decoding gives the same text n times, and transformers refuses num_return_sequences > 1 for it.
        per_prompt = num_generations if sampling else 1
        # Greedy: unset the sampling knobs a model's generation config may carry, or transformers warns about them.
        kwargs = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if sampling:
            kwargs = {"do_sample": True, "temperature": temperature, "top_p": self.top_p, "top_k": self.top_k}
        reuse = self._prefix.active and per_prompt == 1
        started = time.perf_counter()
        if reuse:
            past, sources = self._prefix.past(batch)
            kwargs.update(past_key_values=past, return_dict_in_generate=True)
        else:
            self._prefix.count(batch)
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens,
            num_return_sequences=per_prompt,
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            **kwargs,
        )
        # a wrapped or replaced `generate` may return the ids alone: then there is no cache to keep (keep() says so)
        sequences = out.sequences if reuse and hasattr(out, "sequences") else out
        completions = sequences[:, width:].tolist()  # rows are prompt-major: p0s0, p0s1, ..., p1s0, ...
        if reuse:
            lengths = [completion_length(c, stop_ids) for c in completions]
            self._prefix.keep(batch, width, getattr(out, "past_key_values", None), completions, lengths, sources)
            del out
        latency = (time.perf_counter() - started) / len(batch)
        rows = []
        for row, ids in enumerate(batch):
            samples = [
                Completion(decode_completion(self.tokenizer, c, stop_ids), len(ids), completion_length(c, stop_ids),
                           latency)
                for c in completions[row * per_prompt : (row + 1) * per_prompt]
            ]
            rows.append(samples * (num_generations // per_prompt))
        return rows
