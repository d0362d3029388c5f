"""`HDRCallback`: the HDR loop between the epochs of one `trainer.train()` call.

    trainer = BalanceSFTTrainer(model, args, train_dataset=base, callbacks=[HDRCallback(HDRConfig(...), hard_set)])
    trainer.train()   # cold start, then rounds: regenerate → gate → judges → train on accepted (+ replay)

Rounds run at the end of the epoch before the round's first epoch, on every process (generation is collective;
the judges are asked once, on the main process, and their result broadcast). Model, optimizer, scheduler and λ
simply carry on. Each finished round is on disk (`hdr/round_NNN/`) before the next epoch starts, so a resumed job
loads finished rounds instead of redoing them, and a round cut short is redone with the same weights and seed,
its judge calls answered by the verdict cache.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from ..data.io import read_records
from .hdr_config import HDRConfig
from .rounds import HardSample, hard_sample, run_round
from .schedule import EpochPlan, RoundDataset
from .state import HDRState

if TYPE_CHECKING:
    from ..generation import GenerationBackend

logger = logging.getLogger(__name__)


class HDRCallback(TrainerCallback):
    """Runs the HDR rounds of BalanceSFT. Pass it in `BalanceSFTTrainer(callbacks=[...])` (or `add_callback`).

    Args:
        config: the loop's settings.
        hard_set: hard records (canonical format) or a JSONL path; defaults to `config.hard_set`.
    """

    def __init__(self, config: HDRConfig | None = None, hard_set: list[dict] | str | None = None):
        self.config = config or HDRConfig()
        source = hard_set if hard_set is not None else self.config.hard_set
        if source is None:
            raise ValueError("HDR needs a hard set: HDRConfig(hard_set=PATH) or HDRCallback(hard_set=records)")
        records = [row.data for row in read_records(source)] if isinstance(source, (str, Path)) else list(source)
        self.initial_hard = [hard_sample(r) for r in records]
        self.hard: list[HardSample] = list(self.initial_hard)
        self.accepted: dict[int, list[dict]] = {}
        self.summaries: list[dict] = []
        self.trainer = None
        self.plan: EpochPlan | None = None
        self._backend = None
        self._panel = None
        self._prepared_round: tuple[int | None, object] = (None, None)  # (round, its tokenized accepted answers)

    # ---- wiring into the trainer ----

    def attach(self, trainer) -> None:
        """Called by `BalanceSFTTrainer` when the callback is added."""
        args, cfg = trainer.args, self.config
        if args.max_steps > 0:
            raise ValueError("HDR plans its epochs itself: leave max_steps unset (-1) and use hdr.* epochs")
        if args.packing:
            raise ValueError("HDR swaps samples between epochs and needs packing=False")
        self.trainer = trainer
        self.state = HDRState(args.output_dir)
        self.seed = args.seed if cfg.seed is None else cfg.seed
        self.dataset = RoundDataset(trainer.train_dataset)
        trainer.train_dataset = self.dataset
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
        self.plan = EpochPlan(
            cfg.cold_start_epochs, cfg.max_rounds, cfg.epochs_per_round, len(self.dataset.base),
            cfg.round_size or max(len(self.initial_hard), batch),
        )
        if cfg.judges:
            from .judges import JudgePanel

            self._panel = JudgePanel(
                cfg.judges, threshold=cfg.judge_threshold, min_votes=cfg.min_votes, concurrency=cfg.judge_concurrency,
                timeout=cfg.judge_timeout, retries=cfg.judge_retries, cache_dir=self.state.root / "judge_cache",
            )
        if cfg.generation_backend == "vllm":  # colocate reserves GPU memory: build it before the optimizer exists
            self._backend = self._make_backend()

    def _make_backend(self) -> GenerationBackend:
        from ..generation import TransformersGeneration, VLLMBackend, VLLMSettings

        trainer, cfg = self.trainer, self.config
        template = trainer.training_chat_template
        if cfg.generation_backend == "vllm":
            settings = VLLMSettings.from_args(cfg)
            # vLLM starts from a safetensors copy where it cannot read the model's own files (a GGUF file)
            return VLLMBackend.from_trainer(trainer, settings, chat_template=template,
                                            export_dir=str(self.state.root / "vllm_start_weights"))
        return TransformersGeneration(trainer.model_wrapped, trainer.processing_class, trainer.accelerator,
                                      batch_size=cfg.generation_batch_size, chat_template=template,
                                      progress="HDR regeneration")

    def epoch_sizes(self) -> list[int]:
        return [self.plan.size(e) for e in range(self.plan.num_epochs)]

    # ---- events ----

    def on_train_begin(self, args, state, control, **kwargs):
        self._restore_finished_rounds()
        # a resumed job may start inside a round epoch (or at its first step, the round not yet run)
        self._enter_epoch(self.trainer.hdr_epoch_of_step(state.global_step), control)

    def on_epoch_end(self, args, state, control, **kwargs):
        following = round(state.epoch)
        if following < self.plan.num_epochs:
            self._enter_epoch(following, control)

    def _enter_epoch(self, epoch: int, control) -> None:
        k, _ = self.plan.round_of(min(epoch, self.plan.num_epochs - 1))
        if k > 0 and k not in self.accepted:
            if not self.hard:
                logger.info("HDR: the hard set is empty after %d round(s); stopping", k - 1)
                control.should_training_stop = True
                return
            self._run_round(k)
        self._show_epoch(epoch)

    def on_train_end(self, args, state, control, **kwargs):
        if self.trainer.accelerator.is_main_process:
            self._write_summary()

    # ---- rounds ----

    def _restore_finished_rounds(self) -> None:
        from ..runtime.distributed import on_main_process

        self.hard, self.accepted, self.summaries = list(self.initial_hard), {}, []
        # Rounds are written on the global main process (node 0). Read there and sent to every rank: another node
        # without that disk would otherwise see no finished round and regenerate while node 0 does not (a hang).
        for k, accepted, still_hard, summary in on_main_process(self.state.load_finished):
            self.accepted[k], self.summaries = accepted, self.summaries + [summary]
            self.hard = [hard_sample(r) for r in still_hard]

    def _judge_once(self, items):
        from ..runtime.distributed import on_main_process

        def judge():
            results = self._panel.judge(items)
            totals = self._panel.last_totals.to_dict() if self._panel.last_totals else {}
            return [r.to_dict() for r in results], totals

        return on_main_process(judge)

    def _run_round(self, k: int) -> None:
        cfg, trainer = self.config, self.trainer
        if self._backend is None:
            self._backend = self._make_backend()
        hard_before = len(self.hard)
        # λ is not a weight of the model: vLLM's weight sync walks every parameter the model holds
        with trainer.model_weights_only():
            result = run_round(
                self.hard, self._backend, self._panel, round_index=k, num_generations=cfg.num_generations,
                temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=self.seed + k,
                require_cot=cfg.require_cot, cot=(trainer.args.cot_start, trainer.args.cot_end),
                judge_fn=self._judge_once if self._panel is not None else None, trainable=trainer.is_trainable,
            )
        summary = result.summary(hard_before)
        if trainer.accelerator.is_main_process:
            self.state.write_round(result, summary)
        trainer.accelerator.wait_for_everyone()
        self.accepted[k], self.summaries = result.accepted, self.summaries + [summary]
        self.hard = [hard_sample(r) for r in result.still_hard]
        logs = {f"hdr/{key}": summary[key] for key in (
            "round", "hard_remaining", "generated", "gate_rejected", "judged", "accepted", "judge_abstained",
            "judge_cost_usd")}
        trainer.log_now(logs)
        if trainer.accelerator.is_main_process:
            self._write_summary()

    def _show_epoch(self, epoch: int) -> None:
        k, j = self.plan.round_of(min(epoch, self.plan.num_epochs - 1))
        if k == 0:
            self.dataset.show_base()
            return
        if self._prepared_round[0] != k:  # tokenize a round's answers once, not once per epoch of the round
            accepted, prepared = self.accepted.get(k, []), None
            if accepted:
                prepared = self.trainer.prepare_records(accepted, f"hdr_round_{k}")
            self._prepared_round = (k, prepared)
        self.dataset.show_round(self._prepared_round[1], self.plan.round_size, self.config.replay_ratio,
                                seed=self.seed * 1_000_003 + k * 1009 + j)

    def _write_summary(self) -> None:
        from ..artifacts.plots import plot_rounds

        summary: dict[str, Any] = {
            "rounds": self.summaries,
            "initial_hard": len(self.initial_hard),
            "hard_remaining": len(self.hard),
            "accepted_total": sum(s["accepted"] for s in self.summaries),
            "generation_backend": self.config.generation_backend,  # which engine regenerated
            "judge_cost_usd": sum(s["judge_cost_usd"] for s in self.summaries),
            "plan": {"epochs": self.plan.num_epochs, "round_size": self.plan.round_size,
                     "base_size": self.plan.base_size},
        }
        self.state.write_summary(summary)
        plot_rounds(self.state.root / "rounds.png", self.summaries, self.trainer.state.log_history,
                    len(self.initial_hard))
        logger.info("HDR summary: %s", json.dumps({k: v for k, v in summary.items() if k != "rounds"}))
