"""The mechanism experiment's split, plan and report (fast: synthetic unit results, no model is trained; the real
run is `make evidence`)."""

import argparse
import json
import re
from pathlib import Path

import pytest

from benchmarks.ablation_v2.unit_cache import config_hash
from benchmarks.mechanism import report, runner


def test_the_held_out_split_is_a_fixed_function_of_the_id():
    ids = [f"xlam-toolrl-{i}" for i in range(400)]
    held = [i for i in ids if runner.held_out(i, 20)]
    assert held == [i for i in ids if runner.held_out(i, 20)]  # nothing but the id decides
    assert 0.14 < len(held) / len(ids) < 0.26
    assert set(held) <= {i for i in ids if runner.held_out(i, 40)}  # a larger share only adds records
    # pinned: a change of the hash would silently move records between train and held out
    assert [i for i in ids[:40] if runner.held_out(i, 20)] == PINNED_HELD_OUT


PINNED_HELD_OUT = ["xlam-toolrl-4", "xlam-toolrl-13", "xlam-toolrl-15", "xlam-toolrl-19", "xlam-toolrl-30",
                   "xlam-toolrl-32", "xlam-toolrl-34", "xlam-toolrl-35", "xlam-toolrl-36"]


def test_step_plan_is_epochs_over_the_training_rows_capped_by_steps():
    opts = argparse.Namespace(epochs=1, batch=4, steps=0)
    assert runner.step_plan(opts, 151) == {"base_used": 151, "total_steps": 38}
    opts.epochs = 2
    assert runner.step_plan(opts, 151)["total_steps"] == 76
    opts.steps = 5
    assert runner.step_plan(opts, 151)["total_steps"] == 5


def _unit(arm, seed, shift_f, shift_kl, items=("a", "b", "c", "d")):
    return {"unit": f"{arm}-s{seed}", "final_lambda": 0.7 if arm != "sft" else None,
            "heldout": [{"id": i, "n_cot": 10, "n_call": 3, "L_c": 2.0 + k / 10, "L_f": 0.5 + k / 10 + shift_f}
                        for k, i in enumerate(items)],
            "forgetting": [{"id": f"p{k}", "answer_tokens": 5, "kl_mean": 0.1 + shift_kl, "tuned_nll_mean": 1.0,
                            "base_nll_mean": 0.8} for k in range(3)]}


def test_report_pairs_seeds_and_reads_the_differences(tmp_path):
    opts = argparse.Namespace(arm_list=["sft", "ssb"], seeds=[0, 1], resamples=500, heldout_percent=20)
    units = {"base": {"heldout": _unit("base", None, 0.3, 0)["heldout"], "base_answers": []},
             "sft-s0": _unit("sft", 0, 0, 0), "sft-s1": _unit("sft", 1, 0, 0),
             "ssb-s0": _unit("ssb", 0, -0.1, 0), "ssb-s1": _unit("ssb", 1, -0.1, 0)}
    expected = [("base", None), ("sft", 0), ("ssb", 0), ("sft", 1), ("ssb", 1)]
    res = report.build_report(opts, {"total_steps": 3}, {}, expected, units, "cmd")
    assert res["units_missing"] == []
    f = res["vs_sft"]["ssb"]["L_f"]
    assert f["diff"] == pytest.approx(-0.1) and f["ci_high"] == pytest.approx(-0.1) and f["distinguishable"]
    assert f["per_seed"] == pytest.approx([-0.1, -0.1]) and (f["n_items"], f["n_seeds"]) == (4, 2)
    assert res["vs_sft"]["ssb"]["kl"]["diff"] == 0.0 and not res["vs_sft"]["ssb"]["kl"]["distinguishable"]
    assert res["base"]["L_f"] == pytest.approx(0.95) and res["base"]["kl"] == 0.0
    assert res["base"]["tuned_nll"] == pytest.approx(0.8)
    assert res["arms"]["ssb"]["L_f"]["mean"] == pytest.approx(0.55)
    text = "\n".join(report.reading(res))
    assert ("ssb − sft, L_f: -0.1000 nats, 95% CI [-0.1000, -0.1000] (-15.4% of sft's 0.6500) over 4 held-out "
            "items × 2 seed(s)") in text and "ssb's L_f is **lower** than sft's" in text
    assert "ssb − sft, kl: +0.0000 nats" in text and "**no detectable difference**" in text
    assert "With one seed" not in text
    assert res["between_seeds"]["L_f"] == {"sft": 0.0, "ssb": 0.0}
    assert "L_f: the training seed alone moves an arm's mean by at most 0.0000 nats (sft); the differences from sft " \
           "are 0.1000 to 0.1000 nats." in text
    # a unit missing: the report says partial and pairs only the seeds both arms have
    del units["ssb-s1"]
    res = report.build_report(opts, {"total_steps": 3}, {}, expected, units, "cmd")
    assert res["units_missing"] == ["ssb-s1"] and res["vs_sft"]["ssb"]["seeds"] == [0]
    lines = report.reading(res)
    assert lines[0].startswith("**Partial run**: 1 unit(s) not done (ssb-s1)")
    assert lines[-1].startswith("With one seed a CI covers the sampling of items only")


def test_report_uses_only_items_every_unit_scored():
    a = {"heldout": [{"id": "x", "L_f": 1.0}, {"id": "y", "L_f": None}, {"id": "z", "L_f": 3.0}]}
    b = {"heldout": [{"id": "x", "L_f": 2.0}, {"id": "y", "L_f": 5.0}, {"id": "z", "L_f": 4.0}]}
    assert report.matrix([a, b], "heldout", "L_f") == (["x", "z"], [[1.0, 3.0], [2.0, 4.0]])


ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def test_committed_units_keep_their_config_hash(tmp_path):
    """Today's code gives every committed unit (benchmarks/results/mechanism/units/) the config and hash stored in it,
    from `make evidence`'s options and the data the committed report recorded: a rerun of `make evidence` skips them,
    and a change to what a unit's config covers shows here, not as a silent rerun."""
    args = re.search(r"^EVIDENCE_ARGS \?= (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")
    opts = runner.parse_args(["--data", str(data_file), *args])
    committed = json.loads((RESULTS / "mechanism.json").read_text())
    info = committed["data"]
    plan = runner.step_plan(opts, info["train_used"])
    assert plan == committed["plan"]
    data = {"info": info}
    stored = {p.stem: json.loads(p.read_text()) for p in (RESULTS / "mechanism" / "units").glob("*.json")
              if not p.name.endswith(".stale.json")}
    assert sorted(stored) == sorted(committed["units_done"]) and "base" in stored
    for name, unit in stored.items():
        arm, _, seed = name.partition("-s")
        config = runner.unit_config(arm, int(seed) if seed else None, opts, data, plan)
        assert config == unit["config"], name
        assert config_hash(config) == unit["config_hash"], name
