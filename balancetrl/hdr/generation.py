"""Regeneration backends of the HDR loop, behind one small interface.

Each HDR round asks the current model for ``num_generations`` fresh answers to every hard sample. Two backends
answer that call:

- ``TransformersGeneration``: batched ``model.generate`` on the training model itself (CPU machines, tests).
- ``VLLMBackend``: a thin adapter over TRL's own ``VLLMGeneration`` (colocate, optionally with sleep mode, or a
  ``trl vllm-serve`` server), reusing TRL's weight sync for FSDP / DeepSpeed ZeRO / PEFT instead of a hand-made one.

Both render prompts the same way (the training chat template, ``add_generation_prompt=True``, with the sample's
tools) and return raw completion texts, cut at the end-of-turn token. Parsing them into reasoning + calls is the
caller's job (``balancetrl.data.calls.parse_assistant_output``), so both backends share that parser too.

Every backend is collective under multiple processes: all ranks call ``generate`` with the same full list of
prompts, each rank works on its shard, and every rank gets the full result back, in input order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol, runtime_checkable

import torch

Conversation = list[dict[str, Any]]
Tools = list[dict[str, Any]] | None


@runtime_checkable
class GenerationBackend(Protocol):
    def generate(
        self,
        prompts: list[Conversation],
        tools: list[Tools],
        *,
        num_generations: int,
        temperature: float,
        max_new_tokens: int,
        seed: int | None,
    ) -> list[list[str]]:
        """Return, per prompt, ``num_generations`` completion texts of the assistant turn that follows it."""
        ...


# --------------------------------------------------------------------------------------------------------------------
# Shared helpers


def render_prompts(
    tokenizer,
    prompts: Sequence[Conversation],
    tools: Sequence[Tools],
    chat_template: str | None = None,
    chat_template_kwargs: dict | None = None,
) -> list[list[int]]:
    """Token ids of each conversation rendered up to an open assistant turn, exactly as training renders it."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor carries its tokenizer
    out = []
    for conversation, conversation_tools in zip(prompts, tools, strict=True):
        text = tokenizer.apply_chat_template(
            conversation,
            tools=conversation_tools or None,
            chat_template=chat_template,
            add_generation_prompt=True,
            tokenize=False,
            **(chat_template_kwargs or {}),
        )
        # The template already wrote any BOS it wants; the tokenizer must not add a second one.
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


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


def shard_bounds(num_items: int, num_processes: int, process_index: int) -> tuple[int, int]:
    """Contiguous shard ``[start, stop)`` of rank ``process_index``: ranks hold ``ceil(n / world)`` items each,
    the last ones fewer (possibly none). Gathering the shards in rank order restores the input order."""
    per_rank = -(-num_items // num_processes)
    start = min(process_index * per_rank, num_items)
    return start, min(start + per_rank, num_items)


def _check_request(prompts, tools, num_generations, temperature, max_new_tokens) -> None:
    if len(prompts) != len(tools):
        raise ValueError(
            f"got {len(prompts)} prompts but {len(tools)} tool lists; pass None for a prompt without tools"
        )
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def _gather(accelerator, local: list) -> list:
    if accelerator is None or accelerator.num_processes == 1:
        return local
    from accelerate.utils import gather_object

    return gather_object(local)


@contextmanager
def _seeded(seed: int | None, device: torch.device):
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


# --------------------------------------------------------------------------------------------------------------------
# transformers backend


class TransformersGeneration:
    """Batched, left-padded ``model.generate`` on the training model.

    ``model`` may be wrapped (DDP, DeepSpeed engine, FSDP; pass ``trainer.model_wrapped``) or a PEFT model: with an
    ``accelerator`` it is unwrapped through TRL's ``unwrap_model_for_generation`` (ZeRO-3 parameters gathered,
    gradient checkpointing paused), as GRPOTrainer does for its non-vLLM path. Plain temperature sampling
    (``top_p=1``, ``top_k=0``) by default, like TRL's vLLM defaults, so both backends sample the same distribution.
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
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.accelerator = accelerator
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.chat_template_kwargs = chat_template_kwargs
        self.top_p = top_p
        self.top_k = top_k

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
        _check_request(prompts, tools, num_generations, temperature, max_new_tokens)
        if self.accelerator is None:
            rank, world = 0, 1
        else:
            rank, world = self.accelerator.process_index, self.accelerator.num_processes
        start, stop = shard_bounds(len(prompts), world, rank)
        prompt_ids = render_prompts(
            self.tokenizer,
            prompts[start:stop],
            tools[start:stop],
            self.chat_template,
            self.chat_template_kwargs,
        )

        local: list[list[str]] = []
        with self._unwrapped() as model, self._full_params(), torch.no_grad():
            was_training = model.training
            model.eval()  # no dropout while sampling answers
            try:
                device = next(model.parameters()).device
                with _seeded(seed, device):
                    for i in range(0, len(prompt_ids), self.batch_size):
                        local.extend(
                            self._generate_batch(
                                model,
                                prompt_ids[i : i + self.batch_size],
                                device,
                                num_generations,
                                temperature,
                                max_new_tokens,
                            )
                        )
            finally:
                model.train(was_training)
        return _gather(self.accelerator, local)

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
        kwargs = {"do_sample": False}
        if sampling:
            kwargs = {
                "do_sample": True,
                "temperature": temperature,
                "top_p": self.top_p,
                "top_k": self.top_k,
            }
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens,
            num_return_sequences=per_prompt,
            eos_token_id=stop_ids,
            pad_token_id=pad_id,
            **kwargs,
        )
        completions = out[:, width:].tolist()  # rows are prompt-major: p0s0, p0s1, ..., p1s0, ...
        texts = [decode_completion(self.tokenizer, ids, stop_ids) for ids in completions]
        return [
            texts[row * per_prompt : (row + 1) * per_prompt] * (num_generations // per_prompt)
            for row in range(len(batch))
        ]


# --------------------------------------------------------------------------------------------------------------------
# vLLM backend


@dataclasses.dataclass
class VLLMSettings:
    """Engine settings, named as TRL's ``VLLMGeneration`` arguments (``GRPOConfig.vllm_*`` without the prefix)."""

    mode: str = "colocate"
    # server mode (`trl vllm-serve --model <same model>`)
    server_base_url: str | None = None
    server_host: str = "0.0.0.0"
    server_port: int = 8000
    server_timeout: float = 240.0
    group_port: int = 51216
    # colocate mode
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_length: int | None = None
    max_num_seqs: int | None = None
    enable_sleep_mode: bool = False
    model_impl: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self):
        if self.mode not in ("colocate", "server"):
            raise ValueError(f"vllm mode must be 'colocate' or 'server', got {self.mode!r}")
        for name in ("server_port", "group_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise ValueError(f"{name} must be a TCP port (1-65535), got {port}")
        if self.server_timeout <= 0:
            raise ValueError(f"server_timeout must be > 0, got {self.server_timeout}")
        if self.tensor_parallel_size < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        for name in ("max_model_length", "max_num_seqs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.mode == "server":
            # These configure an in-process engine; silently ignoring them would hide a wrong setup.
            if self.enable_sleep_mode:
                raise ValueError("enable_sleep_mode applies to vllm mode 'colocate' only")
            if self.tensor_parallel_size != 1:
                raise ValueError(
                    "in server mode set tensor parallelism on the server: `trl vllm-serve --tensor_parallel_size N`"
                )

    @classmethod
    def from_args(cls, args, **overrides) -> VLLMSettings:
        """Read ``vllm_<field>`` attributes of a TRL-style config (e.g. ``GRPOConfig``); absent ones keep defaults."""
        values = {}
        for field in dataclasses.fields(cls):
            # TRL names it `trust_remote_code` (it also governs model loading), every other one `vllm_*`.
            name = field.name if field.name == "trust_remote_code" else f"vllm_{field.name}"
            if getattr(args, name, None) is not None:
                values[field.name] = getattr(args, name)
        values.update(overrides)
        return cls(**values)


def _vllm_available() -> bool:
    from trl.import_utils import is_vllm_available

    return is_vllm_available()


def vllm_call_plan(mode: str, num_generations: int, seed: int | None) -> list[tuple[int, int | None]]:
    """``(num_generations, seed)`` of each ``VLLMGeneration.generate`` call of one round.

    vLLM seeds per request and gives the n children of a request seeds ``seed + i``. Server mode sends one request
    with ``n``, so one call suffices. Colocate mode sends ``n`` duplicated requests with ``n=1``: under one seed they
    would all sample the same text, so each sample index gets its own call and seed ``seed + i`` (the same seeds
    server mode uses). Without a seed the duplicates draw from the engine's RNG and one call suffices.
    """
    if mode == "colocate" and seed is not None and num_generations > 1:
        return [(1, seed + i) for i in range(num_generations)]
    return [(num_generations, seed)]


class VLLMBackend:
    """Regeneration with TRL's ``VLLMGeneration``: it owns the engine or the server client and the weight sync.

    Build it where GRPOTrainer builds its own, before training allocates optimizer state (colocate mode reserves
    ``gpu_memory_utilization`` of the GPU at construction): e.g. ``VLLMBackend.from_trainer(trainer, settings)`` in the
    trainer's ``__init__``. Every round first pushes the current weights (``VLLMGeneration.sync_weights``, which
    gathers ZeRO-3/FSDP shards and merges LoRA adapters), then generates from token ids rendered with the training
    chat template. Collective: every rank must call ``generate`` with the same prompts.
    """

    def __init__(
        self,
        model,
        tokenizer,
        accelerator,
        settings: VLLMSettings | None = None,
        *,
        chat_template: str | None = None,
        chat_template_kwargs: dict | None = None,
        top_p: float = 1.0,
        top_k: int = 0,
        generation_kwargs: dict | None = None,
    ):
        if not _vllm_available():
            raise ImportError(
                "the 'vllm' generation backend needs vLLM (CUDA only): `pip install balancetrl[vllm]`, "
                "or use the 'transformers' backend"
            )
        if accelerator is None:
            raise ValueError("VLLMBackend needs the trainer's accelerator (TRL's VLLMGeneration is collective)")
        from trl.generation import vllm_generation

        self.settings = settings or VLLMSettings()
        self.tokenizer = tokenizer
        self.accelerator = accelerator
        self.chat_template = chat_template
        self.chat_template_kwargs = chat_template_kwargs
        self.generation_kwargs = dict(generation_kwargs or {})
        self._stop_ids = stop_token_ids(tokenizer, model)
        self.engine = vllm_generation.VLLMGeneration(
            model=model,
            accelerator=accelerator,
            processing_class=tokenizer,
            **dataclasses.asdict(self.settings),
            top_p=top_p,
            top_k=top_k,
            logprobs=None,  # texts only: skip logprob transfer
            generation_kwargs=self.generation_kwargs,
        )

    @classmethod
    def from_trainer(cls, trainer, settings: VLLMSettings | None = None, **kwargs) -> VLLMBackend:
        # trainer.model, not model_wrapped: the same module GRPOTrainer hands to VLLMGeneration.
        return cls(
            trainer.model,
            trainer.processing_class,
            trainer.accelerator,
            settings,
            **kwargs,
        )

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
        _check_request(prompts, tools, num_generations, temperature, max_new_tokens)
        if not prompts:
            return []  # every rank sees the same prompts, so every rank skips the collectives together
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        # VLLMGeneration slices server results by `process_index * len(prompts)`: shards must be of equal size, so
        # short ones are padded with copies of their last prompt (or of the global last one), then cut off again.
        start, stop = shard_bounds(len(prompts), world, rank)
        per_rank = -(-len(prompts) // world)
        shard = list(range(start, stop))
        shard += [shard[-1] if shard else len(prompts) - 1] * (per_rank - len(shard))
        prompt_ids = render_prompts(
            self.tokenizer,
            [prompts[i] for i in shard],
            [tools[i] for i in shard],
            self.chat_template,
            self.chat_template_kwargs,
        )

        engine = self.engine
        engine.temperature = temperature
        engine.max_completion_length = max_new_tokens
        # The model changed since the last round (or this is the first); TRL pushes FSDP/ZeRO/PEFT weights itself.
        engine.sync_weights()

        samples: list[list[list[int]]] = [[] for _ in shard]
        for calls_n, call_seed in vllm_call_plan(self.settings.mode, num_generations, seed):
            engine.generation_kwargs = dict(self.generation_kwargs)
            if call_seed is not None:
                engine.generation_kwargs["seed"] = call_seed
            # VLLMGeneration expects each prompt repeated num_generations times, consecutively (GRPO's layout).
            repeated = [ids for ids in prompt_ids for _ in range(calls_n)]
            _, completion_ids, _, _ = engine.generate(prompts=repeated, images=None, num_generations=calls_n)
            for row in range(len(shard)):
                samples[row].extend(completion_ids[row * calls_n : (row + 1) * calls_n])
        engine.generation_kwargs = dict(self.generation_kwargs)

        local = [[decode_completion(self.tokenizer, ids, self._stop_ids) for ids in row] for row in samples]
        return _gather(self.accelerator, local)[: len(prompts)]


# --------------------------------------------------------------------------------------------------------------------


def make_generation_backend(name: str, **kwargs) -> GenerationBackend:
    """``"transformers"`` → ``TransformersGeneration(**kwargs)``; ``"vllm"`` → ``VLLMBackend``, where keyword
    arguments named like ``VLLMSettings`` fields build its settings and the rest go to the constructor."""
    if name == "transformers":
        return TransformersGeneration(**kwargs)
    if name == "vllm":
        setting_names = {field.name for field in dataclasses.fields(VLLMSettings)}
        settings = kwargs.pop("settings", None)
        setting_kwargs = {key: kwargs.pop(key) for key in list(kwargs) if key in setting_names}
        if settings is not None and setting_kwargs:
            raise ValueError("pass either settings= or individual vLLM settings, not both")
        return VLLMBackend(settings=settings or VLLMSettings(**setting_kwargs), **kwargs)
    raise ValueError(f"unknown generation backend {name!r}; expected 'transformers' or 'vllm'")
