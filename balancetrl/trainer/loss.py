"""The SSB loss: CoT and call tokens averaged apart, mixed by a learnable λ (BalanceSFT, Eq. 2).

Pure tensor math, no trainer: `L = λ·L_c + (1−λ)·L_f` written as a per-token weighted NLL, so it
runs in the same single forward as the plain SFT loss and sums exactly over gradient-accumulation
micro-batches and processes when the counts are those of the whole optimizer step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


def lambda_from_phi(phi: torch.Tensor, lambda_min: float, lambda_max: float) -> torch.Tensor:
    """λ = λ_min + (λ_max − λ_min)·sigmoid(φ): a free scalar φ that can never push λ out of its bounds."""
    return lambda_min + (lambda_max - lambda_min) * torch.sigmoid(phi)


def phi_from_lambda(lam: float, lambda_min: float, lambda_max: float) -> float:
    """Inverse of `lambda_from_phi`, to initialise φ from the user's λ."""
    if not lambda_min < lam < lambda_max:
        raise ValueError(f"λ={lam} must lie strictly inside ({lambda_min}, {lambda_max})")
    p = (lam - lambda_min) / (lambda_max - lambda_min)
    return math.log(p / (1.0 - p))


class SSBLoss(NamedTuple):
    loss: torch.Tensor  # the micro-batch's share of the step loss (differentiable in the model and in λ)
    nll_cot: torch.Tensor  # detached Σ ℓ_t over this micro-batch's CoT tokens
    nll_call: torch.Tensor  # detached Σ ℓ_t over this micro-batch's call tokens


def ssb_loss(
    log_probs: torch.Tensor,
    cot_mask: torch.Tensor,
    call_mask: torch.Tensor,
    lam: torch.Tensor,
    num_cot: torch.Tensor | int,
    num_call: torch.Tensor | int,
) -> SSBLoss:
    """Self-adjusted Signal Balancing loss for one micro-batch.

    Args:
        log_probs: per-token log p(y_t | y_<t, x), any shape; zero where there is no target.
        cot_mask, call_mask: boolean masks of the same shape, disjoint, selecting the CoT (C) and the
            call/result (F) target tokens.
        lam: scalar λ in (0, 1), may require grad.
        num_cot, num_call: |C| and |F| over the *whole optimizer step* (all accumulation micro-batches,
            all processes). Summing this function's `loss` over the step's micro-batches then gives
            exactly `λ·L_c + (1−λ)·L_f`.

    A step with no CoT tokens is `L_f` alone (and one with no call tokens `L_c` alone), with zero
    gradient on λ; λ still enters the graph (times zero) so DDP sees a gradient for it every step.
    """
    # at least fp32 (λ lives there; bf16 sums over thousands of tokens lose digits), fp64 stays fp64
    nll = -log_probs.to(torch.promote_types(log_probs.dtype, torch.float32))
    nll_cot = (nll * cot_mask).sum()
    nll_call = (nll * call_mask).sum()
    num_cot = torch.as_tensor(num_cot, device=nll.device, dtype=nll.dtype)
    num_call = torch.as_tensor(num_call, device=nll.device, dtype=nll.dtype)
    has_cot, has_call = num_cot > 0, num_call > 0
    weight = torch.where(has_cot & has_call, lam, has_cot.to(lam.dtype) + 0.0 * lam)
    loss = weight * nll_cot / num_cot.clamp(min=1) + (1 - weight) * nll_call / num_call.clamp(min=1)
    return SSBLoss(loss, nll_cot.detach(), nll_call.detach())
