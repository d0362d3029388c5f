"""The mechanism report: per arm the held-out L_f / L_c and the forgetting measures, every arm against sft as a
paired difference (`paired_mean_difference`: item bootstrap, an item's seeds together), each seed's own difference,
the reading generated from the numbers; <out>/mechanism.md, mechanism.json and mechanism/differences.png."""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.ablation_v2.config import REFERENCE, unit_name
from benchmarks.ablation_v2.paired_stats import paired_mean_difference
from benchmarks.ablation_v2.report import fmt, versions
from benchmarks.common import machine

# measure -> (unit field, row key, what it is); lower is better for the two losses, and for "closer to base"
MEASURES = {
    "L_f": ("heldout", "L_f", "held-out mean NLL of the reference call tokens, per item"),
    "L_c": ("heldout", "L_c", "held-out mean NLL of the reference CoT tokens, per item"),
    "kl": ("forgetting", "kl_mean", "token-level KL(base ‖ tuned) on the base model's answers, per prompt"),
    "tuned_nll": ("forgetting", "tuned_nll_mean", "tuned model's mean NLL of the base model's answers, per prompt"),
}
# fixed before any unit ran (issue 31): what the paper's account of SSB predicts against plain SFT here
PREDICTIONS = {
    "L_f": "lower: λ starts at 0.7, below plain SFT's CoT share α of the supervised tokens, so call tokens weigh more",
    "L_c": "higher, for the same reason",
    "kl": "lower: the paper reports BalanceSFT keeping the base model's other skills (HumanEval 0.841 vs 0.470)",
    "tuned_nll": "lower, as KL",
}


def matrix(units: list[dict], field: str, key: str) -> tuple[list[str], list[list[float]]]:
    """Ids scored by every unit (value not None) and one row of values per unit, in the first unit's order."""
    rows = [{r["id"]: r[key] for r in u[field] if r[key] is not None} for u in units]
    ids = [r["id"] for r in units[0][field] if all(r["id"] in row for row in rows)]
    return ids, [[row[i] for i in ids] for row in rows]


def build_report(opts, plan: dict, info: dict, expected: list, units: dict, command: str) -> dict:
    done = [unit_name(a, s) for a, s in expected if unit_name(a, s) in units]
    res = {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
           "unit_machines": {n: units[n].get("machine") for n in done}, "versions": versions(),
           "opts": {k: v for k, v in vars(opts).items() if k != "arm_list"}, "plan": plan, "data": info,
           "units_done": done, "units_missing": [unit_name(a, s) for a, s in expected if unit_name(a, s) not in units],
           "measures": {m: d for m, (_, _, d) in MEASURES.items()}, "predictions": PREDICTIONS,
           "arms": {}, "vs_sft": {}}
    if "base" in units:
        base = units["base"]
        res["base"] = {m: _mean([r[k] for r in base[f] if r[k] is not None])
                       for m, (f, k, _) in MEASURES.items() if f == "heldout"}
        # the base scored against itself: KL 0, and its own NLL of its answers (every trained unit records it)
        trained = [units[n] for n in done if n != "base"]
        res["base"].update(kl=0.0, tuned_nll=_mean([r["base_nll_mean"] for r in trained[0]["forgetting"]
                                                    if r["base_nll_mean"] is not None]) if trained else None)
    for arm in opts.arm_list:
        seeds = [s for s in opts.seeds if unit_name(arm, s) in units]
        if not seeds:
            continue
        us = [units[unit_name(arm, s)] for s in seeds]
        row = {"seeds": seeds, "final_lambda": [u.get("final_lambda") for u in us],
               "step_seconds_median": [u.get("step_seconds_median") for u in us],
               "train_peak_rss_mb": [u.get("train_peak_rss_mb") for u in us]}
        for m, (field, key, _) in MEASURES.items():
            _, values = matrix(us, field, key)
            row[m] = {"per_seed": [_mean(v) for v in values], "mean": _mean([x for v in values for x in v])}
        res["arms"][arm] = row
    # how far the training seed alone moves an arm's mean: the scale the differences between arms are read against
    res["between_seeds"] = {m: {arm: max(ps) - min(ps) for arm, row in res["arms"].items()
                                if len(ps := row[m]["per_seed"]) > 1} for m in MEASURES}
    ref = res["arms"].get(REFERENCE)
    for arm, row in res["arms"].items():
        if arm == REFERENCE or not ref:
            continue
        seeds = [s for s in row["seeds"] if s in ref["seeds"]]
        if not seeds:
            continue
        res["vs_sft"][arm] = {"seeds": seeds}
        for m, (field, key, _) in MEASURES.items():
            both = [units[unit_name(a, s)] for a in (arm, REFERENCE) for s in seeds]
            _, values = matrix(both, field, key)
            a, b = values[: len(seeds)], values[len(seeds):]
            res["vs_sft"][arm][m] = paired_mean_difference(a, b, resamples=opts.resamples)
    return res


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def reading(res: dict) -> list[str]:
    """What the numbers support, generated from them: per arm and measure, the difference from sft and its CI."""
    lines = []
    if res["units_missing"]:
        lines.append(f"**Partial run**: {len(res['units_missing'])} unit(s) not done "
                     f"({', '.join(res['units_missing'])}); the comparisons use the seeds where both arms are done.")
    for arm, comp in res["vs_sft"].items():
        for m in MEASURES:
            c = comp[m]
            ci = f"{c['diff']:+.4f} nats, 95% CI [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
            seeds = ", ".join(f"{d:+.4f}" for d in c["per_seed"])
            if c["distinguishable"]:
                word = "lower" if c["diff"] < 0 else "higher"
                verdict = f"{arm}'s {m} is **{word}** than sft's"
            else:
                verdict = f"**no detectable difference** (the CI holds zero; width {c['ci_high'] - c['ci_low']:.4f})"
            spread = ("" if len(c["per_seed"]) < 2 else
                      " — the seeds disagree in sign" if min(c["per_seed"]) < 0 < max(c["per_seed"]) else "")
            what = "held-out items" if MEASURES[m][0] == "heldout" else "prompts"
            rel = f" ({100 * c['diff'] / c['mean_b']:+.1f}% of sft's {c['mean_b']:.4f})" if c["mean_b"] else ""
            lines.append(f"{arm} − sft, {m}: {ci}{rel} over {c['n_items']} {what} × {c['n_seeds']} seed(s): "
                         f"{verdict}. Per seed: {seeds}{spread}.")
    for m, spread in res["between_seeds"].items():
        diffs = [abs(comp[m]["diff"]) for comp in res["vs_sft"].values()]
        if spread and diffs:
            arm = max(spread, key=spread.get)
            lines.append(f"{m}: the training seed alone moves an arm's mean by at most {spread[arm]:.4f} nats "
                         f"({arm}); the differences from sft are {min(diffs):.4f} to {max(diffs):.4f} nats.")
    if any(comp["seeds"] and len(comp["seeds"]) == 1 for comp in res["vs_sft"].values()):
        lines.append("With one seed a CI covers the sampling of items only, not the training seed (its data order "
                     "and its 64 rows): how far the seed alone moves these differences needs the other seeds.")
    return lines


def plot(res: dict, out: Path) -> str | None:
    """differences.png: per measure, each arm's difference from sft with its 95% CI, and each seed's as a dot."""
    if not res["vs_sft"]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MEASURES), figsize=(3 * len(MEASURES), 3.2))
    arms = list(res["vs_sft"])
    for ax, m in zip(axes, MEASURES):
        for i, arm in enumerate(arms):
            c = res["vs_sft"][arm][m]
            ax.errorbar([i], [c["diff"]], yerr=[[c["diff"] - c["ci_low"]], [c["ci_high"] - c["diff"]]], fmt="o",
                        capsize=4, color="tab:blue")
            ax.plot([i + 0.15] * len(c["per_seed"]), c["per_seed"], ".", color="black", markersize=4)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_xlim(-0.5, len(arms) - 0.5)
        ax.set_title(f"{m}: arm − sft", fontsize=9)
    axes[0].set_ylabel("nats (95% CI; dots: seeds)")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "differences.png", dpi=110)
    plt.close(fig)
    return "differences.png"


def write_report(res: dict, units: dict, out: Path) -> None:
    from balancetrl.data.io import atomic_write

    image = plot(res, out / "mechanism")
    with atomic_write(out / "mechanism.json") as f:
        json.dump(res, f, indent=1, default=str)
    d, o = res["data"], res["opts"]
    lines = [
        "# The mechanism experiment: held-out L_f / L_c and forgetting, SSB against plain SFT",
        "",
        "Made by `make evidence` (`benchmarks/mechanism/`, whose docstring has the design); numbers in "
        "`mechanism.json`, units in `mechanism/units/`. Command: `" + res["command"] + "`.",
        "",
        f"Data: `{d['path']}` (sha256 {d['sha256']}): {d['checked_base']} records in the checked base set, "
        f"{d['heldout']} held out by id hash ({o['heldout_percent']}%, fixed before any result; mean "
        f"{d['heldout_tokens_mean']:.0f} tokens), {d['train_used']} train (another {d['train_over_max_length']} "
        f"over {o['max_length']} tokens dropped). α of the training tokens (CoT share of the supervised tokens "
        f"plain SFT weights): {d['alpha_supervised']:.3f}. Every trained unit: {res['plan']['total_steps']} steps of "
        f"{o['batch']}, lr {o['lr']}, {'bf16 autocast' if o['bf16'] else 'fp32'}; scoring in fp32. Forgetting: the "
        f"first {o['forgetting_prompts']} BFCL irrelevance questions, base answers ≤ "
        f"{o['forgetting_max_new_tokens']} tokens.",
        "",
        "## Predicted before any unit ran",
        "",
        *[f"- {m} (ssb − sft): {p}." for m, p in res["predictions"].items()],
        "",
        "## What the numbers say",
        "",
        "SSB with λ below α weights the CoT tokens less than plain SFT does (and the call tokens more). A lower KL "
        "from the base together with a higher L_c is what moving the model less on CoT tokens would give, so these "
        "measures alone do not tell \"SSB protects the base model's other skills\" from \"SSB trains less on the "
        "CoT\"; `ssb_fixed_lo`/`hi` of ablation v2 vary that weight directly.",
        "",
        *[f"- {line}" for line in reading(res)],
        "",
        "## Per arm",
        "",
        "Means over items (each item averaged over the arm's seeds), then per seed. Nats; lower is closer to the "
        "reference (L_f, L_c) or to the base model (kl, tuned_nll).",
        "",
        "| arm | seeds | final λ | " + " | ".join(MEASURES) + " |",
        "|---|---|---|" + "---|" * len(MEASURES),
    ]
    if "base" in res:
        lines.append("| base (untrained) | — | — | " + " | ".join(
            fmt(res["base"].get(m), ".4f") for m in MEASURES) + " |")
    for arm, row in res["arms"].items():
        lam = ", ".join(fmt(x, ".3f") for x in row["final_lambda"])
        cells = [f"{fmt(row[m]['mean'], '.4f')} ({', '.join(fmt(x, '.4f') for x in row[m]['per_seed'])})"
                 for m in MEASURES]
        lines.append(f"| {arm} | {', '.join(map(str, row['seeds']))} | {lam} | " + " | ".join(cells) + " |")
    lines += ["", "## Against sft (paired: same items, seed s with seed s)", "",
              "| arm | measure | difference | 95% CI | per seed |", "|---|---|---|---|---|"]
    for arm, comp in res["vs_sft"].items():
        for m in MEASURES:
            c = comp[m]
            lines.append(f"| {arm} | {m} | {c['diff']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | "
                         + ", ".join(f"{x:+.4f}" for x in c["per_seed"]) + " |")
    lines += ["", "Measures: " + "; ".join(f"**{m}**: {desc}" for m, desc in res["measures"].items()) + "."]
    if image:
        lines += ["", f"![differences](mechanism/{image})"]
    (out / "mechanism.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
