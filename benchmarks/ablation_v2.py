"""BalanceSFT ablation in the paper's regime (long CoT, α ≈ 0.8): paired, multi-seed, resumable. Successor of
`ablation.py` (whose results, `results/ablation.md`, stay as they were).

    python -m benchmarks.ablation_v2 --data ../shared/data/toolrl_xlam_cot.jsonl [--seeds 0,1] [--epochs 2] ...
    python -m benchmarks.ablation_v2 ... --report-only     # rebuild the report from the cached units

Data: the rows of `--data` that `check_record` puts in the base set train every arm (rows longer than
--max-length tokens are dropped, not truncated: keep_start truncation would cut off the call). Hard set of the HDR
arms: the rows the Answer Check marks hard, plus, when fewer than --min-hard, hard records of the project's
generator (`generate_labeled`, reference-violating answers) whose CoT this runner lengthens with a schema walk
(`long_cot`) — the long-CoT setting; its α is measured with the SmolLM2 tokenizer and must reach --hard-alpha-min.

Arms (same GGUF start, optimizer steps, data order, seed and eval for every trained arm of a seed):
    base          SmolLM2-135M-Instruct untrained (one unit: greedy eval does not depend on the seed)
    sft           ssb=False: TRL's plain SFT loss (implicit CoT weight α of the training data)
    ssb           the paper: λ init 0.7, learnable, λ on the main learning rate
    ssb_lr        λ init 0.7, learnable, ssb_lambda_lr = --lambda-lr (large enough that λ moves)
    ssb_fixed_lo  λ fixed at α - --fixed-delta  } α: plain SFT's CoT weight measured on the training data
    ssb_fixed_hi  λ fixed at α + --fixed-delta  }   (supervised tokens in CoT spans / all supervised tokens)
    sft_hdr       ssb=False + HDRCallback (rule gate only: judges=[])
    ssb_hdr       the paper's SSB + HDRCallback (rule gate only)

Eval: BFCL simple_python + multiple (all 600 unless --limit), greedy, --prompt-style fc (the trained format), via
`evaluate_bfcl`; `multi_turn_base` on its first --multi-turn-limit items, read from the runner's per-entry verdicts
(skipped with a note if the runner cannot score it); per arm also the share of outputs cut at --max-new-tokens.
Every (arm, seed) result is cached in <units>/<arm>-s<seed>.json (--units, default <work>/units; `make ablation`
keeps them in benchmarks/results/ablation_v2/units, committed, so sessions add to one experiment) with a hash of its
config (data fingerprint, step plan, λ settings, HDR settings, eval settings, --bf16), and reused only for the same
config; the hash does not cover the code, so after a change that alters results use a new --units folder. A unit
killed during eval resumes: after training it saves its weights and training record in <work>/<unit>/trained/, and
its eval journals each finished batch (`evaluate_bfcl(resume=True)`). Units run
seed-major (every arm on the first seed, then the next seed). The report
(<out>/ablation_v2.md/.json + plots) is built from the cache: pooled accuracy with 95% CIs, every trained arm vs SFT
as a paired comparison (item bootstrap, McNemar).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from balancetrl.cpu import cpu_bf16_flags
from benchmarks.common import StepTimer, command_line, machine, plan_steps
from benchmarks.paired_stats import accuracy_ci, paired_bootstrap
from benchmarks.unit_cache import UnitCache, config_hash

MODEL = "smollm2-135m-instruct"
CATEGORIES = ["simple_python", "multiple"]
MULTI_TURN = "multi_turn_base"
# per unit work folder: the trained weights and their record (a unit killed during eval resumes from them)
TRAINED_DIR, TRAINED_RECORD = "trained", "train_result.json"
WORK_KEY_FILE = "unit_key.txt"  # the unit config (and --units folder) a work folder's saved state belongs to
EVAL_FOLDERS = ("bfcl", "bfcl_mt")  # evaluate_bfcl output dirs (single-turn, multi_turn_base), each with a journal
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


# ------------------------------------------------------------------------------------------------ data
def sha(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_file(path: str) -> dict:
    """Split `path` with the project's checks (`balancetrl check` defaults): base / hard / rejected with reasons."""
    from balancetrl.data.checks import check_record
    from balancetrl.data.formats import load_records

    split = {"base": [], "hard": [], "rejected": {}}
    for row in load_records(path):
        if row.error:
            split["rejected"][row.error] = split["rejected"].get(row.error, 0) + 1
            continue
        out = check_record(row.data)
        if out.outcome == "rejected":
            split["rejected"][out.reason] = split["rejected"].get(out.reason, 0) + 1
        else:
            split[out.outcome].append(out.record)
    return split


def long_cot(record: dict) -> dict:
    """The record with its first assistant CoT extended by a walk over every offered tool schema and every argument.

    This is the long-CoT setting of the generator's records (their own CoT is 2-6 sentences, α ≈ 0.57): the
    appended text restates what the schemas say, as R1-style reasoning does, and does not change any call.
    """
    import copy

    rec = copy.deepcopy(record)
    turn = next(m for m in rec["messages"] if m["role"] == "assistant")
    query = next(m["content"] for m in rec["messages"] if m["role"] == "user")
    walk = [(f"Let me read the request again carefully: \"{query}\". I will go through the available tools one "
            "by one before deciding.")]
    schemas = {}
    for tool in rec["tools"]:
        fn = tool.get("function", tool)
        props = (fn.get("parameters") or {}).get("properties") or {}
        required = set((fn.get("parameters") or {}).get("required") or [])
        schemas[fn["name"]] = props
        params = "; ".join(
            f"{p} ({spec.get('type', 'any')}, {'required' if p in required else 'optional'}): "
            f"{(spec.get('description') or 'no description').rstrip('.')}" for p, spec in props.items())
        walk.append(f"Let me look at {fn['name']}. Its description says: {(fn.get('description') or '').rstrip('.')}. "
                    f"It takes {params or 'no parameters'}.")
    for call in turn.get("tool_calls") or []:
        fn = call.get("function", call)
        for p, v in (fn.get("arguments") or {}).items():
            spec = schemas.get(fn["name"], {}).get(p, {})
            walk.append(f"For {fn['name']}, the parameter {p} is described as "
                        f"\"{(spec.get('description') or 'no description').rstrip('.')}\" and should be of type "
                        f"{spec.get('type', 'any')}. From the request, its value is {json.dumps(v)}. I check that "
                        "this value has the type the schema asks for and that it is exactly what the user said, "
                        "without inventing anything.")
    walk.append("Having gone through every tool and every argument, and having checked that no required "
                "parameter is missing, I am confident in the call below.")
    turn["reasoning_content"] = (turn.get("reasoning_content") or "") + "\n\n" + " ".join(walk)
    return rec


def supervised_alpha(records: list[dict], tokenizer, max_length: int) -> tuple[list[dict], list[dict], dict]:
    """Tokenize records as the trainer does; drop those over `max_length`; α of what plain SFT would weight."""
    from balancetrl.data.training import to_training_row
    from balancetrl.segments import SegmentSpec, tokenize_with_segments

    kept, dropped, n_cot, n_sup, lengths = [], [], 0, 0, []
    spec = SegmentSpec("<think>", "</think>")
    for rec in records:
        tok = tokenize_with_segments(to_training_row(rec), tokenizer, tokenizer.chat_template, spec)
        if len(tok["input_ids"]) > max_length:
            dropped.append({"id": rec.get("id"), "tokens": len(tok["input_ids"])})
            continue
        kept.append(rec)
        lengths.append(len(tok["input_ids"]))
        n_cot += sum(tok["cot_mask"])
        n_sup += sum(label != -100 for label in tok["labels"])
    info = {"alpha_supervised": n_cot / n_sup if n_sup else float("nan"), "cot_tokens": n_cot,
            "call_tokens": n_sup - n_cot, "tokens_mean": statistics.mean(lengths) if lengths else None,
            "tokens_max": max(lengths) if lengths else None}
    return kept, dropped, info


def build_data(opts, tokenizer) -> dict:
    from balancetrl.data.checks import check_record
    from balancetrl.data.stats import token_stats
    from tests.fixtures.synthetic import generate_labeled

    split = check_file(opts.data)
    base, dropped, sup = supervised_alpha(split["base"], tokenizer, opts.max_length)
    if not base:
        raise SystemExit(f"no base row of {opts.data} fits --max-length {opts.max_length}")
    text = token_stats(base, tokenizer)
    hard = list(split["hard"])
    info = {
        "path": str(opts.data), "sha256": hashlib.sha256(Path(opts.data).read_bytes()).hexdigest()[:16],
        "checked": {"base": len(split["base"]), "hard": len(split["hard"]),
                    "rejected": sum(split["rejected"].values())},
        "rejected_reasons": split["rejected"], "base_over_max_length": dropped, "base_used": len(base),
        "alpha_text": text.alpha, "cot_mean": statistics.mean(text.cot) if text.cot else None,
        "call_mean": statistics.mean(text.call) if text.call else None, **sup,
        "hard_real": len(hard),
    }
    synthetic = []
    if len(hard) < opts.min_hard:
        need = opts.min_hard - len(hard)
        records, _ = generate_labeled(4 * need, opts.hard_seed, hard_fraction=0.5, reject_fraction=0.0,
                                      id_prefix="longcot")
        for rec in records:
            out = check_record(rec)
            if out.outcome == "hard" and len(synthetic) < need:
                synthetic.append(long_cot(out.record))
        stats = token_stats(synthetic, tokenizer)
        info["hard_synthetic"] = {
            "name": f"generate_labeled(n={4 * need}, seed={opts.hard_seed}, hard_fraction=0.5) hard records "
                    f"+ long_cot(), first {need} that check hard",
            "n": len(synthetic), "alpha": stats.alpha, "cot_mean": statistics.mean(stats.cot),
            "call_mean": statistics.mean(stats.call)}
        if stats.alpha < opts.hard_alpha_min:
            raise SystemExit(f"the long-CoT synthetic hard set has α = {stats.alpha:.3f} < --hard-alpha-min "
                             f"{opts.hard_alpha_min}: lengthen long_cot() or lower --hard-alpha-min (and say so)")
    hard = (hard + synthetic)[: opts.min_hard] if opts.min_hard else hard
    info["hard_used"] = len(hard)
    info["fingerprint"] = sha({"base": base, "hard": hard})
    return {"base": base, "hard": hard, "info": info}


# ------------------------------------------------------------------------------------------------ units
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


def multi_turn_supported() -> tuple[bool, str]:
    """Whether the project's eval runner can score `multi_turn_base` (issue 9 adds it); why not otherwise."""
    from balancetrl.eval import bfcl

    try:
        bfcl.resolve_categories([MULTI_TURN])
    except ValueError as e:
        return False, str(e)
    return True, ""


def read_samples(eval_dir: Path, category: str) -> list[dict]:
    """The runner's samples/<category>.jsonl rows, in BFCL order."""
    return [json.loads(line) for line in (eval_dir / "samples" / f"{category}.jsonl").read_text().splitlines()]


def read_entries(eval_dir: Path, category: str) -> list[dict]:
    """The runner's multi-turn verdicts, `entries/<category>/<id>.json`, in BFCL order (the id's number)."""
    files = sorted((eval_dir / "entries" / category).glob("*.json"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return [json.loads(f.read_text()) for f in files]


def per_sample(rows: list[dict]) -> list[list]:
    """[[id, 0/1], ...]: bfcl's verdict per item."""
    return [[r["id"], int(bool(r["valid"]))] for r in rows]


def truncation(rows: list[dict], max_new_tokens: int) -> dict:
    """Items whose generation stopped at max_new_tokens (a CoT that never reached its call), and of the others how
    many are right: tells "answers wrong calls" from "never finishes thinking"."""
    capped = [r for r in rows if (r.get("output_token_count") or 0) >= max_new_tokens]
    finished = [r for r in rows if (r.get("output_token_count") or 0) < max_new_tokens]
    return {"items": len(rows), "capped": len(capped), "capped_valid": sum(bool(r["valid"]) for r in capped),
            "finished_valid": sum(bool(r["valid"]) for r in finished)}


def add_truncation(unit: dict, work: Path, max_new_tokens: int) -> bool:
    """Fill `truncation` of a unit cached before it was recorded, from that unit's own samples files (same run's
    outputs, nothing re-generated); False when those files are not on this machine."""
    if "truncation" in unit:
        return False
    folder = work / unit["unit"] / "bfcl"
    if not all((folder / "samples" / f"{c}.jsonl").is_file() for c in CATEGORIES):
        return False
    unit["truncation"] = {c: truncation(read_samples(folder, c), max_new_tokens) for c in CATEGORIES}
    return True


def evaluate(model, tokenizer, name: str, work: Path, opts) -> dict:
    import torch

    from balancetrl.eval.runner import evaluate_bfcl

    model.eval()
    if opts.bf16:  # the trained fp32 weights, cast once: greedy decoding in bf16 (AMX) as the trainer's autocast
        model.to(torch.bfloat16)
    out = {"samples": {}, "accuracy": {}}
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.no_grad():
        # resume: every finished batch is journaled, so a unit killed mid-eval goes on from its last batch
        report = evaluate_bfcl(name, categories=CATEGORIES, output_dir=work / "bfcl", limit=opts.limit or None,
                               model=model, tokenizer=tokenizer, max_new_tokens=opts.max_new_tokens,
                               batch_size=opts.eval_batch, progress=opts.progress, prompt_style="fc", resume=True)
        journal = report["journal"]
        # replayed batches count at the time they took when generated (by the attempt that was killed)
        out["eval_replayed_batches"] = journal["replayed_batches"]
        out["eval_replayed_seconds"] = journal["replayed_seconds"]
        out["eval_seconds"] = time.perf_counter() - t0 + journal["replayed_seconds"]
        out["eval_cpu_seconds"] = time.process_time() - c0 + journal["replayed_cpu_seconds"]
        out["generation_seconds"] = report.get("generation_seconds")
        rows = {c: read_samples(work / "bfcl", c) for c in CATEGORIES}
        for c in CATEGORIES:
            out["samples"][c] = per_sample(rows[c])
        # generated tokens: eval cost is about linear in them, so a smoke run's cost per token extrapolates
        out["truncation"] = {c: truncation(rows[c], opts.max_new_tokens) for c in CATEGORIES}
        out["output_tokens"] = sum(r.get("output_token_count") or 0 for c in CATEGORIES for r in rows[c])
        out["input_tokens"] = sum(r.get("input_token_count") or 0 for c in CATEGORIES for r in rows[c])
        ok, why = multi_turn_supported()
        if opts.multi_turn_limit and ok:
            t1 = time.perf_counter()
            mt = evaluate_bfcl(name, categories=[MULTI_TURN], output_dir=work / "bfcl_mt",
                               limit=opts.multi_turn_limit, model=model, tokenizer=tokenizer,
                               max_new_tokens=opts.max_new_tokens, batch_size=opts.eval_batch,
                               progress=opts.progress, prompt_style="fc", resume=True)
            out["samples"][MULTI_TURN] = per_sample(read_entries(work / "bfcl_mt", MULTI_TURN))
            out["multi_turn_replayed_seconds"] = mt["journal"]["replayed_seconds"]
            out["multi_turn_seconds"] = time.perf_counter() - t1 + out["multi_turn_replayed_seconds"]
        else:
            out["multi_turn_note"] = "not requested (--multi-turn-limit 0)" if not opts.multi_turn_limit else why
    n = sum(len(out["samples"][c]) for c in CATEGORIES)
    out["eval_samples"] = n
    out["eval_seconds_per_sample"] = out["eval_seconds"] / n if n else None
    out["eval_cpu_seconds_per_sample"] = out["eval_cpu_seconds"] / n if n else None
    out["accuracy"] = {c: statistics.mean(v for _, v in s) for c, s in out["samples"].items() if s}
    return out


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


# ------------------------------------------------------------------------------------------------ report
def unit_name(arm: str, seed: int | None) -> str:
    return arm if seed is None else f"{arm}-s{seed}"


def vectors(units: list[dict], categories: list[str]) -> tuple[list[str], list[list[int]]]:
    """Items (category/id) and one 0/1 vector per unit, in a fixed item order; all units must cover the same items."""
    keys = [f"{c}/{i}" for c in categories for i, _ in units[0]["samples"][c]]
    out = []
    for u in units:
        got = {f"{c}/{i}": v for c in categories for i, v in u["samples"][c]}
        if set(got) != set(keys):
            raise ValueError(f"unit {u['unit']} was scored on other items than {units[0]['unit']}")
        out.append([got[k] for k in keys])
    return keys, out


def build_report(opts, plan: dict, data_info: dict, expected: list[tuple[str, int | None]], cache: UnitCache,
                 configs: dict, versions: dict, command: str) -> dict:
    done = {}
    for arm, seed in expected:
        u = cache.load(unit_name(arm, seed), configs[unit_name(arm, seed)])
        if u and add_truncation(u, Path(opts.work), opts.max_new_tokens):
            u = cache.save(unit_name(arm, seed), configs[unit_name(arm, seed)], u)
        if u:
            done[unit_name(arm, seed)] = u
    missing = [unit_name(a, s) for a, s in expected if unit_name(a, s) not in done]
    seeds = sorted({s for _, s in expected if s is not None})
    arms = list(dict.fromkeys(a for a, _ in expected))
    cats = CATEGORIES + ([MULTI_TURN] if any(MULTI_TURN in u["samples"] for u in done.values()) else [])
    per_arm, comparisons = {}, {}
    for arm in arms:
        units = [done[unit_name(arm, s)] for s in ([None] if not ARMS[arm][0] else seeds) if unit_name(arm, s) in done]
        if not units:
            continue
        row = {"units": [u["unit"] for u in units]}
        for group, cs in (("main", CATEGORIES), *((("multi_turn", [MULTI_TURN]),) if MULTI_TURN in cats else ())):
            if all(c in units[0]["samples"] for c in cs):
                _, vec = vectors(units, cs)
                acc, lo, hi = accuracy_ci(vec, resamples=opts.resamples)
                row[group] = {"accuracy": acc, "ci": [lo, hi], "n_items": len(vec[0])}
        row["per_category"] = {c: statistics.mean(u["accuracy"][c] for u in units) for c in cats
                               if all(c in u["accuracy"] for u in units)}
        if all(u.get("truncation") for u in units):
            t = {k: sum(u["truncation"][c][k] for u in units for c in CATEGORIES)
                 for k in ("items", "capped", "capped_valid", "finished_valid")}
            row["truncation"] = t | {"capped_share": t["capped"] / t["items"],
                                     "finished_accuracy": (t["finished_valid"] / (t["items"] - t["capped"])
                                                           if t["items"] > t["capped"] else None)}
        for key in ("final_lambda", "step_seconds_median", "train_seconds", "eval_seconds_per_sample"):
            vals = [u[key] for u in units if u.get(key) is not None]
            row[key] = statistics.mean(vals) if vals else None
        row["lambda_trajectories"] = {u["unit"]: [(h["step"], h["ssb/lambda"]) for h in u.get("log", [])
                                                 if "ssb/lambda" in h] for u in units}
        logs = [u.get("log") or [] for u in units]
        if any(logs):
            row["loss_end"] = {k: statistics.mean(lg[-1][k] for lg in logs if lg) for k in ("ssb/loss_cot", "ssb/loss_call")}
        row["hdr"] = [u["hdr"] for u in units if u.get("hdr")]
        per_arm[arm] = row
    def compare(arm: str, ref: str) -> dict | None:
        pairs = [s for s in seeds if unit_name(arm, s) in done and unit_name(ref, s) in done]
        if not pairs:
            return None
        ua, ub = [done[unit_name(arm, s)] for s in pairs], [done[unit_name(ref, s)] for s in pairs]
        va, vb = vectors(ua, CATEGORIES)[1], vectors(ub, CATEGORIES)[1]
        r = paired_bootstrap(va, vb, resamples=opts.resamples)
        # each seed's own difference: pooled CIs cannot show whether the seeds agree in sign
        per_seed = [statistics.mean(a) - statistics.mean(b) for a, b in zip(va, vb)]
        out = r.as_dict() | {"seeds": pairs, "per_seed_diff": per_seed}
        if all(MULTI_TURN in u["samples"] for u in ua + ub):  # reported beside, not pooled with, single-turn
            r = paired_bootstrap(vectors(ua, [MULTI_TURN])[1], vectors(ub, [MULTI_TURN])[1], resamples=opts.resamples)
            out["multi_turn"] = r.as_dict()
        return out

    if REFERENCE in arms:
        for arm in arms:
            if arm != REFERENCE and ARMS[arm][0] and (c := compare(arm, REFERENCE)):
                comparisons[arm] = c
    secondary = {}
    for arm, ref in SECONDARY.items():
        if arm in arms and ref in arms and (c := compare(arm, ref)):
            secondary[f"{arm} vs {ref}"] = c
    # the same arm under another training seed, on the same items: how far the seed alone moves an arm, the scale
    # an arm-vs-sft difference has to clear (the item bootstrap above does not see it)
    between_seeds = {}
    for arm in arms:
        got = [s for s in seeds if ARMS[arm][0] and unit_name(arm, s) in done]
        for s in got[1:]:
            ua, ub = [done[unit_name(arm, s)]], [done[unit_name(arm, got[0])]]
            r = paired_bootstrap(vectors(ua, CATEGORIES)[1], vectors(ub, CATEGORIES)[1], resamples=opts.resamples)
            between_seeds[f"{unit_name(arm, s)} vs {unit_name(arm, got[0])}"] = r.as_dict() | {"seeds": [s, got[0]]}
    units_done = list(done.values())
    estimate = None
    measured = {k: [u[k] for u in units_done if u.get(k)] for k in
                ("step_seconds_median", "eval_seconds_per_sample", "step_cpu_seconds", "eval_cpu_seconds_per_sample")}
    if measured["step_seconds_median"] and measured["eval_seconds_per_sample"]:
        n_trained = sum(1 for a, _ in expected if ARMS[a][0])
        n_eval = opts.limit * len(CATEGORIES) if opts.limit else 600  # the run's own eval size

        # an HDR unit's training time beyond its steps: the regeneration rounds and dataset swaps between epochs
        hdr_extra = [u["train_seconds"] - sum(u["step_seconds"]) for a, s in expected
                     if ARMS[a][3] and (u := done.get(unit_name(a, s))) and u.get("train_seconds")
                     and u.get("step_seconds")]
        hdr_s = statistics.median(hdr_extra) if hdr_extra else 0.0
        n_hdr = sum(1 for a, _ in expected if ARMS[a][3])

        def hours(step_s: float, sample_s: float) -> float:
            return (n_trained * plan["total_steps"] * step_s + len(expected) * n_eval * sample_s + n_hdr * hdr_s) / 3600

        med = {k: statistics.median(v) if v else None for k, v in measured.items()}
        hdr_note = (f"HDR rounds at the measured {hdr_s / 60:.1f} min per HDR unit (wall)" if hdr_extra
                    else "HDR generation rounds not included (no HDR unit done)")
        estimate = {"step_seconds": med["step_seconds_median"], "eval_seconds_per_sample": med["eval_seconds_per_sample"],
                    "hdr_seconds_per_unit": hdr_s if hdr_extra else None,
                    "hours_all_units": hours(med["step_seconds_median"], med["eval_seconds_per_sample"]),
                    "note": f"{hdr_note}; multi-turn eval not included; medians of the units done"}
        if med["step_cpu_seconds"] and med["eval_cpu_seconds_per_sample"]:
            # an idle machine runs the --threads threads in parallel: wall ≈ CPU seconds / threads at best
            threads = opts.threads or os.cpu_count() or 1
            estimate["hours_idle_cores"] = hours(med["step_cpu_seconds"] / threads,
                                                 med["eval_cpu_seconds_per_sample"] / threads)
            estimate.update(step_cpu_seconds=med["step_cpu_seconds"],
                            eval_cpu_seconds_per_sample=med["eval_cpu_seconds_per_sample"], threads=threads)
    peaks = {k: max((u[k] for u in units_done if u.get(k)), default=None)
             for k in ("train_peak_rss_mb", "eval_peak_rss_mb")}
    peaks["units"] = sum(1 for u in units_done if u.get("eval_peak_rss_mb"))
    # where the units ran, from their own records: the machine rebuilding the report may be another one
    unit_machines = Counter(f"{m['nproc']} cores ({m['cpu_model']}), torch {m['torch']}, {m['torch_threads']} threads"
                            for u in units_done if (m := u.get("machine")))
    return {"command": command, "finished": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(),
            "unit_machines": unit_machines, "versions": versions, "opts": {k: v for k, v in vars(opts).items()},
            "plan": plan, "data": data_info,
            "units_done": sorted(done), "units_missing": missing, "arms": per_arm, "vs_sft": comparisons,
            "secondary": secondary, "between_seeds": between_seeds, "peak_rss_mb": peaks,
            "wall_seconds_units": sum(u.get("wall_seconds", 0) for u in units_done), "estimate": estimate,
            "multi_turn": multi_turn_supported()[1].rstrip(".") or "supported"}


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
    for arm, row in res["arms"].items():
        for h in row["hdr"]:
            lines.append(f"{arm}: HDR accepted {h['accepted_total']} of {h['initial_hard']} hard samples "
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


# ------------------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.ablation_v2", description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/toolrl_xlam_cot.jsonl", help="training data (checked here)")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="0,1", help="seeds of every trained arm (≥ 2 for the pooled comparison)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps per trained arm (0: --epochs over the base set)")
    p.add_argument("--epochs", type=int, default=2, help="cold-start epochs over the base set when --steps 0")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=1024, help="longer base rows are dropped (and counted)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--lambda-lr", type=float, default=0.05, help="λ learning rate of the ssb_lr arm")
    p.add_argument("--fixed-delta", type=float, default=0.08, help="ssb_fixed_lo/hi: λ = α ∓ this")
    p.add_argument("--min-hard", type=int, default=32, help="hard set size; topped up with long-CoT synthetic rows")
    p.add_argument("--hard-seed", type=int, default=7)
    p.add_argument("--hard-alpha-min", type=float, default=0.85)
    p.add_argument("--hdr-rounds", type=int, default=1)
    p.add_argument("--round-size", type=int, default=0, help="samples per round epoch (0: |hard set|)")
    p.add_argument("--num-generations", type=int, default=2)
    p.add_argument("--hdr-max-new-tokens", type=int, default=512)
    p.add_argument("--gen-batch", type=int, default=8)
    p.add_argument("--limit", type=int, default=0, help="BFCL items per category (0: all 400 + 200); smoke runs only")
    p.add_argument("--max-new-tokens", type=int, default=512, help="eval generation length (long CoT + call)")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--multi-turn-limit", type=int, default=50, help="first N multi_turn_base items (0: off)")
    p.add_argument("--resamples", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where every unit trains and decodes; part of each unit's config (cuda units are not mixed "
                        "with cpu ones): give a GPU run its own --units and --out")
    p.add_argument("--bf16", action="store_true",
                   help="train under bf16 autocast (master weights and λ stay fp32) and decode the eval in bf16: "
                        "faster trainer steps and decoding on a CPU with AMX (benchmarks/results/bf16_cpu.json); same for "
                        "every arm")
    p.add_argument("--allow-slow-bf16", action="store_true",
                   help="run --bf16 units on a CPU without AMX/avx512_bf16 (torch emulates bf16 there: a trainer "
                        "step many times slower than fp32 on an AVX2 EPYC: benchmarks/results/bf16_cpu_avx2.json); refused "
                        "otherwise")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--work", default="outputs/ablation_v2", help="unit cache (units/) and trainer/eval outputs")
    p.add_argument("--units", default="", help="unit cache folder (default <work>/units); a committed folder "
                   "carries finished units to the next machine or session")
    p.add_argument("--report-only", action="store_true", help="no training: rebuild the report from the cache")
    p.add_argument("--max-units", type=int, default=0, help="stop after running this many new units (0: all)")
    p.add_argument("--progress", action="store_true")
    opts = p.parse_args(argv)
    opts.seeds = [int(s) for s in opts.seeds.split(",") if s.strip()]
    opts.arm_list = [a.strip() for a in opts.arms.split(",") if a.strip()]
    unknown = set(opts.arm_list) - set(ARMS)
    if unknown:
        p.error(f"unknown arms {sorted(unknown)}; choose from {list(ARMS)}")
    if not opts.seeds:
        p.error("--seeds needs at least one seed")
    if any(ARMS[a][3] for a in opts.arm_list) and opts.hdr_rounds < 1:
        p.error("HDR arms need --hdr-rounds >= 1")
    if not Path(opts.data).is_file():
        p.error(f"--data {opts.data} does not exist")
    if opts.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)")
    return opts


def refuse_emulated_bf16(opts) -> None:
    """--bf16 on a CPU without bf16 matrix units: stop before the first step instead of running for hours. On an
    AVX2-only EPYC a bf16 step of `make ablation`'s units took minutes where the AMX Xeon took seconds, and
    benchmarks/bf16_cpu.py measured a bf16 step at many times an fp32 one there (benchmarks/results/bf16_cpu_avx2.json,
    shown in docs/results.md)."""
    if not opts.bf16 or opts.device != "cpu" or opts.allow_slow_bf16 or cpu_bf16_flags() != []:  # [] = known to emulate
        return
    raise SystemExit(
        f"--bf16 on a CPU without amx_bf16 or avx512_bf16 ({machine()['cpu_model']}): torch emulates bf16 matmuls "
        "here, several times slower than fp32 (benchmarks/bf16_cpu.py measures it), so a unit would take many hours. "
        "Run the bf16 units on a CPU that lists amx_bf16 or avx512_bf16 in /proc/cpuinfo (the committed units ran on "
        "an AMX Xeon), or drop --bf16 and give the fp32 run its own --units and --out (fp32 units are not comparable "
        "with bf16 ones), or pass --allow-slow-bf16 to run anyway. --report-only rebuilds the report from the cache.")


def main(argv=None):
    opts = parse_args(argv)
    import torch

    from balancetrl.models import load_tokenizer

    if opts.threads:
        torch.set_num_threads(opts.threads)
    command = command_line("benchmarks.ablation_v2", argv)
    work, out = Path(opts.work), Path(opts.out)
    cache = UnitCache(Path(opts.units) if opts.units else work / "units")
    data = build_data(opts, load_tokenizer(MODEL))
    print(json.dumps(data["info"], default=str)[:2000], flush=True)
    needs_hard = any(ARMS[a][3] for a in opts.arm_list)
    if needs_hard and not data["hard"]:
        raise SystemExit("HDR arms need hard samples and none were found")
    plan = plan_steps(argparse.Namespace(batch=opts.batch, round_size=opts.round_size, hdr_rounds=opts.hdr_rounds,
                                         steps=opts.steps, epochs=opts.epochs), len(data["base"]), len(data["hard"]))
    # eval_batch is part of it: the batch decides the left padding, and padding can flip a greedy token
    eval_cfg = {"categories": CATEGORIES, "limit": opts.limit, "max_new_tokens": opts.max_new_tokens,
                "eval_batch": opts.eval_batch,
                "prompt_style": "fc", "multi_turn_limit": opts.multi_turn_limit if multi_turn_supported()[0] else 0}
    # seed-major: a run stopped part-way has every arm on the first seed before any on the second, so its
    # partial report already compares every arm with SFT
    expected = [(a, None) for a in opts.arm_list if not ARMS[a][0]]
    expected += [(a, s) for s in opts.seeds for a in opts.arm_list if ARMS[a][0]]
    configs = {unit_name(a, s): unit_config(a, s, opts, data, plan, eval_cfg) for a, s in expected}
    print(f"plan {plan}; {len(expected)} units", flush=True)
    ran = 0
    for arm, seed in expected:
        name = unit_name(arm, seed)
        if opts.report_only:
            break
        if cache.load(name, configs[name]):
            print(f"== {name}: cached", flush=True)
            continue
        if opts.max_units and ran >= opts.max_units:
            break
        refuse_emulated_bf16(opts)  # only when a unit is about to run: a run with every unit cached still reports
        print(f"== {name}" + (" (stale cache: config changed)" if cache.stale(name, configs[name]) else ""), flush=True)
        # the work folder's saved weights and journals resume only this config in this --units folder: a new folder
        # (after a code change) trains and evaluates again
        key = config_hash({**configs[name], "units": str(cache.directory.resolve())})
        result = run_unit(arm, seed, opts, data, plan, work / name, key=key)
        cache.save(name, configs[name], result)
        release_work(work / name)
        ran += 1
        print(json.dumps({k: result.get(k) for k in ("accuracy", "global_step", "step_seconds_median",
                                                     "final_lambda", "eval_seconds_per_sample", "wall_seconds")}),
              flush=True)
    res = build_report(opts, plan, data["info"], expected, cache, configs, versions(), command)
    res["opts"].pop("arm_list", None)
    img_dir = out / "ablation_v2"
    img_dir.mkdir(parents=True, exist_ok=True)
    images = plots(res, {n: cache.load(n, configs[n]) for n in res["units_done"]}, img_dir)
    from balancetrl.data.io import atomic_write

    with atomic_write(out / "ablation_v2.json") as f:
        json.dump(res, f, indent=1, default=str)
    write_markdown(res, out / "ablation_v2.md", images)
    print(f"wrote {out / 'ablation_v2.md'}: {len(res['units_done'])} units done, {len(res['units_missing'])} missing",
          flush=True)


if __name__ == "__main__":
    main()
