"""The ablation runner's statistics, unit cache and resume logic (fast: no real model is loaded; one test trains
the in-process tiny model)."""

import json
import math
import os
import re
from pathlib import Path

import pytest

from benchmarks.ablation_v2 import config, evaluation, options, report, runner, units
from benchmarks.ablation_v2.data import build_data
from benchmarks.ablation_v2.paired_stats import accuracy_ci, mcnemar_exact, paired_bootstrap
from benchmarks.ablation_v2.unit_cache import UnitCache, config_hash
from benchmarks.common import machine


# ------------------------------------------------------------------------------------------------ statistics
def test_mcnemar_exact_known_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 0) == pytest.approx(2 * 0.5**5)  # 0.0625
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(1, 4) == pytest.approx(2 * 6 / 32)  # P(X<=1 | n=5) = 6/32, two-sided
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_bootstrap_hand_vectors():
    a = [1, 1, 1, 0, 0, 1, 0, 1]
    b = [1, 0, 1, 0, 1, 0, 0, 0]
    r = paired_bootstrap([a], [b], resamples=2000)
    assert (r.n_items, r.n_seeds) == (8, 1)
    assert r.acc_a == 5 / 8 and r.acc_b == 3 / 8
    assert r.diff == pytest.approx(0.25)
    assert (r.a_only, r.b_only) == (3, 1)
    assert r.mcnemar_p == pytest.approx(10 / 16)  # n=4 discordant, P(X<=1)=5/16, two-sided
    assert r.ci_low < 0.25 < r.ci_high and not r.distinguishable  # 8 items cannot tell +25 points from 0


def test_paired_bootstrap_degenerate_cases():
    same = paired_bootstrap([[1, 0, 1, 1]], [[1, 0, 1, 1]], resamples=500)
    assert (same.diff, same.ci_low, same.ci_high, same.mcnemar_p) == (0.0, 0.0, 0.0, 1.0)
    assert not same.distinguishable
    all_better = paired_bootstrap([[1] * 10], [[0] * 10], resamples=500)
    assert (all_better.diff, all_better.ci_low, all_better.ci_high) == (1.0, 1.0, 1.0)
    assert all_better.distinguishable and all_better.mcnemar_p == pytest.approx(2 * 0.5**10)


def test_paired_bootstrap_pools_seeds_by_item():
    # per item, Σ_seeds (a - b) = 1 for both items: every item resample gives 2 / 4 = 0.5 exactly
    r = paired_bootstrap([[1, 0], [1, 1]], [[0, 0], [1, 0]], resamples=500)
    assert (r.n_seeds, r.n_items) == (2, 2)
    assert (r.diff, r.ci_low, r.ci_high, r.ci_width) == (0.5, 0.5, 0.5, 0.0)
    assert (r.a_only, r.b_only) == (2, 0)


def test_paired_bootstrap_ci_matches_normal_approximation():
    # 400 items, per-item difference 1 on half of them, 0 on the rest: SE = 0.5 / sqrt(400) = 0.025
    a, b = [1] * 200 + [0] * 200, [0] * 200 + [0] * 200
    r = paired_bootstrap([a], [b], resamples=20_000, seed=1)
    assert r.diff == 0.5
    assert r.ci_low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.006)
    assert r.ci_high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.006)
    acc, lo, hi = accuracy_ci([a], resamples=20_000, seed=1)
    assert acc == 0.5 and lo == pytest.approx(0.451, abs=0.006) and hi == pytest.approx(0.549, abs=0.006)


def test_paired_bootstrap_refuses_unpaired_or_non_binary():
    with pytest.raises(ValueError, match="same seeds × items"):
        paired_bootstrap([[1, 0, 1]], [[1, 0]])
    with pytest.raises(ValueError, match="0/1"):
        paired_bootstrap([[1, 2]], [[1, 0]])


# ------------------------------------------------------------------------------------------------ cache
def test_config_hash_is_key_order_invariant_and_value_sensitive():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1, "b": [1, 2]}) != config_hash({"a": 1, "b": [2, 1]})
    assert config_hash({"lr": 5e-5}) != config_hash({"lr": 1e-4})


def test_unit_cache_reuses_only_the_same_config(tmp_path):
    cache = UnitCache(tmp_path / "units")
    cfg = {"arm": "sft", "seed": 0, "lr": 5e-5}
    assert cache.load("sft-s0", cfg) is None and not cache.stale("sft-s0", cfg)
    cache.save("sft-s0", cfg, {"accuracy": 0.5})
    got = cache.load("sft-s0", dict(reversed(list(cfg.items()))))
    assert got["accuracy"] == 0.5 and got["config_hash"] == config_hash(cfg) and got["config"] == cfg
    changed = {**cfg, "lr": 1e-4}
    assert cache.load("sft-s0", changed) is None and cache.stale("sft-s0", changed)
    cache.save("sft-s0", changed, {"accuracy": 0.6})
    assert cache.load("sft-s0", changed)["accuracy"] == 0.6
    assert json.loads((tmp_path / "units" / "sft-s0.stale.json").read_text())["accuracy"] == 0.5
    assert sorted(cache.all()) == ["sft-s0"]
    assert not list((tmp_path / "units").glob("*.tmp"))  # atomic write leaves no temporary file


def test_unit_cache_ignores_a_truncated_file(tmp_path):
    cache = UnitCache(tmp_path)
    (tmp_path / "ssb-s1.json").write_text('{"accuracy": 0.')
    assert cache.load("ssb-s1", {"arm": "ssb"}) is None


# ------------------------------------------------------------------------------------------------ committed units
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TOOLRL = ROOT.parent / "shared" / "data" / "toolrl_xlam_cot.jsonl"  # ../shared beside the checkout


def make_ablation_opts(tmp_path):
    """The options `make ablation` runs with (the Makefile's ABLATION_ARGS), with a stand-in --data file."""
    args = re.search(r"^ABLATION_ARGS \?= (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")
    return runner.parse_args(["--data", str(data_file), *args])


def test_committed_units_keep_their_config_hash(tmp_path):
    """Today's code gives every committed unit (benchmarks/results/ablation_v2/units/) the config and hash stored in
    it, from `make ablation`'s options and the data the committed report recorded (fingerprint, α, row counts): a
    rerun of `make ablation` skips them as cached."""
    committed = json.loads((RESULTS / "ablation_v2.json").read_text())
    info = committed["data"]
    opts = make_ablation_opts(tmp_path)
    plan = config.step_plan(opts, info["base_used"], info["hard_used"])
    assert plan == committed["plan"]
    data = {"base": [{}] * info["base_used"], "hard": [{}] * info["hard_used"], "info": info}
    expected, configs = config.unit_configs(opts, data, plan)
    assert [config.unit_name(a, s) for a, s in expected] == list(configs)
    assert sorted(configs) == sorted(committed["units_done"] + committed["units_missing"])
    stored = {p.stem: json.loads(p.read_text()) for p in (RESULTS / "ablation_v2" / "units").glob("*.json")
              if not p.name.endswith(".stale.json")}
    # all 15 units done
    assert sorted(stored) == committed["units_done"] and len(stored) == 15 and not committed["units_missing"]
    for name, unit in stored.items():
        assert configs[name] == unit["config"], name
        assert config_hash(configs[name]) == unit["config_hash"] == config_hash(unit["config"]), name
    cache = UnitCache(RESULTS / "ablation_v2" / "units")
    assert all(cache.load(name, configs[name]) for name in stored)


@pytest.mark.slow
@pytest.mark.skipif(not TOOLRL.is_file(), reason="needs ../shared/data/toolrl_xlam_cot.jsonl")
def test_committed_report_data_is_rebuilt_from_the_data_file(tmp_path):
    """The data half of the hashes above: build_data on the real file gives the fingerprint, α and counts the committed
    report recorded (and so the committed units' config hashes)."""
    from balancetrl.models import load_tokenizer

    opts = make_ablation_opts(tmp_path)
    opts.data = str(TOOLRL)
    info = build_data(opts, load_tokenizer(config.MODEL))["info"]
    committed = json.loads((RESULTS / "ablation_v2.json").read_text())["data"]
    assert {k: v for k, v in info.items() if k != "path"} == {k: v for k, v in committed.items() if k != "path"}


# ------------------------------------------------------------------------------------------------ runner: resume
N_SP, N_MU = 40, 20


def fake_vector(arm: str, seed: int | None, n: int) -> list[int]:
    if arm == "ssb_lr":
        return [1] * n  # far better than sft
    if arm == "base":
        return [0] * n
    return [(i + (seed or 0)) % 2 for i in range(n)]  # sft and ssb: identical answers


def fake_data(opts, n_base: int, n_hard: int) -> dict:
    """What build_data returns, for n_base base and n_hard hard rows (no tokenizer, no file read)."""
    return {"base": [{"id": f"r{i}"} for i in range(n_base)], "hard": [{"id": f"h{i}"} for i in range(n_hard)],
            "info": {"path": str(opts.data), "sha256": "x",
                     "checked": {"base": n_base, "hard": n_hard, "rejected": 0}, "rejected_reasons": {},
                     "base_over_max_length": [], "base_used": n_base, "alpha_text": 0.8, "cot_mean": 280.0,
                     "call_mean": 65.0, "alpha_supervised": 0.78, "hard_real": n_hard, "hard_used": n_hard,
                     "fingerprint": "f"}}


def test_runner_resumes_from_cache_and_reruns_changed_config(tmp_path, monkeypatch):
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")
    calls = []

    def fake_run_unit(arm, seed, opts, data, plan, work, key=""):
        assert len(key) == 16 and set(key) <= set("0123456789abcdef")  # the unit's config hash (keys saved weights)
        calls.append((arm, seed))
        sp, mu = fake_vector(arm, seed, N_SP), fake_vector(arm, seed, N_MU)
        trained = config.ARMS[arm][0]
        log = [{"step": s, "ssb/loss_cot": 1.0 / s, "ssb/loss_call": 0.5 / s, "ssb/lambda": 0.7 - 0.01 * s}
               for s in (1, 2)] if trained else []
        return {"samples": {"simple_python": [[f"sp_{i}", v] for i, v in enumerate(sp)],
                            "multiple": [[f"mu_{i}", v] for i, v in enumerate(mu)]},
                "accuracy": {"simple_python": sum(sp) / N_SP, "multiple": sum(mu) / N_MU},
                "step_seconds_median": 2.0 if trained else None, "eval_seconds_per_sample": 0.5, "log": log,
                "final_lambda": 0.68 if trained else None, "wall_seconds": 10.0,
                # the first unit ran before units recorded memory: the report takes the max of those that do
                **({} if arm == "base" else {"train_peak_rss_mb": 1024.0 * (2 + (seed or 0)) if trained else None,
                                             "eval_peak_rss_mb": 1536.0})}

    monkeypatch.setattr(runner, "build_data", lambda opts, tokenizer: fake_data(opts, 16, 1))
    monkeypatch.setattr(runner, "run_unit", fake_run_unit)
    monkeypatch.setattr("balancetrl.models.load_tokenizer", lambda spec: None)
    argv = ["--data", str(data_file), "--arms", "base,sft,ssb,ssb_lr", "--seeds", "0,1", "--steps", "4",
            "--resamples", "500", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]

    runner.main([*argv, "--max-units", "2"])  # an interrupted run: 2 of 7 units
    assert calls == [("base", None), ("sft", 0)]
    partial = json.loads((tmp_path / "out" / "ablation_v2.json").read_text())
    assert len(partial["units_missing"]) == 5 and "Partial run" in (tmp_path / "out" / "ablation_v2.md").read_text()
    assert partial["between_seeds"] == {}  # no arm has two seeds yet

    runner.main(argv)  # resume: only the 5 missing units run
    assert calls[2:] == [("ssb", 0), ("ssb_lr", 0), ("sft", 1), ("ssb", 1), ("ssb_lr", 1)]  # seed-major
    runner.main(argv)  # all cached: nothing runs
    assert len(calls) == 7

    res = json.loads((tmp_path / "out" / "ablation_v2.json").read_text())
    assert res["units_missing"] == []
    ssb, lr = res["vs_sft"]["ssb"], res["vs_sft"]["ssb_lr"]
    assert (ssb["diff"], ssb["ci_low"], ssb["ci_high"], ssb["distinguishable"]) == (0.0, 0.0, 0.0, False)
    assert ssb["n_items"] == N_SP + N_MU and ssb["n_seeds"] == 2 and ssb["seeds"] == [0, 1]
    assert lr["diff"] == 0.5 and lr["distinguishable"] and lr["a_only"] == 60 and lr["b_only"] == 0
    assert math.isclose(lr["mcnemar_p"], 2 * 0.5**60)
    assert lr["per_seed_diff"] == [0.5, 0.5] and ssb["per_seed_diff"] == [0.0, 0.0]
    # sft's two seeds answer the alternate halves of the items: same accuracy, every item discordant
    between = res["between_seeds"]
    assert list(between) == ["sft-s1 vs sft-s0", "ssb-s1 vs ssb-s0", "ssb_lr-s1 vs ssb_lr-s0"]
    b = between["sft-s1 vs sft-s0"]
    assert (b["diff"], b["a_only"], b["b_only"], b["mcnemar_p"], b["seeds"]) == (0.0, 30, 30, 1.0, [1, 0])
    assert b["ci_low"] < -0.1 and b["ci_high"] > 0.1  # 60 discordant items of ±1: a wide CI around 0
    assert between["ssb_lr-s1 vs ssb_lr-s0"]["a_only"] == 0 and between["ssb_lr-s1 vs ssb_lr-s0"]["b_only"] == 0
    sec = res["secondary"]["ssb_lr vs ssb"]  # the pre-set secondary pair; ssb_hdr is not in this run
    assert list(res["secondary"]) == ["ssb_lr vs ssb"] and (sec["diff"], sec["a_only"], sec["b_only"]) == (0.5, 60, 0)
    assert res["arms"]["base"]["main"]["accuracy"] == 0.0 and res["arms"]["ssb_lr"]["main"]["ci"] == [1.0, 1.0]
    assert res["estimate"]["step_seconds"] == 2.0 and res["estimate"]["eval_seconds_per_sample"] == 0.5
    # 6 trained units × 4 steps × 2 s + 7 units × 600 eval samples × 0.5 s
    assert res["estimate"]["hours_all_units"] == pytest.approx((6 * 4 * 2 + 7 * 600 * 0.5) / 3600)
    md = (tmp_path / "out" / "ablation_v2.md").read_text()
    assert "ssb vs sft: +0.0 points" in md and "**no detectable difference**" in md
    assert "ssb_lr vs sft: +50.0 points" in md and "ssb_lr is better than plain SFT" in md
    assert "| ssb_lr vs ssb | [0, 1] | 60 | 100.0 | 50.0 | +50.0 |" in md and "| yes | +50.0 / +50.0 |" in md
    assert "| sft-s1 vs sft-s0 | [1, 0] | 60 | 50.0 | 50.0 | +0.0 |" in md
    assert "The training seed alone moved an arm by 0.0 points on these items (3 arm(s) with two seeds)" in md
    # sft's seeds flip all 60 items, ssb's too, ssb_lr's none; ssb agrees with sft, ssb_lr disagrees on half
    assert ("Another seed of the same arm changes the verdict on 0.0–100.0% of the items; an arm and sft disagree on "
            "0.0–50.0% of them (discordant items per seed pair).") in md
    assert "disagree in sign" not in md
    assert res["peak_rss_mb"] == {"train_peak_rss_mb": 3072.0, "eval_peak_rss_mb": 1536.0, "units": 6}
    assert "max over the 6 unit(s) that record it): during training 3.0 GiB, during eval 1.5 GiB" in md
    for png in ("accuracy.png", "lambda.png", "losses.png"):
        assert (tmp_path / "out" / "ablation_v2" / png).stat().st_size > 1000

    runner.main([*argv, "--lr", "1e-4"])  # a changed training setting reruns every trained unit, not base
    assert calls[7:] == [("sft", 0), ("ssb", 0), ("ssb_lr", 0), ("sft", 1), ("ssb", 1), ("ssb_lr", 1)]
    assert (tmp_path / "work" / "units" / "sft-s0.stale.json").is_file()


def test_estimate_counts_the_measured_hdr_rounds(tmp_path, monkeypatch):
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")

    def fake_run_unit(arm, seed, opts, data, plan, work, key=""):
        steps = [2.0] * plan["total_steps"]
        # an HDR unit trains 300 s beyond its steps (its regeneration round); a plain one 5 s (setup)
        extra = 300.0 if config.ARMS[arm][3] else 5.0
        hdr = {"hdr": {"initial_hard": 4, "accepted_total": 1 + seed, "hard_remaining": 3 - seed,
                       "rounds": [{"round": 1, "generated": 8, "gate_rejected": 7 - seed, "accepted": 1 + seed}]}}
        return {"samples": {"simple_python": [["sp_0", 1]], "multiple": [["mu_0", 0]]},
                "accuracy": {"simple_python": 1.0, "multiple": 0.0}, "log": [], "wall_seconds": 1.0,
                "step_seconds": steps, "step_seconds_median": 2.0, "train_seconds": sum(steps) + extra,
                "eval_seconds_per_sample": 0.5} | (hdr if config.ARMS[arm][3] else {})

    monkeypatch.setattr(runner, "build_data", lambda opts, tokenizer: fake_data(opts, 16, 8))
    monkeypatch.setattr(runner, "run_unit", fake_run_unit)
    monkeypatch.setattr("balancetrl.models.load_tokenizer", lambda spec: None)
    argv = ["--data", str(data_file), "--arms", "sft,sft_hdr", "--seeds", "0,1", "--epochs", "1", "--resamples", "200",
            "--round-size", "4", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")]
    runner.main([*argv, "--max-units", "1"])  # sft-s0 only: no HDR unit measured yet
    est = json.loads((tmp_path / "out" / "ablation_v2.json").read_text())["estimate"]
    assert est["hdr_seconds_per_unit"] is None and "HDR generation rounds not included" in est["note"]

    runner.main([*argv, "--max-units", "1"])  # + sft_hdr-s0
    res = json.loads((tmp_path / "out" / "ablation_v2.json").read_text())
    est, total = res["estimate"], res["plan"]["total_steps"]
    assert est["hdr_seconds_per_unit"] == 300.0 and "HDR rounds at the measured 5.0 min per HDR unit" in est["note"]
    # 4 trained units × total steps × 2 s + 4 units × 600 samples × 0.5 s + 2 HDR units × 300 s
    assert est["hours_all_units"] == pytest.approx((4 * total * 2 + 4 * 600 * 0.5 + 2 * 300) / 3600)

    runner.main([*argv, "--max-units", "2"])  # + sft-s1, sft_hdr-s1: each HDR unit's acceptance named by its seed
    report = (tmp_path / "out" / "ablation_v2.md").read_text()
    assert "sft_hdr-s0: HDR accepted 1 of 4 hard samples" in report
    assert "sft_hdr-s1: HDR accepted 2 of 4 hard samples" in report


def test_units_folder_and_bf16_are_honoured(tmp_path, monkeypatch):
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")
    calls, seen_opts = [], []

    def fake_run_unit(arm, seed, opts, data, plan, work, key=""):
        calls.append((arm, seed))
        seen_opts.append(opts.bf16)
        return {"samples": {"simple_python": [["sp_0", 1]], "multiple": [["mu_0", 0]]},
                "accuracy": {"simple_python": 1.0, "multiple": 0.0}, "log": [], "wall_seconds": 1.0}

    monkeypatch.setattr(runner, "build_data", lambda opts, tokenizer: fake_data(opts, 8, 0))
    monkeypatch.setattr(runner, "run_unit", fake_run_unit)
    monkeypatch.setattr("balancetrl.models.load_tokenizer", lambda spec: None)
    monkeypatch.setattr(options, "cpu_bf16_flags", lambda: ["amx_bf16"])  # the same on any CI machine
    units = tmp_path / "committed" / "units"
    argv = ["--data", str(data_file), "--arms", "base,sft", "--seeds", "0", "--steps", "2", "--resamples", "200",
            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--units", str(units)]
    runner.main(argv)
    assert calls == [("base", None), ("sft", 0)] and seen_opts == [False, False]
    assert sorted(p.name for p in units.glob("*.json")) == ["base.json", "sft-s0.json"]
    assert not (tmp_path / "work" / "units").exists()
    # fp32 units keep the hash they had before --bf16 existed: no "bf16" key in their config
    assert "bf16" not in json.loads((units / "sft-s0.json").read_text())["config"]
    runner.main([*argv, "--bf16"])  # precision changes every unit's numbers, the untrained base's eval too
    assert calls[2:] == [("base", None), ("sft", 0)] and seen_opts[2:] == [True, True]
    assert json.loads((units / "base.json").read_text())["config"]["bf16"] is True
    assert "device" not in json.loads((units / "base.json").read_text())["config"]  # cpu: the hash of before

    with pytest.raises(SystemExit):  # no GPU here: refused before anything runs
        runner.main([*argv, "--bf16", "--device", "cuda"])
    assert len(calls) == 4
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    runner.main([*argv, "--bf16", "--device", "cuda"])  # a GPU's numbers never stand in for the CPU units
    assert calls[4:] == [("base", None), ("sft", 0)]
    assert json.loads((units / "sft-s0.json").read_text())["config"]["device"] == "cuda"


def test_bf16_is_refused_on_a_cpu_that_emulates_it(tmp_path, monkeypatch, capsys):
    """--bf16 on a CPU without AMX/avx512_bf16 stops before the first unit (a step there took ~12 min, not ~17 s),
    names the fix, and still lets a run whose units are all cached rebuild its report."""
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")
    calls = []

    def fake_run_unit(arm, seed, opts, data, plan, work, key=""):
        calls.append((arm, seed))
        return {"samples": {"simple_python": [["sp_0", 1]], "multiple": [["mu_0", 0]]},
                "accuracy": {"simple_python": 1.0, "multiple": 0.0}, "log": [], "wall_seconds": 1.0,
                "machine": {"nproc": 2, "cpu_model": "Unit CPU", "torch": "t", "torch_threads": 2}}

    monkeypatch.setattr(runner, "build_data", lambda opts, tokenizer: fake_data(opts, 8, 0))
    monkeypatch.setattr(runner, "run_unit", fake_run_unit)
    monkeypatch.setattr("balancetrl.models.load_tokenizer", lambda spec: None)
    monkeypatch.setattr(options, "cpu_bf16_flags", lambda: [])
    argv = ["--data", str(data_file), "--arms", "base,sft", "--seeds", "0", "--steps", "2", "--resamples", "200",
            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--bf16"]
    with pytest.raises(SystemExit) as err:
        runner.main(argv)
    msg = str(err.value)
    assert calls == [] and "amx_bf16" in msg and "--allow-slow-bf16" in msg and "own --units" in msg
    runner.main([*argv[:-1]])  # fp32 is not refused
    assert calls == [("base", None), ("sft", 0)]
    runner.main([*argv, "--allow-slow-bf16"])
    assert calls[2:] == [("base", None), ("sft", 0)]
    runner.main(argv)  # every bf16 unit cached now: nothing runs, the report is rebuilt, no refusal
    assert len(calls) == 4 and "2 units done, 0 missing" in capsys.readouterr().out
    # the report names where the units ran (their own records), not only the machine that rebuilt it
    md = (tmp_path / "out" / "ablation_v2.md").read_text()
    assert "Units ran on: 2 unit(s) on 2 cores (Unit CPU), torch t, 2 threads." in md
    assert f"on {os.cpu_count()} cores ({machine()['cpu_model']})." in md


class Killed(RuntimeError):
    pass


def test_a_unit_killed_in_eval_resumes_from_its_weights_and_journal(tmp_path, monkeypatch, tokenizer, conversations):
    """Train and evaluate one unit on the tiny model; kill a second attempt after its first eval batch; the third
    attempt loads the saved weights (no training) and replays that batch: same weights and verdicts as the clean run."""
    pytest.importorskip("bfcl_eval")
    import balancetrl.models as models
    from balancetrl.generation import TransformersGeneration
    from conftest import build_tiny_model

    monkeypatch.setattr(models, "load_model_and_tokenizer", lambda spec: (build_tiny_model(tokenizer), tokenizer))
    monkeypatch.setattr(models, "load_tokenizer", lambda spec: tokenizer)
    data_file = tmp_path / "data.jsonl"
    data_file.write_text("{}\n")
    opts = runner.parse_args(["--data", str(data_file), "--limit", "3", "--max-new-tokens", "6", "--batch", "2",
                                   "--eval-batch", "2", "--multi-turn-limit", "0", "--max-length", "512"])
    data = {"base": conversations, "hard": [], "info": {"alpha_supervised": 0.8}}
    plan = {"total_steps": 2, "base_used": 4}

    clean = units.run_unit("ssb", 0, opts, data, plan, tmp_path / "clean", key="k1")
    assert clean["global_step"] == 2 and "resumed" not in clean and clean["eval_replayed_batches"] == 0
    assert clean["eval_samples"] == 6

    generate, generated = TransformersGeneration._generate_batch, []

    def killed_after_one(self, *args, **kwargs):
        if generated:
            raise Killed
        generated.append(1)
        return generate(self, *args, **kwargs)

    work = tmp_path / "unit"
    monkeypatch.setattr(TransformersGeneration, "_generate_batch", killed_after_one)
    with pytest.raises(Killed):
        units.run_unit("ssb", 0, opts, data, plan, work, key="k1")
    monkeypatch.setattr(TransformersGeneration, "_generate_batch", generate)
    record = json.loads((work / "trained" / "train_result.json").read_text())
    assert record["weights"] == json.loads((tmp_path / "clean/trained/train_result.json").read_text())["weights"]

    def no_training(*args, **kwargs):
        raise AssertionError("the unit trained again")

    with monkeypatch.context() as m:
        m.setattr(units, "train_unit", no_training)
        resumed = units.run_unit("ssb", 0, opts, data, plan, work, key="k1")
    assert resumed["resumed"] == {"train": True, "eval_batches_replayed": 1}
    assert resumed["samples"] == clean["samples"] and resumed["accuracy"] == clean["accuracy"]
    assert resumed["log"] == clean["log"] and resumed["final_lambda"] == clean["final_lambda"]
    assert resumed["step_seconds"] == record["result"]["step_seconds"]  # the training record, not new timings
    journaled = [json.loads(line) for line in (work / "bfcl" / "generation_journal.jsonl").read_text().splitlines()]
    assert len(journaled) == 1 + 3  # header + every batch: the killed attempt's first and the two generated after
    assert resumed["eval_replayed_seconds"] == journaled[1]["seconds"]  # the killed attempt's batch, at its time
    assert resumed["train_loadavg_start"] == record["result"]["loadavg_start"]

    # Done: the runner releases the folder (a deleted unit file reruns, it does not replay).
    units.release_work(work)
    assert not (work / "trained").exists() and not (work / "bfcl" / "generation_journal.jsonl").exists()

    # Another config's state is not resumed: the folder is cleared for the new key, the unit trains again.
    other = tmp_path / "clean"
    assert units.load_trained(other / "trained", "k2") is None
    again = units.run_unit("ssb", 0, opts, data, plan, other, key="k2")
    assert "resumed" not in again and again["eval_replayed_batches"] == 0 and again["samples"] == clean["samples"]
    assert (other / "unit_key.txt").read_text().strip() == "k2"
    work = other
    # Weights that do not hash to their record are refused with the fix.
    record = json.loads((work / "trained" / "train_result.json").read_text())
    (work / "trained" / "train_result.json").write_text(json.dumps({**record, "weights": "0" * 64}))
    with pytest.raises(RuntimeError, match="delete .*trained to train this unit again"):
        units.load_trained(work / "trained", "k2")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="VmHWM reset is Linux-only")
def test_peak_rss_is_per_unit_after_a_reset():
    units.peak_rss_mb(reset=True)
    before = units.peak_rss_mb()
    block = bytearray(256 * 2**20)  # written (zeroed) pages are resident
    during = units.peak_rss_mb()
    del block
    assert during - before >= 250
    # a peak stays after the memory is freed (to the kernel's batched RSS counters: within a few MiB)
    assert units.peak_rss_mb() == pytest.approx(during, abs=4)
    units.peak_rss_mb(reset=True)
    assert units.peak_rss_mb() < during - 200  # until the next unit restarts it


def test_truncation_tells_unfinished_from_wrong(tmp_path):
    rows = [{"output_token_count": 512, "valid": False}, {"output_token_count": 600, "valid": True},
            {"output_token_count": 100, "valid": True}, {"output_token_count": None, "valid": False}]
    assert evaluation.truncation(rows, 512) == {"items": 4, "capped": 2, "capped_valid": 1, "finished_valid": 1}
    # a unit cached before truncation was recorded is filled from its own samples files, once
    unit = {"unit": "sft-s0"}
    assert not evaluation.add_truncation(unit, tmp_path, 512)  # files not on this machine: left as it is
    folder = tmp_path / "sft-s0" / "bfcl" / "samples"
    folder.mkdir(parents=True)
    for c in config.CATEGORIES:
        (folder / f"{c}.jsonl").write_text("".join(json.dumps(r | {"id": f"{c}_{i}"}) + "\n"
                                                  for i, r in enumerate(rows)))
    assert evaluation.add_truncation(unit, tmp_path, 512)
    assert unit["truncation"]["multiple"] == {"items": 4, "capped": 2, "capped_valid": 1, "finished_valid": 1}
    assert not evaluation.add_truncation(unit, tmp_path, 512)


def test_multi_turn_verdicts_are_read_from_the_entry_files_in_bfcl_order(tmp_path):
    # the eval runner writes one entries/<category>/<id>.json per multi-turn entry (no samples/*.jsonl)
    folder = tmp_path / "entries" / "multi_turn_base"
    folder.mkdir(parents=True)
    for i, valid in ((10, True), (2, False), (0, True)):
        (folder / f"multi_turn_base_{i}.json").write_text(json.dumps({"id": f"multi_turn_base_{i}", "valid": valid}))
    rows = evaluation.read_entries(tmp_path, "multi_turn_base")
    assert evaluation.per_sample(rows) == [["multi_turn_base_0", 1], ["multi_turn_base_2", 0],
                                            ["multi_turn_base_10", 1]]


def test_reading_says_when_a_comparison_has_one_seed():
    c = {"diff": -0.022, "ci_low": -0.048, "ci_high": 0.005, "ci_width": 0.053, "distinguishable": False,
         "mcnemar_p": 0.142, "n_items": 600}
    res = {"units_missing": [], "arms": {}, "data": {}, "secondary": {},
           "vs_sft": {"ssb": c | {"n_seeds": 1}, "ssb_lr": c | {"n_seeds": 2}}}
    lines = report.reading(res)
    assert ("One seed only for ssb vs sft: the CI covers the sampling of BFCL items, not the variation between "
            "training seeds, so it is narrower than the finished experiment's will be.") in lines
    assert "ssb vs sft: -2.2 points, 95% CI [-4.8, +0.5], McNemar p = 0.142 — **no detectable difference**" in lines[0]


def test_reading_says_when_seeds_disagree_and_how_far_a_seed_moves_an_arm():
    c = {"diff": -0.005, "ci_low": -0.03, "ci_high": 0.02, "ci_width": 0.05, "distinguishable": False,
         "mcnemar_p": 0.8, "n_items": 600, "n_seeds": 2, "seeds": [0, 1], "per_seed_diff": [-0.022, 0.012],
         "a_only": 30, "b_only": 36}  # 66 of 1200 item-seed pairs
    same = c | {"per_seed_diff": [-0.01, -0.002], "a_only": 100, "b_only": 76}
    seed = {"diff": 0.015, "ci_low": -0.01, "ci_high": 0.04, "mcnemar_p": 0.3, "a_only": 47, "b_only": 41,
            "n_items": 600, "n_seeds": 1}
    between = {"sft-s1 vs sft-s0": seed, "ssb-s1 vs ssb-s0": seed | {"diff": -0.03, "distinguishable": True}}
    res = {"units_missing": [], "arms": {}, "data": {}, "secondary": {"ssb_hdr vs ssb": c},
           "vs_sft": {"ssb": c, "ssb_lr": same}, "between_seeds": between}
    lines = report.reading(res)
    assert "ssb vs sft: the seeds disagree in sign (seed 0 -2.2, seed 1 +1.2 points)." in lines
    assert "ssb_hdr vs ssb: the seeds disagree in sign (seed 0 -2.2, seed 1 +1.2 points)." in lines
    assert not any(s.startswith("ssb_lr vs sft: the seeds") for s in lines)
    assert ("sft-s1 vs sft-s0 (same arm, other training seed): +1.5 points, 95% CI [-1.0, +4.0], "
            "McNemar p = 0.3.") in lines
    assert any(s.startswith("The training seed alone moved an arm by 1.5–3.0 points on these items (2 arm(s)")
               for s in lines)
    assert ("Another seed of the same arm changes the verdict on 14.7% of the items; an arm and sft disagree on "
            "5.5–14.7% of them (discordant items per seed pair).") in lines
    loud = [s for s in lines if "the training seed alone gives a difference whose item-bootstrap CI excludes" in s]
    assert len(loud) == 1 and loud[0].startswith("ssb-s1 vs ssb-s0: ")  # sft's seeds are not distinguishable




@pytest.mark.slow
@pytest.mark.timeout(1800)  # three units of the real model: ~5 min on 2 cores shared with another job
@pytest.mark.skipif(not TOOLRL.is_file(), reason="needs ../shared/data/toolrl_xlam_cot.jsonl")
def test_a_real_unit_killed_in_eval_resumes_to_the_same_outputs(tmp_path, monkeypatch):
    """The ablation's own setting at a small size: SmolLM2-135M from its GGUF, the real long-CoT rows, bf16 training
    and decoding. Killed after its first eval batch, the unit resumes from the saved (safetensors) weights and writes
    the same raw outputs as an uninterrupted unit (the GGUF-loaded model it trained)."""
    pytest.importorskip("bfcl_eval")
    from balancetrl.generation import TransformersGeneration
    from balancetrl.models import load_tokenizer

    opts = runner.parse_args(["--data", str(TOOLRL), "--limit", "3", "--max-new-tokens", "48", "--batch", "1",
                                   "--eval-batch", "2", "--multi-turn-limit", "0", "--max-length", "512", "--bf16"])
    data = build_data(opts, load_tokenizer(config.MODEL))
    plan = {"total_steps": 2, "base_used": 4}
    clean = units.run_unit("ssb", 0, opts, data, plan, tmp_path / "clean", key="k")

    generate, generated = TransformersGeneration._generate_batch, []

    def killed_after_one(self, *args, **kwargs):
        if generated:
            raise Killed
        generated.append(1)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(TransformersGeneration, "_generate_batch", killed_after_one)
    with pytest.raises(Killed):
        units.run_unit("ssb", 0, opts, data, plan, tmp_path / "unit", key="k")
    monkeypatch.setattr(TransformersGeneration, "_generate_batch", generate)
    resumed = units.run_unit("ssb", 0, opts, data, plan, tmp_path / "unit", key="k")

    assert resumed["resumed"] == {"train": True, "eval_batches_replayed": 1}
    assert resumed["log"] == clean["log"] and resumed["samples"] == clean["samples"]

    def raw(folder):
        return [json.loads(line)["raw_output"] for c in config.CATEGORIES
                for line in (tmp_path / folder / "bfcl" / "samples" / f"{c}.jsonl").read_text().splitlines()]

    assert raw("unit") == raw("clean") and len(raw("clean")) == 6
    assert len({len(r) for r in raw("clean")}) > 1  # real, different outputs (not six empty strings)


def test_paired_mean_difference_keeps_an_items_seeds_together():
    from benchmarks.ablation_v2.paired_stats import paired_mean_difference

    # per item, Σ_seeds (a - b) = 0.5 for both items: every item resample gives 1.0 / 4 = 0.25 exactly
    r = paired_mean_difference([[1.0, 2.0], [0.5, 1.5]], [[0.5, 2.0], [0.5, 1.0]], resamples=500)
    assert (r["n_seeds"], r["n_items"]) == (2, 2)
    assert (r["diff"], r["ci_low"], r["ci_high"]) == (0.25, 0.25, 0.25) and r["distinguishable"]
    assert r["per_seed"] == [0.25, 0.25]
    assert (r["mean_a"], r["mean_b"]) == (1.25, 1.0)
    # a per-item difference of +1 on half the items and -1 on the rest: mean 0, the CI straddles it
    r = paired_mean_difference([[1.0, -1.0] * 50], [[0.0, 0.0] * 50], resamples=4000)
    assert r["diff"] == 0.0 and r["ci_low"] < 0 < r["ci_high"] and not r["distinguishable"]
    assert r["ci_high"] == pytest.approx(1.96 * 1 / math.sqrt(100), abs=0.04)  # SE of a ±1 mean over 100 items
    with pytest.raises(ValueError, match="same seeds"):
        paired_mean_difference([[1.0, 2.0]], [[1.0]])
    with pytest.raises(ValueError, match="finite"):
        paired_mean_difference([[float("nan")]], [[1.0]])


def test_units_command_records_the_run_not_the_rebuild():
    """A --report-only rebuild records the command that runs the units, so the rebuilt report is the same."""
    from benchmarks.ablation_v2.options import units_command

    assert units_command("benchmarks.mechanism", ["--seeds", "0,1", "--report-only", "--out", "a b"]) == \
        "python -m benchmarks.mechanism --seeds 0,1 --out 'a b'"
    assert units_command("benchmarks.ablation_v2", []) == "python -m benchmarks.ablation_v2"
