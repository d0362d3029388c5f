"""`BalanceSFTTrainer`: TRL's `SFTTrainer` with the SSB loss.

Thin on top of TRL: the dataset gets one extra per-token column (`cot_mask`, see `segments.py`),
the collator pads it like the labels, `get_batch_samples` counts |C| and |F| over the optimizer
step like transformers counts `num_items_in_batch`, and `compute_loss` reweights the per-token
log-probs of TRL's own fused LM-head forward (`loss.py`). With `ssb=False` the loss is TRL's, untouched.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import is_liger_kernel_available
from trl import SFTTrainer
from trl.data_utils import pack_dataset
from trl.trainer.utils import pad

from ..hdr.epochs import HDRTrainerMixin
from ..runtime.compat import check_private_api
from ..runtime.cpu import warn_if_bf16_is_emulated
from ..runtime.engines import SSB_PARAM_GROUP, engine_report, format_engine, refuse_silent_downgrade
from ..segments import COT_MASK, SampleError, SegmentSpec, tokenize_with_segments
from .balance_sft_config import BalanceSFTConfig
from .loss import lambda_from_phi, phi_from_lambda, ssb_loss

SSB_MODULE = "balancetrl_ssb"  # attribute name of λ's module on the model
SSB_STATE_FILE = "balancetrl_ssb.json"  # λ's value inside each checkpoint folder


class SSBWeight(nn.Module):
    """Holds φ, the one free scalar behind λ. A module of the model so DDP/DeepSpeed/FSDP see its gradient.

    φ has shape (1,), not (): DeepSpeed views every parameter as bytes to broadcast it (`p.view(torch.uint8)`,
    impossible for a 0-dim tensor) and FSDP2 shards parameters along dim 0.
    """

    def __init__(self, lambda_init: float, lambda_min: float, lambda_max: float, trainable: bool, dtype=torch.float32):
        super().__init__()
        self.lambda_min, self.lambda_max = lambda_min, lambda_max
        phi = torch.tensor([phi_from_lambda(lambda_init, lambda_min, lambda_max)], dtype=dtype)
        self.phi = nn.Parameter(phi, requires_grad=trainable)

    def forward(self) -> torch.Tensor:
        # Called as a module (not by reading .phi) so ZeRO-3 gathers the partitioned parameter first.
        phi = self.phi if self.phi.dtype == torch.float64 else self.phi.float()
        if hasattr(phi, "full_tensor"):  # FSDP2: a DTensor sharded over the ranks, gathered (differentiably) here
            phi = phi.full_tensor()
        return lambda_from_phi(phi, self.lambda_min, self.lambda_max).reshape(())

    @contextmanager
    def full_phi(self, modifier: bool = False):
        """φ as a whole local tensor, under every sharding. Collective under ZeRO-3 and FSDP2: every rank enters it.

        ZeRO-3 keeps a 0-element shard outside the forward (gathered here, and written back from rank 0 when
        `modifier`); FSDP2 keeps a DTensor (its full value read; written through its local shard).
        """
        phi = self.phi
        if hasattr(phi, "ds_id"):  # a ZeRO-3 partitioned parameter
            import deepspeed

            with deepspeed.zero.GatheredParameters([phi], modifier_rank=0 if modifier else None):
                yield phi.data
        elif hasattr(phi, "full_tensor"):  # FSDP2's DTensor
            full = phi.data.full_tensor()
            yield full
            if modifier:
                from torch.distributed.tensor import distribute_tensor

                phi.data.copy_(distribute_tensor(full, phi.device_mesh, phi.placements))
        else:
            yield phi.data


class SegmentCollator:
    """Wraps TRL's collator and pads/flattens `cot_mask` exactly as it does `labels`."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        masks = [torch.tensor(example.pop(COT_MASK)) for example in examples]
        batch = self.collator(examples)
        padding_free = getattr(self.collator, "padding_free", False)
        if padding_free:
            masks = [torch.cat(masks)]
        batch[COT_MASK] = pad(
            masks, padding_value=0, padding_side="right",
            pad_to_multiple_of=getattr(self.collator, "pad_to_multiple_of", None),
        )
        if batch[COT_MASK].shape != batch["labels"].shape:
            raise RuntimeError(f"cot_mask {tuple(batch[COT_MASK].shape)} != labels {tuple(batch['labels'].shape)}")
        return batch


def refuse_unsupported(args: BalanceSFTConfig, compute_loss_func=None) -> None:
    """Settings that would make the SSB loss silently wrong, refused before the model is touched."""
    if args.ssb and compute_loss_func is not None:
        raise ValueError(
            "compute_loss_func is not supported with ssb=True: TRL then takes the loss from compute_loss_func and runs "
            "its fused LM-head forward under no_grad, so the SSB loss would carry no gradient. Drop compute_loss_func "
            "(SSB is the loss), or set ssb=False for TRL's loss path"
        )
    if args.use_liger_kernel and not is_liger_kernel_available():
        raise ValueError(
            "use_liger_kernel=True needs liger-kernel (>= 0.3.0, Triton, a GPU): `pip install liger-kernel`, or set "
            "use_liger_kernel=False. With it, TRL applies Liger's layer kernels only and keeps its fused LM head, "
            "whose per-token log-probs the SSB loss reads"
        )


def refuse_unsupported_parallelism(args: BalanceSFTConfig, parallelism) -> None:
    """Model-parallel layouts whose loss the segment masks cannot follow (read off the accelerator, which also sees
    what an accelerate YAML configured)."""
    if parallelism is None:
        return
    if parallelism.cp_enabled or parallelism.sp_enabled:
        kind = "context parallelism (cp_size > 1)" if parallelism.cp_enabled else (
            f"sequence parallelism ({parallelism.sp_backend} Ulysses, sp_size > 1)")
        raise ValueError(
            f"{kind} is not supported by BalanceSFTTrainer: it shards each sequence across ranks after the collator, "
            "but the CoT/call mask is not sharded with it, and under DeepSpeed Ulysses Trainer reduces the model's own "
            "NLL instead of the SSB loss. Train with data parallelism (DDP, ZeRO, FSDP) and a max_length that fits"
        )
    if args.ssb and parallelism.tp_size > 1:
        raise ValueError(
            f"tensor parallelism (tp_size={parallelism.tp_size}) is not supported with ssb=True: the ranks of a "
            "tensor-parallel group see the same batch, so the step's |C| and |F| counted over all processes are "
            "tp_size times too large. Use data parallelism (DDP, ZeRO, FSDP), or ssb=False for TRL's loss"
        )


class _EngineReport(TrainerCallback):
    """Records (and prints, on the main process) the engine the prepared trainer really runs."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        trainer.engine = engine_report(trainer)
        if trainer.accelerator.is_main_process:
            print(format_engine(trainer.engine), flush=True)


class BalanceSFTTrainer(HDRTrainerMixin, SFTTrainer):
    """[`~trl.SFTTrainer`] trained with the Self-adjusted Signal Balancing loss of BalanceSFT.

    Takes the same arguments as `SFTTrainer`, with a [`BalanceSFTConfig`]. The training data are conversational
    (`messages`, optional `tools`): assistant turns with `reasoning_content` and `tool_calls`, multi-turn allowed.
    λ is `trainer.ssb_lambda`; `ssb/lambda`, `ssb/loss_cot`, `ssb/loss_call`, `ssb/tokens_cot`, `ssb/tokens_call`
    are logged every logging step.
    """

    _tag_names = ["trl", "sft", "balancetrl", "balance-sft"]

    def __init__(self, model, args: BalanceSFTConfig | None = None, *pos, **kwargs):
        check_private_api()  # the private Trainer/TRL methods overridden here still have the tested signatures
        if args is None:
            args = BalanceSFTConfig(output_dir="balance-sft-output")
        elif not isinstance(args, BalanceSFTConfig):
            raise TypeError(f"BalanceSFTTrainer needs a BalanceSFTConfig, got {type(args).__name__}")
        self._segment_spec = SegmentSpec(args.cot_start, args.cot_end, args.mask_empty_cot)
        refuse_unsupported(args, compute_loss_func=kwargs.get("compute_loss_func"))
        super().__init__(model, args, *pos, **kwargs)
        refuse_unsupported_parallelism(args, self.accelerator.parallelism_config)
        refuse_silent_downgrade(self.accelerator)  # an FSDP config accelerate would run as DDP, before any step
        warn_if_bf16_is_emulated(args.bf16, args.device.type)  # honoured, but hours slower: said before the first step
        self.data_collator = SegmentCollator(self.data_collator)
        self._ssb_window = torch.zeros(4, dtype=torch.float64)  # Σℓ_C, Σℓ_F, |C|, |F| since the last log
        self._ssb_step_counts: tuple[torch.Tensor, torch.Tensor] | None = None
        self._ssb_weight: SSBWeight | None = None
        if args.ssb:
            self._attach_ssb_weight()
        self.engine: dict | None = None  # what really trains, read once the engine is prepared (engines.py)
        self.add_callback(_EngineReport(self))
        self._attach_hdr_callbacks()

    # ---- λ: state of the training, not weights of the model ----

    def _attach_ssb_weight(self) -> None:
        args = self.args
        reference = next(self.model.parameters())
        # fp32 even for a bf16 model (a bf16 φ moves in steps of 1/128); fp64 models keep fp64 throughout
        dtype = torch.float64 if reference.dtype == torch.float64 else torch.float32
        self._ssb_weight = SSBWeight(
            args.ssb_lambda_init, args.ssb_lambda_min, args.ssb_lambda_max, args.ssb_lambda_mode == "learnable", dtype
        ).to(reference.device)
        self.model.add_module(SSB_MODULE, self._ssb_weight)
        if isinstance(self.model, PreTrainedModel):
            # save_pretrained drops it, and a resumed checkpoint lacking it loads without a missing-key warning
            ignore = set(self.model._keys_to_ignore_on_save or ())
            self.model._keys_to_ignore_on_save = ignore | {f"{SSB_MODULE}.phi"}

    @property
    def ssb_lambda(self) -> float | None:
        """Current λ (None with `ssb=False`). Collective under ZeRO-3 and FSDP2 (φ is gathered): read it on every rank."""
        phi = self.ssb_phi
        if phi is None:
            return None
        weight = self._ssb_weight
        return float(lambda_from_phi(torch.tensor(phi, dtype=torch.float64), weight.lambda_min, weight.lambda_max))

    @property
    def ssb_phi(self) -> float | None:
        """Current φ, the free parameter behind λ (None with `ssb=False`); collective like `ssb_lambda`."""
        if self._ssb_weight is None:
            return None
        with torch.no_grad(), self._ssb_weight.full_phi() as phi:
            return float(phi.reshape(-1)[0])

    @property
    def loss_is_scaled_for_ga(self) -> bool | None:
        # The SSB loss is normalised by the step's token counts, so Trainer must not divide it by the accumulation
        # steps again; with ssb=False, leave TRL's own rule alone.
        return True if self.args.ssb else None

    def create_optimizer(self, model=None):
        weight = self._ssb_weight
        if weight is None or not weight.phi.requires_grad:
            return super().create_optimizer(model)
        weight.phi.requires_grad_(False)  # keep φ out of the model's groups (no weight decay, its own lr)
        try:
            optimizer = super().create_optimizer(model)
        finally:
            weight.phi.requires_grad_(True)
        # Trainer calls this more than once (under DeepSpeed: in deepspeed_init, then again in _prepare_for_training,
        # which returns the optimizer already built): φ gets its group once.
        if not any(p is weight.phi for group in optimizer.param_groups for p in group["params"]):
            optimizer.add_param_group({"params": [weight.phi], "lr": self.args.ssb_lambda_lr, "weight_decay": 0.0,
                                       "name": SSB_PARAM_GROUP})
        return optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        if self._ssb_weight is None or not getattr(self.model, "is_distributed_loading_by_transformers", False):
            return super().save_model(output_dir, _internal_call)
        # A model sharded at load time is saved from a freshly gathered state dict that skips _keys_to_ignore_on_save
        # (transformers 5.23, gather_full_state_dict): λ's module leaves the model while it is written.
        with self.model_weights_only():
            return super().save_model(output_dir, _internal_call)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self._ssb_weight is not None:
            state = {"phi": self.ssb_phi, "lambda": self.ssb_lambda}  # every rank: a collective read when sharded
            if self.args.should_save:
                folder = os.path.join(self._get_output_dir(trial=trial),
                                      f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
                with open(os.path.join(folder, SSB_STATE_FILE), "w") as f:
                    json.dump(state, f)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, SSB_STATE_FILE)
        if self._ssb_weight is not None and os.path.isfile(path):
            with open(path) as f:
                phi = json.load(f)["phi"]
            with torch.no_grad(), self._ssb_weight.full_phi(modifier=True) as full:
                full.fill_(phi)

    # ---- the interface HDR (and a user's own callback) works through ----

    @contextmanager
    def model_weights_only(self):
        """λ's module leaves the model for the duration, for readers that take every parameter of the model for a model
        weight: transformers' gathered save of a model sharded at load time, TRL's weight sync into vLLM (vLLM refuses
        a name its model lacks: "There is no module or parameter named 'balancetrl_ssb'")."""
        if self._ssb_weight is None or SSB_MODULE not in self.model._modules:
            yield
            return
        del self.model._modules[SSB_MODULE]
        try:
            yield
        finally:
            self.model.add_module(SSB_MODULE, self._ssb_weight)

    @property
    def training_chat_template(self) -> str:
        """The chat template training renders with (the `chat_template` argument, else the tokenizer's own)."""
        return self.chat_template or self._tokenizer.chat_template

    def is_trainable(self, record: dict) -> bool:
        """Whether `record` tokenizes under this trainer's segment rules (CoT markers, empty-CoT masking)."""
        try:
            tokenize_with_segments(record, self._tokenizer, self.training_chat_template, self._segment_spec)
        except SampleError:
            return False
        return True

    def prepare_records(self, records: list[dict], name: str):
        """Canonical records as this trainer's training rows (tokenized with segment masks, truncated as configured)."""
        from ..data.training import to_training_dataset

        return self._prepare_dataset(to_training_dataset(records), self.processing_class, self.args, False, None, name)

    def log_now(self, logs: dict[str, float]) -> None:
        """Log `logs` at the current step without flushing the SSB and TRL metric windows into them."""
        Trainer.log(self, logs)

    # ---- data: segment masks travel with input_ids ----

    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        from trl.data_utils import get_dataset_column_names

        columns = get_dataset_column_names(dataset)
        if "input_ids" not in columns:
            if "messages" not in columns:
                raise ValueError(
                    f"BalanceSFTTrainer needs a conversational {dataset_name} dataset with a 'messages' column "
                    f"(and optionally 'tools'); got columns {columns}"
                )
            template = self.training_chat_template
            spec, assistant_only = self._segment_spec, args.assistant_only_loss

            def tokenize(example, index):
                try:
                    return tokenize_with_segments(example, self._tokenizer, template, spec, assistant_only)
                except SampleError as e:
                    raise SampleError(index, e.reason, dataset_name) from None

            kwargs = {"desc": f"Tokenizing {dataset_name} dataset with segments"} if hasattr(dataset, "num_rows") else {}
            dataset = dataset.map(tokenize, with_indices=True, remove_columns=columns, **kwargs)
        elif COT_MASK not in columns:
            raise ValueError(f"the pre-tokenized {dataset_name} dataset has no '{COT_MASK}' column")

        if args.max_length is not None and not packing:
            if args.truncation_mode != "keep_start":
                raise ValueError(f"unsupported truncation_mode {args.truncation_mode!r}")
            n = args.max_length
            dataset = dataset.map(lambda ex: {k: ex[k][:n] for k in ("input_ids", "labels", COT_MASK)})
        if packing:
            if args.max_length is None:
                raise ValueError("When packing is enabled, `max_length` can't be `None`.")
            dataset = dataset.select_columns(["input_ids", "labels", COT_MASK])
            dataset = dataset.filter(lambda ex: any(label != -100 for label in ex["labels"]))
            if args.shuffle_dataset:
                dataset = dataset.shuffle(seed=args.seed)
            dataset = pack_dataset(dataset, args.max_length, args.packing_strategy)
        # TRL's own pass: truncation (a no-op now), dropping fully masked samples, shuffling
        return super()._prepare_dataset(dataset, processing_class, args, False, None, dataset_name)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if COT_MASK not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, COT_MASK]

    # ---- the loss ----

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        counts = torch.zeros(2, dtype=torch.long, device=device)
        for batch in batch_samples:
            target = batch["labels"][..., 1:].ne(-100)
            cot = batch[COT_MASK][..., 1:].bool() & target
            counts += torch.stack([cot.sum(), (target & ~cot).sum()]).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._ssb_step_counts = (counts[0], counts[1])
        return batch_samples, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        cot_mask = inputs.pop(COT_MASK)
        captured = []
        # TRL's compute_loss runs the fused LM-head forward and logs its metrics; we read that same forward's
        # per-token log-probs instead of running a second one.
        handle = model.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            handle.remove()
        fused = self._fused_forward(captured)
        target = fused.label_mask
        cot = cot_mask[:, 1:].bool() & target
        call = target & ~cot
        training = self.model.training
        if training and self._ssb_step_counts is not None:
            num_cot, num_call = self._ssb_step_counts
        else:  # evaluation: the batch alone
            num_cot, num_call = cot.sum(), call.sum()
        lam = self._ssb_weight() if self._ssb_weight is not None else torch.tensor(0.0, device=target.device)
        parts = ssb_loss(fused.log_probs, cot, call, lam, num_cot, num_call)
        if training:
            window = torch.stack([parts.nll_cot.double(), parts.nll_call.double(), cot.sum().double(), call.sum().double()])
            # the ranks of a tensor-parallel group (ssb=False only) hold the same batch: count it once
            self._ssb_window += self.accelerator.reduce(window, reduction="sum").cpu() / self._tp_size
        if not self.args.ssb:
            return result
        loss = parts.loss
        if training and self.args.average_tokens_across_devices and self._ssb_step_counts is not None:
            # the counts are global and DDP averages gradients over processes, as in TRL's own loss
            loss = loss * self.accelerator.num_processes
        if self.aux_loss_enabled:
            # TRL's MoE load-balancing term, scaled as TRL scales it: a per-micro-batch mean that DDP averages, divided
            # by the accumulation steps in training (Trainer leaves accumulation to this loss, see loss_is_scaled_for_ga)
            if fused.aux_loss is None:
                raise RuntimeError("the MoE model returned no aux_loss although TRL asked for its router logits")
            # outside train() (a user's own evaluation call) Trainer has no accumulation loop and no such attribute
            steps = getattr(self, "current_gradient_accumulation_steps", 1) if training else 1
            loss = loss + self.router_aux_loss_coef * fused.aux_loss / steps
        return (loss, result[1]) if return_outputs else loss

    def _fused_forward(self, captured: list):
        """The one output of TRL's fused LM-head forward among the model calls of `SFTTrainer.compute_loss`."""
        fused = [out for out in captured if getattr(out, "log_probs", None) is not None]
        if len(fused) != 1:
            import trl

            raise RuntimeError(
                f"BalanceSFTTrainer expects TRL's compute_loss to run exactly one fused LM-head forward (outputs with "
                f"log_probs), found {len(fused)} among {len(captured)} model calls (trl {trl.__version__}). This TRL "
                "version computes the loss another way, and the SSB loss cannot be read from it: use the trl version "
                "pinned in setup.cfg"
            )
        fused = fused[0]
        if self.args.ssb and self.model.training and torch.is_grad_enabled() and not fused.log_probs.requires_grad:
            raise RuntimeError(
                "TRL's fused LM-head forward ran without gradient (TRL took the training loss from another forward), "
                "so the SSB loss would not train the model: a loss path BalanceSFTTrainer does not support"
            )
        return fused

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and self._ssb_window[2:].sum() > 0:
            nll_cot, nll_call, n_cot, n_call = self._ssb_window.tolist()
            logs["ssb/loss_cot"] = nll_cot / n_cot if n_cot else 0.0
            logs["ssb/loss_call"] = nll_call / n_call if n_call else 0.0
            logs["ssb/tokens_cot"] = int(n_cot)
            logs["ssb/tokens_call"] = int(n_call)
            if self._ssb_weight is not None:
                logs["ssb/lambda"] = self.ssb_lambda
            self._ssb_window.zero_()
        super().log(logs, start_time)
