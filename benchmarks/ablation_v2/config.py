"""The arms and each unit's config: what the unit's hash covers (`unit_cache.config_hash`), so what decides whether a
cached unit is reused. Committed units carry their hash: anything that changes these dicts reruns them."""

from __future__ import annotations

import argparse

from benchmarks.common import plan_steps

MODEL = "smollm2-135m-instruct"
CATEGORIES = ["simple_python", "multiple"]
MULTI_TURN = "multi_turn_base"
# arm -> (trained, ssb, λ: "paper" | "lr" | "lo" | "hi" | None, hdr)
ARMS = {
    "base": (False, None, None, False),
    "sft": (True, False, None, False),
    "ssb": (True, True, "paper", False),
    "ssb_lr": (True, True, "lr", False),
    "ssb_fixed_lo": (True, True, "lo", False),
    "ssb_fixed_hi": (True, True, "hi", False),
    "sft_hdr": (True, False, None, True),
    "ssb_hdr": (True, True, "paper", True),
}
REFERENCE = "sft"
# fixed before any result was seen: what HDR adds on top of SSB, and whether moving λ faster matters
SECONDARY = {"ssb_hdr": "ssb", "ssb_lr": "ssb"}


def unit_name(arm: str, seed: int | None) -> str:
    return arm if seed is None else f"{arm}-s{seed}"


def expected_units(arm_list: list[str], seeds: list[int]) -> list[tuple[str, int | None]]:
    """(arm, seed) of every unit, the untrained arms once (seed None). Seed-major: a run stopped part-way has every
    arm on the first seed before any on the second, so its partial report already compares every arm with SFT."""
    expected = [(a, None) for a in arm_list if not ARMS[a][0]]
    return expected + [(a, s) for s in seeds for a in arm_list if ARMS[a][0]]


def multi_turn_supported() -> tuple[bool, str]:
    """Whether the project's eval runner can score `multi_turn_base` (issue 9 adds it); why not otherwise."""
    from balancetrl.eval import bfcl

    try:
        bfcl.resolve_categories([MULTI_TURN])
    except ValueError as e:
        return False, str(e)
    return True, ""


def eval_config(opts) -> dict:
    """The eval settings of every unit. eval_batch is part of it: the batch decides the left padding, and padding can
    flip a greedy token."""
    return {"categories": CATEGORIES, "limit": opts.limit, "max_new_tokens": opts.max_new_tokens,
            "eval_batch": opts.eval_batch,
            "prompt_style": "fc", "multi_turn_limit": opts.multi_turn_limit if multi_turn_supported()[0] else 0}


def lambda_settings(arm: str, opts, alpha: float) -> dict:
    _, ssb, lam, _ = ARMS[arm]
    if not ssb:
        return {}
    if lam in ("paper", "lr"):
        return {"ssb_lambda_init": 0.7, "ssb_lambda_mode": "learnable",
                "ssb_lambda_lr": opts.lambda_lr if lam == "lr" else None}
    value = round(alpha - opts.fixed_delta if lam == "lo" else alpha + opts.fixed_delta, 4)
    if not 0.01 < value < 0.99:
        raise SystemExit(f"{arm}: λ = α ± --fixed-delta = {value} leaves (0.01, 0.99); lower --fixed-delta")
    return {"ssb_lambda_init": value, "ssb_lambda_mode": "fixed", "ssb_lambda_min": 0.0, "ssb_lambda_max": 1.0}


def unit_config(arm: str, seed: int | None, opts, data: dict, plan: dict, eval_cfg: dict) -> dict:
    trained, ssb, _, hdr = ARMS[arm]
    cfg = {"arm": arm, "model": MODEL, "eval": eval_cfg}
    if opts.bf16:  # only when on, so units cached before the option existed keep their hash
        cfg["bf16"] = True
    if opts.device != "cpu":  # other kernels, other numbers: a GPU unit never stands in for a CPU one (nor back)
        cfg["device"] = opts.device
    if not trained:
        return cfg
    cfg.update(seed=seed, ssb=ssb, hdr=hdr, data=data["info"]["fingerprint"], plan=plan, batch=opts.batch,
               lr=opts.lr, max_length=opts.max_length, lam=lambda_settings(arm, opts, data["info"]["alpha_supervised"]))
    if hdr:
        cfg["hdr_cfg"] = {k: getattr(opts, k) for k in ("hdr_rounds", "num_generations", "hdr_max_new_tokens",
                                                        "gen_batch")}
    return cfg


def step_plan(opts, n_base: int, n_hard: int) -> dict:
    """Every trained arm's optimizer steps (`plan_steps`) for `n_base` base and `n_hard` hard rows."""
    return plan_steps(argparse.Namespace(batch=opts.batch, round_size=opts.round_size, hdr_rounds=opts.hdr_rounds,
                                         steps=opts.steps, epochs=opts.epochs), n_base, n_hard)


def unit_configs(opts, data: dict, plan: dict) -> tuple[list[tuple[str, int | None]], dict[str, dict]]:
    """The run's units in running order and each one's config, by unit name."""
    expected = expected_units(opts.arm_list, opts.seeds)
    eval_cfg = eval_config(opts)
    return expected, {unit_name(a, s): unit_config(a, s, opts, data, plan, eval_cfg) for a, s in expected}
