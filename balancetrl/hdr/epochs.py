"""The trainer side of HDR: epochs of different sizes in one `train()` call.

Trainer computes one `num_update_steps_per_epoch` from the first dataloader and uses it for every epoch, for
`max_steps` and for resuming. HDR epochs differ in size (cold start = the base set, round epochs = `round_size`), so
these overrides read every planned epoch's step count off the real dataloader (`hdr/schedule.py` fixes the sizes)
and hand Trainer the right numbers: exact `max_steps`, LR schedule and progress bar, and resume skipping.
"""

from __future__ import annotations

import math


class HDRTrainerMixin:
    """Mixed into `BalanceSFTTrainer` (before `SFTTrainer`); inert without an `HDRCallback`."""

    _hdr = None

    def _attach_hdr_callbacks(self) -> None:
        for callback in self.callback_handler.callbacks:
            self._maybe_attach_hdr(callback)

    def add_callback(self, callback):
        super().add_callback(callback)
        self._maybe_attach_hdr(callback)

    def _maybe_attach_hdr(self, callback) -> None:
        from .callback import HDRCallback

        if isinstance(callback, type) and issubclass(callback, HDRCallback):
            raise TypeError("pass an HDRCallback instance (it needs its config and hard set)")
        if isinstance(callback, HDRCallback) and callback is not self._hdr:
            if self._hdr is not None:
                raise ValueError("only one HDRCallback per trainer")
            callback.attach(self)
            self._hdr = callback

    def _hdr_update_steps(self) -> list[int]:
        """Optimizer steps of every planned epoch, read off the real dataloader at each epoch size."""
        dataset, saved = self._hdr.dataset, self._hdr.dataset.index
        dataloader = self.get_train_dataloader()
        steps = []
        for size in self._hdr.epoch_sizes():
            dataset.index = [0] * size
            batches = len(dataloader)
            steps.append(math.ceil(batches / self.args.gradient_accumulation_steps))
        dataset.index = saved
        return steps

    def hdr_epoch_of_step(self, global_step: int) -> int:
        """The planned epoch that optimizer step `global_step` (0-based count of finished steps) falls in."""
        done = 0
        for epoch, steps in enumerate(self._hdr_steps):
            if global_step < done + steps:
                return epoch
            done += steps
        return len(self._hdr_steps)

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        if self._hdr is None:
            return values
        _, _, num_examples, _, total_batch, _, _ = values
        self._hdr_steps = self._hdr_update_steps()
        sizes = self._hdr.epoch_sizes()
        steps_in_epoch = self._hdr_steps[0] * args.gradient_accumulation_steps
        return (len(sizes), self._hdr_steps[0], num_examples, sum(sizes), total_batch, steps_in_epoch,
                sum(self._hdr_steps))

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint,
                             trial):
        epochs_trained, steps_in_current = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if self._hdr is None or resume_from_checkpoint is None:
            return epochs_trained, steps_in_current
        step = self.state.global_step
        epochs_trained = self.hdr_epoch_of_step(step)
        steps_in_current = 0 if self.args.ignore_data_skip else step - sum(self._hdr_steps[:epochs_trained])
        return epochs_trained, steps_in_current * self.args.gradient_accumulation_steps

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, *args, **kwargs):
        if self._hdr is not None:  # the callback set this epoch's content in on_epoch_end / on_train_begin
            num_update_steps_per_epoch = self._hdr_steps[epoch]
            steps_in_epoch = len(train_dataloader)
        return super()._run_epoch(model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch,
                                  *args, **kwargs)
