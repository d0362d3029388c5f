"""`BalanceSFTConfig`: TRL's `SFTConfig` plus the SSB loss settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import SFTConfig

from ..cot import DEFAULT_COT


@dataclass
class BalanceSFTConfig(SFTConfig):
    r"""
    Configuration class for the [`BalanceSFTTrainer`].

    Everything of [`~trl.SFTConfig`] applies; the fields below add the Self-adjusted Signal Balancing (SSB) loss of
    BalanceSFT. Defaults that differ from `SFTConfig`: `assistant_only_loss=True` (SSB splits the *assistant* tokens
    into CoT and call parts).

    Parameters:
        > SSB loss

        ssb (`bool`, *optional*, defaults to `True`):
            Whether to train with the SSB loss `λ·L_c + (1−λ)·L_f`, where `L_c` is the mean NLL of the CoT tokens and
            `L_f` the mean NLL of every other supervised assistant token (the call block, a plain answer, end of turn),
            each averaged over the whole optimizer step. `False` gives TRL's plain SFT loss exactly (the ablation
            baseline); the segment losses are still logged.
        ssb_lambda_init (`float`, *optional*, defaults to `0.7`):
            Initial λ, the weight of the CoT part (paper: 0.7).
        ssb_lambda_mode (`str`, *optional*, defaults to `"learnable"`):
            `"learnable"`: λ is trained with the model (its own optimizer parameter group). `"fixed"`: λ stays at
            `ssb_lambda_init`.
        ssb_lambda_lr (`float`, *optional*):
            Learning rate of λ's parameter group (it follows the same schedule as the model). Defaults to
            `learning_rate`. Since `∂L/∂λ = L_c − L_f`, λ drifts toward the part with the lower loss; a small value
            keeps it near its initial balance, a large one lets it move within a few hundred steps.
        ssb_lambda_min (`float`, *optional*, defaults to `0.05`):
            Lower bound of λ. λ is parameterised as `λ_min + (λ_max − λ_min)·sigmoid(φ)`, so it never leaves the
            bounds.
        ssb_lambda_max (`float`, *optional*, defaults to `0.95`):
            Upper bound of λ.
        cot_start (`str`, *optional*, defaults to `"<think>"`):
            Marker that opens a CoT span in the rendered assistant turn. The span runs to `cot_end`, markers included;
            an empty span (`<think>\n\n</think>`, as templates render turns without reasoning) is never CoT (see
            `mask_empty_cot`).
        cot_end (`str`, *optional*, defaults to `"</think>"`):
            Marker that closes a CoT span.
        mask_empty_cot (`bool`, *optional*, defaults to `True`):
            Whether to leave the tokens of an empty CoT block (`<think>\n\n</think>`, rendered by templates such as
            TRL's `qwen3_training` for a turn without reasoning) out of the loss. `True`: a turn without reasoning
            trains its call/answer only, so plain (no-CoT) rows do not teach a reasoning model to skip thinking.
            `False`: those tokens are trained as call tokens (TRL's own labels, exactly). Applies with `ssb=False`
            too, so both arms of the ablation see the same labels.
    """

    ssb: bool = field(
        default=True,
        metadata={"help": "Train with the SSB loss; False gives TRL's plain SFT loss exactly (ablation baseline)."},
    )
    ssb_lambda_init: float = field(default=0.7, metadata={"help": "Initial λ, the weight of the CoT part."})
    ssb_lambda_mode: str = field(
        default="learnable",
        metadata={"help": "'learnable' (λ trains in its own parameter group) or 'fixed'.", "choices": ["learnable", "fixed"]},
    )
    ssb_lambda_lr: float | None = field(
        default=None, metadata={"help": "Learning rate of λ's parameter group. Defaults to `learning_rate`."}
    )
    ssb_lambda_min: float = field(default=0.05, metadata={"help": "Lower bound of λ."})
    ssb_lambda_max: float = field(default=0.95, metadata={"help": "Upper bound of λ."})
    cot_start: str = field(default=DEFAULT_COT[0], metadata={"help": "Marker opening a CoT span."})
    cot_end: str = field(default=DEFAULT_COT[1], metadata={"help": "Marker closing a CoT span."})
    mask_empty_cot: bool = field(
        default=True,
        metadata={"help": "Leave empty CoT blocks (<think>\\n\\n</think>) out of the loss; False trains them as call tokens."},
    )
    assistant_only_loss: bool = field(
        default=True,
        metadata={"help": "Compute the loss on assistant tokens only (default True here: SSB splits assistant turns)."},
    )

    def __post_init__(self):
        super().__post_init__()
        self._check_numbers()
        if self.ssb_lambda_mode not in ("learnable", "fixed"):
            raise ValueError(f"ssb_lambda_mode must be 'learnable' or 'fixed', got {self.ssb_lambda_mode!r}")
        if not 0.0 <= self.ssb_lambda_min < self.ssb_lambda_max <= 1.0:
            raise ValueError(
                f"need 0 <= ssb_lambda_min < ssb_lambda_max <= 1, got {self.ssb_lambda_min}, {self.ssb_lambda_max}"
            )
        if not self.ssb_lambda_min < self.ssb_lambda_init < self.ssb_lambda_max:
            raise ValueError(
                f"ssb_lambda_init={self.ssb_lambda_init} must lie strictly inside "
                f"(ssb_lambda_min={self.ssb_lambda_min}, ssb_lambda_max={self.ssb_lambda_max})"
            )
        if self.ssb_lambda_lr is None:
            self.ssb_lambda_lr = self.learning_rate
        if not self.cot_start or not self.cot_end:
            raise ValueError("cot_start and cot_end must be non-empty strings")
        if self.ssb and self.loss_type != "nll":
            raise ValueError(f"the SSB loss is a weighted NLL; loss_type={self.loss_type!r} is not supported with ssb=True")
        if self.ssb and self.ddp_find_unused_parameters:
            raise ValueError(
                "ddp_find_unused_parameters=True does not work with ssb=True: λ is used after the model's forward, "
                "so DDP would mark it unused and then see its gradient (set it to False, or use static graphs)"
            )
        if self.ssb and self.ddp_find_unused_parameters is None:
            # transformers turns the unused-parameter search on when gradient checkpointing is off; λ lives outside
            # the forward, where that search would call it unused and DDP then fails on its gradient
            self.ddp_find_unused_parameters = False
        if self.ssb and self.label_smoothing_factor:
            raise ValueError("label_smoothing_factor is not supported with ssb=True (the SSB loss is a weighted NLL)")

    def _check_numbers(self) -> None:
        """Numbers transformers/TRL accept but cannot train with: refused here, before any model loads (a negative
        learning rate trains uphill, `num_train_epochs: -3` "finishes" untrained, `max_length: -1` fails in the
        collator). transformers itself checks `warmup_steps`, `logging_steps` and the strategies."""

        def number(name: str, value) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
            return value

        for name in ("learning_rate", "ssb_lambda_lr"):
            if getattr(self, name) is None:  # ssb_lambda_lr: defaults to learning_rate
                continue
            value = number(name, getattr(self, name))
            if value < 0 or math.isinf(value):
                raise ValueError(f"{name} must be a finite number >= 0, got {value} (e.g. {name}: 2.0e-5)")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        epochs = number("num_train_epochs", self.num_train_epochs)
        if self.max_steps <= 0 and not 0 < epochs < math.inf:
            raise ValueError(f"num_train_epochs must be > 0, got {epochs} (or set max_steps > 0 to train a number of "
                             "steps instead)")
        if self.max_length is not None and (isinstance(self.max_length, bool) or not isinstance(self.max_length, int)
                                            or self.max_length < 1):
            raise ValueError(f"max_length must be an integer >= 1 (tokens per sample) or None (no truncation), got "
                             f"{self.max_length!r}")
