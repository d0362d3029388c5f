"""One unit: train the arm (trained arms), save its weights, evaluate. A unit killed after training resumes from its
saved weights (`<work>/trained`) and eval journal instead of training again."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

from benchmarks.ablation_v2.config import ARMS, MODEL, lambda_settings
from benchmarks.ablation_v2.evaluation import evaluate
from benchmarks.common import StepTimer, machine

# per unit work folder: the trained weights and their record (a unit killed during eval resumes from them)
TRAINED_DIR, TRAINED_RECORD = "trained", "train_result.json"
WORK_KEY_FILE = "unit_key.txt"  # the unit config (and --units folder) a work folder's saved state belongs to
EVAL_FOLDERS = ("bfcl", "bfcl_mt")  # evaluate_bfcl output dirs (single-turn, multi_turn_base), each with a journal


def peak_rss_mb(reset: bool = False) -> float | None:
    """This process's peak resident memory (VmHWM) since the last reset, in MiB; None off Linux.

    Units run one after another in one process, so the lifetime peak (`ru_maxrss`) would carry the largest unit
    into every later one: writing 5 to clear_refs restarts the peak (Linux >= 4.0)."""
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
            return None
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def save_trained(model, result: dict, key: str, folder: Path) -> None:
    """The unit's trained weights and its training record, so a unit killed during eval resumes there instead of
    training again. The record is written last (atomically): present means the weights beside it are complete."""
    from balancetrl.data.io import atomic_write
    from balancetrl.generation import weights_fingerprint

    (folder / TRAINED_RECORD).unlink(missing_ok=True)  # never an old record beside new weights
    model.save_pretrained(folder)
    record = {"config_hash": key, "weights": weights_fingerprint(model), "result": result}
    with atomic_write(folder / TRAINED_RECORD) as f:
        json.dump(record, f, indent=1, default=str)


def load_trained(folder: Path, key: str):
    """(model, training record) saved by `save_trained` for this unit config, or None (absent, or another config's).
    The weights must hash to what was saved: anything else is refused, not evaluated."""
    from balancetrl.generation import weights_fingerprint
    from balancetrl.models import load_model

    path = folder / TRAINED_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("config_hash") != key:
        return None
    model = load_model(str(folder), dtype="float32")
    if weights_fingerprint(model) != record["weights"]:
        raise RuntimeError(f"{folder}: the saved weights do not hash to what its {TRAINED_RECORD} recorded; delete "
                           f"{folder} to train this unit again")
    return model, record["result"]


def claim_work(work: Path, key: str) -> None:
    """`work` holds what one unit config left (saved weights, eval journals): under another key (a changed setting,
    another --units folder) it is cleared before the unit runs, so nothing of another config is replayed."""
    marker = work / WORK_KEY_FILE
    if marker.is_file() and marker.read_text().strip() == key:
        return
    release_work(work)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(key + "\n")


def release_work(work: Path) -> None:
    """After the unit's result is cached: its saved weights and journals have served (a deleted unit file reruns
    the unit rather than replaying it)."""
    from balancetrl.eval.runner import JOURNAL_FILE

    shutil.rmtree(work / TRAINED_DIR, ignore_errors=True)
    for folder in EVAL_FOLDERS:
        (work / folder / JOURNAL_FILE).unlink(missing_ok=True)
    (work / WORK_KEY_FILE).unlink(missing_ok=True)


def run_unit(arm: str, seed: int | None, opts, data: dict, plan: dict, work: Path, key: str = "") -> dict:
    """Train (trained arms) and evaluate one unit in `work`. `key` (a hash of the unit's config and --units folder)
    lets a unit killed after training resume from its saved weights (`work/trained`) and eval journal (`work/bfcl`)."""
    from transformers import set_seed

    from balancetrl.eval.runner import JOURNAL_FILE
    from balancetrl.models import load_model_and_tokenizer, load_tokenizer

    trained, *_ = ARMS[arm]
    t_start = time.perf_counter()
    set_seed(seed if seed is not None else 0)
    peak_rss_mb(reset=True)
    if key:
        claim_work(work, key)
    saved = load_trained(work / TRAINED_DIR, key) if trained and key else None
    if saved is not None:
        model, train_result = saved
        tokenizer = load_tokenizer(MODEL)
        model.to(opts.device)
        print(f"   resuming after training: weights from {work / TRAINED_DIR}", flush=True)
    else:
        model, tokenizer = load_model_and_tokenizer(MODEL)
    # the load average says how much other work shared the cores: timings under load are not the machine's speed
    result: dict = {"arm": arm, "seed": seed, "loadavg_start": os.getloadavg()}
    if saved is not None:
        # the training attempt's record; this attempt's load average stays (it is the eval's)
        result.update({k: v for k, v in train_result.items() if k != "loadavg_start"})
        result["train_loadavg_start"] = train_result.get("loadavg_start")
        result["resumed"] = {"train": True}
    elif trained:
        model, train_result = train_unit(arm, seed, model, tokenizer, opts, data, plan, work)
        train_result["train_wall_seconds"] = time.perf_counter() - t_start
        result.update(train_result)
        # new weights: a journal of an earlier attempt belongs to other weights (the journal would refuse it)
        for folder in EVAL_FOLDERS:
            (work / folder / JOURNAL_FILE).unlink(missing_ok=True)
        if key:
            t_save = time.perf_counter()
            save_trained(model, result, key, work / TRAINED_DIR)
            result["save_seconds"] = time.perf_counter() - t_save  # outside wall_seconds, as for the older units
        peak_rss_mb(reset=True)
    else:
        model.to(opts.device)  # the trainer placed the trained arms' models
    t_eval = time.perf_counter()
    result.update(evaluate(model, tokenizer, f"{MODEL}:{arm}:s{seed}", work, opts))
    result["eval_peak_rss_mb"] = peak_rss_mb()
    # training (as recorded when it ran) + eval; batches replayed from a journal count at their recorded time
    result["wall_seconds"] = (result.get("train_wall_seconds", t_eval - t_start) + time.perf_counter() - t_eval
                              + result.get("eval_replayed_seconds", 0.0) + result.get("multi_turn_replayed_seconds", 0.0))
    if result.get("eval_replayed_batches"):
        result.setdefault("resumed", {})["eval_batches_replayed"] = result["eval_replayed_batches"]
    result["loadavg_end"] = os.getloadavg()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    result["machine"] = machine()
    return result


def train_unit(arm: str, seed: int | None, model, tokenizer, opts, data: dict, plan: dict, work: Path):
    """Train `model` as `arm`: (trained model, training record: steps, timings, λ/loss log, HDR rounds, peak memory)."""
    from balancetrl import BalanceSFTConfig, BalanceSFTTrainer, HDRCallback, HDRConfig
    from balancetrl.data.training import to_training_dataset

    _, ssb, _, hdr = ARMS[arm]
    result: dict = {}
    lam = lambda_settings(arm, opts, data["info"]["alpha_supervised"])
    args = BalanceSFTConfig(
        output_dir=str(work / "trainer"), report_to=[], use_cpu=opts.device == "cpu", seed=seed, data_seed=seed,
        per_device_train_batch_size=opts.batch, gradient_accumulation_steps=1, learning_rate=opts.lr,
        lr_scheduler_type="cosine", warmup_steps=0.05, max_length=opts.max_length, logging_steps=1,
        gradient_checkpointing=False, save_strategy="no", eval_strategy="no", disable_tqdm=not opts.progress,
        dataloader_num_workers=0, max_steps=-1 if hdr else plan["total_steps"], num_train_epochs=1,
        ssb=bool(ssb), bf16=opts.bf16, **lam,
    )
    timer = StepTimer()
    callbacks = [timer]
    if hdr:
        callbacks.append(HDRCallback(HDRConfig(
            cold_start_epochs=plan["cold_start_epochs"], max_rounds=opts.hdr_rounds, epochs_per_round=1,
            round_size=plan["round_size"], replay_ratio=0.5, num_generations=opts.num_generations,
            temperature=0.7, max_new_tokens=opts.hdr_max_new_tokens, generation_batch_size=opts.gen_batch,
            judges=[]), hard_set=data["hard"]))
    base = data["base"][: plan["base_used"]]
    trainer = BalanceSFTTrainer(model=model, args=args, train_dataset=to_training_dataset(base),
                                processing_class=tokenizer, callbacks=callbacks)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.train()
    train_cpu = time.process_time() - c0
    hist = trainer.state.log_history
    result.update({
        "global_step": trainer.state.global_step, "planned_steps": plan["total_steps"],
        "train_seconds": time.perf_counter() - t0,
        # CPU seconds of this process (all threads): unlike wall time, not inflated by other jobs on the cores
        "train_cpu_seconds": train_cpu, "step_cpu_seconds": train_cpu / max(trainer.state.global_step, 1),
        "step_seconds": timer.step_seconds,
        "step_seconds_median": statistics.median(timer.step_seconds) if timer.step_seconds else None,
        "log": [{k: h[k] for k in ("step", "ssb/lambda", "ssb/loss_cot", "ssb/loss_call", "ssb/tokens_cot",
                                   "ssb/tokens_call", "loss") if k in h} for h in hist if "ssb/loss_cot" in h],
        "final_lambda": trainer.ssb_lambda,
    })
    if hdr:
        path = Path(args.output_dir) / "hdr" / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        result["hdr"] = {k: summary.get(k) for k in ("initial_hard", "accepted_total", "hard_remaining")}
        result["hdr"]["rounds"] = [{k: r.get(k) for k in ("round", "generated", "gate_rejected", "accepted")}
                                   for r in summary.get("rounds", [])]
    if trainer.state.global_step != plan["total_steps"]:
        raise RuntimeError(f"{arm} seed {seed}: trained {trainer.state.global_step} steps, planned "
                           f"{plan['total_steps']}: the arms would not be comparable")
    model = trainer.model
    del trainer
    # two units side by side need twice this: the memory check of running them in parallel
    result["train_peak_rss_mb"] = peak_rss_mb()
    return model, result
