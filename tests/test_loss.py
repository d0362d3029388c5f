"""The SSB loss as a pure function of tensors."""

import math

import pytest
import torch

from balancetrl.trainer.loss import lambda_from_phi, phi_from_lambda, ssb_loss


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    log_probs = -torch.rand(3, 9, generator=g, dtype=torch.float64) * 5
    target = torch.rand(3, 9, generator=g) > 0.2
    cot = target & (torch.rand(3, 9, generator=g) > 0.5)
    call = target & ~cot
    return log_probs * target, cot, call


def test_matches_two_means_mixed_by_lambda():
    log_probs, cot, call = _batch()
    lam = torch.tensor(0.3, dtype=torch.float64)
    out = ssb_loss(log_probs, cot, call, lam, cot.sum(), call.sum())
    l_c = -log_probs[cot].mean()
    l_f = -log_probs[call].mean()
    assert out.loss.item() == pytest.approx((0.3 * l_c + 0.7 * l_f).item(), abs=1e-12)
    assert out.nll_cot.item() == pytest.approx(-log_probs[cot].sum().item(), abs=1e-12)


def test_microbatches_with_step_counts_sum_to_the_step_loss():
    log_probs, cot, call = _batch(1)
    lam = torch.tensor(0.6, dtype=torch.float64)
    whole = ssb_loss(log_probs, cot, call, lam, cot.sum(), call.sum()).loss
    parts = sum(ssb_loss(log_probs[i], cot[i], call[i], lam, cot.sum(), call.sum()).loss for i in range(3))
    assert parts.item() == pytest.approx(whole.item(), abs=1e-12)


def test_lambda_gradient_is_lc_minus_lf():
    log_probs, cot, call = _batch(2)
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ssb_loss(log_probs, cot, call, lam, cot.sum(), call.sum()).loss.backward()
    expected = (-log_probs[cot].mean() + log_probs[call].mean()).item()
    assert lam.grad.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("empty", ["cot", "call"])
def test_missing_segment_reduces_to_the_other_mean_without_lambda_gradient(empty):
    log_probs, cot, call = _batch(3)
    if empty == "cot":
        call, cot = call | cot, torch.zeros_like(cot)
        expected = -log_probs[call].mean()
    else:
        cot, call = call | cot, torch.zeros_like(call)
        expected = -log_probs[cot].mean()
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    out = ssb_loss(log_probs, cot, call, lam, cot.sum(), call.sum())
    out.loss.backward()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-12)
    assert lam.grad is not None and lam.grad.item() == 0.0  # in the graph (DDP), but no gradient


def test_lambda_parameterisation_is_bounded_and_invertible():
    phi = phi_from_lambda(0.7, 0.05, 0.95)
    assert lambda_from_phi(torch.tensor(phi, dtype=torch.float64), 0.05, 0.95).item() == pytest.approx(0.7, abs=1e-12)
    extremes = lambda_from_phi(torch.tensor([-1e4, 1e4]), 0.05, 0.95)
    assert extremes.tolist() == pytest.approx([0.05, 0.95])
    assert math.isfinite(phi)
    with pytest.raises(ValueError, match="strictly inside"):
        phi_from_lambda(0.99, 0.05, 0.95)
