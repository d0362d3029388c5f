"""The report: <out>/ablation_v2.md (settings, tables, the reading generated from the numbers) and its plots, from
what `stats.build_report` computed; `versions` records the libraries it ran with."""

from __future__ import annotations

import statistics
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.ablation_v2.config import CATEGORIES, MULTI_TURN
from benchmarks.ablation_v2.stats import vectors


def plots(res: dict, units: dict, out: Path) -> list[str]:
    """accuracy.png (per arm, CI bars), lambda.png (λ per SSB unit), losses.png (L_c and L_f per unit)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name: str, legend_ax=None) -> str:
        if legend_ax is not None and legend_ax.get_legend_handles_labels()[0]:
            legend_ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        return name

    written = []
    arms = [a for a in res["arms"] if "main" in res["arms"][a]]
    if arms:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        main = [res["arms"][a]["main"] for a in arms]
        acc = [m["accuracy"] for m in main]
        err = [[a - m["ci"][0] for a, m in zip(acc, main)], [m["ci"][1] - a for a, m in zip(acc, main)]]
        ax.bar(arms, acc, yerr=err, capsize=4, color="tab:blue", alpha=0.7, label="pooled, 95% CI")
        # each seed's own accuracy beside the pooled bar: how far apart the seeds of one arm land
        dots = []
        for i, a in enumerate(arms):
            names = [n for n in res["arms"][a]["units"] if n in units]
            dots += [(i + 0.15 * (j - (len(names) - 1) / 2), statistics.mean(vectors([units[n]], CATEGORIES)[1][0]))
                     for j, n in enumerate(names)]  # seeds side by side within the bar
        if dots:
            ax.plot(*zip(*dots), "o", color="black", markersize=3, label="one unit (seed)")
        ax.set_ylabel("BFCL accuracy (simple_python + multiple)")
        ax.set_title("accuracy per arm, pooled over seeds, 95% bootstrap CI; dots: each seed")
        ax.set_ylim(0, 1.3 * max(max(m["ci"][1] for m in main), 0.01))  # headroom for the legend
        ax.legend(fontsize=7, loc="upper left")
        ax.tick_params(axis="x", rotation=30)
        written.append(save(fig, "accuracy.png"))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for row in res["arms"].values():
        for unit, traj in row["lambda_trajectories"].items():
            if traj:
                ax.plot(*zip(*traj), label=unit)
    ax.set(xlabel="step", ylabel="λ (CoT weight)", title="λ over steps per SSB unit")
    written.append(save(fig, "lambda.png", ax))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for name, u in sorted(units.items()):
        log = u.get("log") or []
        if log:
            steps = [h["step"] for h in log]
            left.plot(steps, [h["ssb/loss_cot"] for h in log], label=name, linewidth=1)
            right.plot(steps, [h["ssb/loss_call"] for h in log], label=name, linewidth=1)
    left.set(xlabel="step", title="L_c (mean NLL of CoT tokens)")
    right.set(xlabel="step", title="L_f (mean NLL of call tokens)")
    written.append(save(fig, "losses.png", right))
    return written


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None else format(x, spec)


def reading(res: dict) -> list[str]:
    """What the numbers support and what they do not, generated from them (no judgement added by hand)."""
    lines = []
    if res["units_missing"]:
        lines.append(f"**Partial run**: {len(res['units_missing'])} unit(s) not done ({', '.join(res['units_missing'])}); "
                     "the comparisons below use the seeds where both arms are done.")
    for arm, c in res["vs_sft"].items():
        ci = f"{100 * c['diff']:+.1f} points, 95% CI [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"
        if c["distinguishable"]:
            word = "better" if c["diff"] > 0 else "worse"
            lines.append(f"{arm} vs sft: {ci}, McNemar p = {c['mcnemar_p']:.3g} — distinguishable from zero: "
                         f"{arm} is {word} than plain SFT on these {c['n_items']} items × {c['n_seeds']} seed(s).")
        else:
            lines.append(f"{arm} vs sft: {ci}, McNemar p = {c['mcnemar_p']:.3g} — **no detectable difference**: "
                         f"the CI holds zero, so these data cannot tell {arm} from plain SFT; they make an effect "
                         f"outside the CI (width {100 * c['ci_width']:.1f} points) unlikely.")
    for arm, row in res["arms"].items():
        t = row.get("truncation")
        if t and t["capped"]:
            lines.append(f"{arm}: {100 * t['capped_share']:.0f}% of outputs stopped at max_new_tokens before a call "
                         f"({t['capped_valid']} of those {t['capped']} correct); accuracy of the finished ones "
                         f"{pct(t['finished_accuracy'])}%.")
    for name, c in (res.get("secondary") or {}).items():
        ci = f"{100 * c['diff']:+.1f} points, 95% CI [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"
        verdict = "distinguishable from zero" if c["distinguishable"] else "**no detectable difference**"
        lines.append(f"{name} (secondary): {ci}, McNemar p = {c['mcnemar_p']:.3g} — {verdict}.")
    named = [(f"{arm} vs sft", c) for arm, c in res["vs_sft"].items()] + list((res.get("secondary") or {}).items())
    for name, c in named:
        ds = c.get("per_seed_diff") or []
        if len(ds) > 1 and min(ds) < 0 < max(ds):
            lines.append(f"{name}: the seeds disagree in sign ("
                         + ", ".join(f"seed {s} {100 * d:+.1f}" for s, d in zip(c["seeds"], ds)) + " points).")
    between = res.get("between_seeds") or {}
    for name, c in between.items():
        ci = f"{100 * c['diff']:+.1f} points, 95% CI [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}]"
        lines.append(f"{name} (same arm, other training seed): {ci}, McNemar p = {c['mcnemar_p']:.3g}.")
    if between:
        def span(xs: list[float]) -> str:
            return f"{min(xs):.1f}" if f"{min(xs):.1f}" == f"{max(xs):.1f}" else f"{min(xs):.1f}–{max(xs):.1f}"

        def flips(c: dict) -> float:  # share of item verdicts that differ, per seed pair
            return 100 * (c["a_only"] + c["b_only"]) / (c["n_items"] * c["n_seeds"])

        sizes = [abs(100 * c["diff"]) for c in between.values()]
        lines.append(f"The training seed alone moved an arm by {span(sizes)} points on these items "
                     f"({len(sizes)} arm(s) with two seeds); an arm-vs-sft difference of that size can come from "
                     "the seed, which the item-bootstrap CIs above do not cover.")
        loud = [name for name, c in between.items() if c.get("distinguishable")]
        if loud:
            lines.append(f"{', '.join(loud)}: the training seed alone gives a difference whose item-bootstrap CI "
                         "excludes zero, so that CI understates the uncertainty of a comparison on one seed; an arm "
                         "is better or worse than sft only where the seeds agree in sign and the pooled CI excludes "
                         "zero.")
        arm_flips = [flips(c) for c in res["vs_sft"].values()]
        lines.append(f"Another seed of the same arm changes the verdict on {span([flips(c) for c in between.values()])}% "
                     "of the items" + (f"; an arm and sft disagree on {span(arm_flips)}% of them" if arm_flips else "")
                     + " (discordant items per seed pair).")
    single = sorted(arm for arm, c in res["vs_sft"].items() if c["n_seeds"] == 1)
    if single:
        lines.append(f"One seed only for {', '.join(single)} vs sft: the CI covers the sampling of BFCL items, not the "
                     "variation between training seeds, so it is narrower than the finished experiment's will be.")
    widths = [c["ci_width"] for c in res["vs_sft"].values()]
    if widths:
        lines.append(f"CI width achieved for paired differences: {100 * min(widths):.1f}–{100 * max(widths):.1f} points.")
    for row in res["arms"].values():
        for unit, traj in row["lambda_trajectories"].items():
            if traj:
                vals = [v for _, v in traj]
                lines.append(f"{unit}: λ {vals[0]:.3f} → {vals[-1]:.3f} (min {min(vals):.3f}, max {max(vals):.3f}).")
    for row in res["arms"].values():
        for unit, h in row["hdr"].items():
            lines.append(f"{unit}: HDR accepted {h['accepted_total']} of {h['initial_hard']} hard samples "
                         f"(rounds: {h['rounds']}).")
    if res["data"].get("alpha_supervised") is not None:
        lines.append(f"Training data α (plain SFT's CoT weight, supervised tokens) = "
                     f"{res['data']['alpha_supervised']:.3f}; the paper's λ = 0.7 is "
                     f"{'below' if res['data']['alpha_supervised'] > 0.7 else 'above'} it, so SSB "
                     f"{'lowers' if res['data']['alpha_supervised'] > 0.7 else 'raises'} the CoT weight.")
    lines.append("Each arm vs plain SFT is the primary family, plus the secondary pairs listed (both fixed before "
                 f"any result; no correction for the {len(res['vs_sft']) + len(res.get('secondary') or {})} "
                 "comparisons); other pairs are not claimed. No setting was chosen by looking at eval results.")
    return lines


def write_markdown(res: dict, path: Path, images: list[str]) -> None:
    d, m, o, p = res["data"], res["machine"], res["opts"], res["plan"]
    hs = d.get("hard_synthetic")
    limit = "all items" if not o["limit"] else f"first {o['limit']} items per category"
    lines = [
        "# BalanceSFT ablation v2: long-CoT data, paired, multi-seed",
        "",
        f"Command: `{res['command']}`",
        "",
        ("Units ran on: " + ("; ".join(f"{n} unit(s) on {desc}" for desc, n in res["unit_machines"].items())
                              or "no unit done yet")
         + f". Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}. Units' wall time: "
        f"{res['wall_seconds_units'] / 3600:.2f} h. Report built {res['finished']} on {m['nproc']} cores "
        f"({m['cpu_model']})."),
        "",
        (f"Data: `{d['path']}` (sha256 {d['sha256']}…) checked: {d['checked']} (rejected: {d['rejected_reasons']}); "
        f"{d['base_used']} base rows used ({len(d['base_over_max_length'])} over max_length {o['max_length']} dropped). "
        f"SmolLM2 tokenizer: CoT {d['cot_mean']:.0f} vs call {d['call_mean']:.0f} tokens per turn, α_text = "
        f"{d['alpha_text']:.3f} (`balancetrl stats`); α of the supervised tokens (what plain SFT weights) = "
        f"{d['alpha_supervised']:.3f}."),
        "",
        f"Hard set (HDR arms): {d['hard_real']} real rows that fail the Answer Check"
        + (f" + {hs['n']} synthetic: {hs['name']} (α = {hs['alpha']:.3f}, CoT {hs['cot_mean']:.0f} vs call "
           f"{hs['call_mean']:.0f} tokens)" if hs else "") + f"; {d['hard_used']} used.",
        "",
        (f"Training: every trained arm {p['total_steps']} optimizer steps, batch {o['batch']}, lr {o['lr']} cosine, "
        f"seeds {o['seeds']} (data order and seed equal across arms); HDR arms: {p['cold_steps']} cold-start steps + "
        f"{o['hdr_rounds']} round(s) of {p['round_size']} samples ({p['round_steps']} steps), "
        f"{o['num_generations']} generations per hard sample, rule gate only. λ: ssb/ssb_hdr 0.7 learnable on the "
        f"main lr; ssb_lr 0.7 learnable, λ lr {o['lambda_lr']}; ssb_fixed_lo/hi fixed at α ∓ {o['fixed_delta']}. "
        + ("Precision: bf16 autocast (fp32 master weights and λ), eval decoded in bf16." if o.get("bf16")
           else "Precision: fp32.")),
        "",
        (f"Eval: BFCL {' + '.join(CATEGORIES)} ({limit}), "
        f"greedy, max_new_tokens {o['max_new_tokens']}, prompt style fc (the trained format). multi_turn_base: "
        + ("not run (`--multi-turn-limit 0`)." if not o["multi_turn_limit"]
           else f"first {o['multi_turn_limit']} entries ({res['multi_turn']}).")),
        "",
        ("| arm | units | simple_python | multiple | pooled (95% CI) | hit max_new_tokens | acc. of finished "
         "| final λ | L_c end | L_f end | s/step | eval s/sample |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, row in res["arms"].items():
        main = row.get("main") or {}
        ci = main.get("ci") or [None, None]
        le = row.get("loss_end") or {}
        tr = row.get("truncation") or {}
        lines.append(
            f"| {arm} | {len(row['units'])} | {pct(row['per_category'].get('simple_python'))} "
            f"| {pct(row['per_category'].get('multiple'))} | {pct(main.get('accuracy'))} [{pct(ci[0])}, {pct(ci[1])}] "
            f"| {pct(tr.get('capped_share'))} | {pct(tr.get('finished_accuracy'))} "
            f"| {fmt(row['final_lambda'])} | {fmt(le.get('ssb/loss_cot'))} | {fmt(le.get('ssb/loss_call'))} "
            f"| {fmt(row['step_seconds_median'], '.1f')} | {fmt(row['eval_seconds_per_sample'], '.2f')} |")
    header = ["| comparison | seeds | items | acc arm | acc ref | diff | 95% CI | CI width | arm-only / ref-only right "
              "| McNemar p | ≠ 0 | diff per seed |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name: str, c: dict) -> str:
        return (f"| {name} | {c['seeds']} | {c['n_items']} | {pct(c['acc_a'])} | {pct(c['acc_b'])} "
                f"| {100 * c['diff']:+.1f} | [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] "
                f"| {100 * c['ci_width']:.1f} | {c['a_only']} / {c['b_only']} | {c['mcnemar_p']:.3g} "
                f"| {'yes' if c['distinguishable'] else 'no'} "
                f"| {' / '.join(f'{100 * d:+.1f}' for d in c.get('per_seed_diff') or []) or '—'} |")

    lines += ["", "## Paired comparison with SFT (same items, seed s vs seed s, pooled over seeds)", "", *header]
    lines += [row(f"{arm} vs sft", c) for arm, c in res["vs_sft"].items()]
    lines += [row(f"{arm} vs sft ({MULTI_TURN})", c["multi_turn"] | {"seeds": c["seeds"]})
              for arm, c in res["vs_sft"].items() if "multi_turn" in c]
    if res.get("secondary"):
        lines += ["", "Secondary comparisons, fixed before any result (HDR on top of SSB; a faster λ):", "", *header]
        lines += [row(name, c) for name, c in res["secondary"].items()]
    if res.get("between_seeds"):
        lines += ["", ("The same arm under another training seed (same items; the scale of seed-to-seed variation, "
                       "not a claim about any arm):"), "", *header]
        lines += [row(name, c) for name, c in res["between_seeds"].items()]
    lines += ["", ("Accuracies and differences in points (%). CI: percentile bootstrap over items, "
              f"{o['resamples']} resamples, seeds of an item resampled together. McNemar: exact two-sided test of "
              "the discordant pairs pooled over seeds."), "", "## Reading (generated from the numbers)", ""]
    lines += [f"- {s}" for s in reading(res)]
    if res["estimate"]:
        e = res["estimate"]
        idle = ("" if "hours_idle_cores" not in e else
                f" At best {e['hours_idle_cores']:.1f} h on {e['threads']} idle cores ({e['step_cpu_seconds']:.1f} "
                f"CPU-s/step, {e['eval_cpu_seconds_per_sample']:.2f} CPU-s/sample, divided by the threads).")
        lines += ["", (f"Estimated wall time of all units at the measured speed: {e['hours_all_units']:.1f} h "
                  f"({e['step_seconds']:.1f} s/step, {e['eval_seconds_per_sample']:.2f} s per eval sample; "
                  f"{e['note']}).{idle}")]
    pk = res.get("peak_rss_mb") or {}
    if pk.get("units"):
        lines += ["", (f"Peak process memory (RSS, max over the {pk['units']} unit(s) that record it): during training "
                       f"{fmt(pk['train_peak_rss_mb'] and pk['train_peak_rss_mb'] / 1024, '.1f')} GiB, during eval "
                       f"{fmt(pk['eval_peak_rss_mb'] / 1024, '.1f')} GiB (the process keeps what training allocated); "
                       "units run side by side need the sum.")]
    lines += [""] + [f"![{i}](ablation_v2/{i})" for i in images] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")


def versions() -> dict:
    out = {}
    for pkg in ("balancetrl", "torch", "transformers", "trl", "bfcl-eval", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out
