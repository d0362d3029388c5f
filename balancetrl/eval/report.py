"""The results: the paper's Table 2 layout and the per-category table (accuracy, counts, errors), as JSON,
Markdown and console text.

Table 2 of the paper (as BFCL's leaderboard computes it): Single-Turn Non-Live is the unweighted mean of Simple (the
mean of the simple_python/java/javascript categories evaluated), Multiple, Parallel and Parallel Multiple; Live is
the accuracy pooled over live_simple/multiple/parallel/parallel_multiple (count-weighted); Single-Turn Overall is the
mean of Non-Live and Live. Multi-Turn Overall is the mean of Base, Miss Func, Miss Param and Long Context.
(Ir)relevance categories are not in Table 2; they appear in the per-category table. With ``--limit`` or a subset
of categories a cell covers only what was evaluated: its categories and counts are listed next to it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


def summarize(category: str, verdicts: list[dict], latencies: list[float]) -> dict:
    correct = sum(v["valid"] for v in verdicts)
    total = len(verdicts)
    errors = Counter(v["error_type"] for v in verdicts if not v["valid"])
    return {
        "category": category,
        "accuracy": correct / total if total else 0.0,
        "correct": correct,
        "total": total,
        "seconds_per_sample": sum(latencies) / len(latencies) if latencies else None,
        "errors": dict(errors.most_common()),
    }


_SIMPLE = ("simple_python", "simple_java", "simple_javascript")
_NON_LIVE = ("multiple", "parallel", "parallel_multiple")
_LIVE = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
MULTI_TURN_COLUMNS = (
    ("Base", "multi_turn_base"), ("Miss Func", "multi_turn_miss_func"), ("Miss Param", "multi_turn_miss_param"),
    ("Long Context", "multi_turn_long_context"),
)


def _cell(accuracy: float, rows: list[dict]) -> dict:
    return {
        "accuracy": accuracy,
        "correct": sum(r["correct"] for r in rows),
        "total": sum(r["total"] for r in rows),
        "categories": [r["category"] for r in rows],
    }


def _mean_cell(cells: list[dict]) -> dict | None:
    cells = [c for c in cells if c is not None]
    if not cells:
        return None
    return {
        "accuracy": sum(c["accuracy"] for c in cells) / len(cells),
        "correct": sum(c["correct"] for c in cells),
        "total": sum(c["total"] for c in cells),
        "categories": [name for c in cells for name in c["categories"]],
    }


def table2(rows: list[dict]) -> dict:
    """The paper's Table 2 cells from per-category rows; a cell is ``None`` when none of its categories ran."""
    by = {r["category"]: r for r in rows if r["total"]}

    def row_cell(name):
        return _cell(by[name]["accuracy"], [by[name]]) if name in by else None

    simple = _mean_cell([row_cell(c) for c in _SIMPLE])
    non_live = _mean_cell([simple] + [row_cell(c) for c in _NON_LIVE])
    live_rows = [by[c] for c in _LIVE if c in by]
    live = None
    if live_rows:
        live = _cell(sum(r["correct"] for r in live_rows) / sum(r["total"] for r in live_rows), live_rows)
    multi = {label: row_cell(c) for label, c in MULTI_TURN_COLUMNS}
    return {
        "single_turn": {"non_live": non_live, "live": live, "overall": _mean_cell([non_live, live])},
        "multi_turn": {**{label.lower().replace(" ", "_"): cell for label, cell in multi.items()},
                       "overall": _mean_cell(list(multi.values()))},
    }


def _table2_markdown(t2: dict) -> list[str]:
    def fmt(cell):
        return "–" if cell is None else f"{cell['accuracy']:.2%} ({cell['correct']}/{cell['total']})"

    single, multi = t2["single_turn"], t2["multi_turn"]
    labels = [label for label, _ in MULTI_TURN_COLUMNS]
    multi_cells = [multi[label.lower().replace(" ", "_")] for label in labels] + [multi["overall"]]
    return [
        "| Multi-Turn Overall | " + " | ".join(labels) + " | Single-Turn Overall | Non-Live | Live |",
        "|" + "---:|" * 8,
        "| " + " | ".join(fmt(c) for c in [multi_cells[-1], *multi_cells[:-1]])
        + f" | {fmt(single['overall'])} | {fmt(single['non_live'])} | {fmt(single['live'])} |",
        "",
        "Cells show accuracy (correct/total of the evaluated entries); – means no category of that cell ran.",
    ]


def overall(rows: list[dict]) -> dict:
    """Micro (pooled) and macro (category mean) accuracy over the evaluated categories.

    BFCL's leaderboard weights categories its own way over *full* categories; with --limit only
    these plain averages are meaningful, so we report them and name them for what they are.
    """
    correct = sum(r["correct"] for r in rows)
    total = sum(r["total"] for r in rows)
    return {
        "micro_accuracy": correct / total if total else 0.0,
        "macro_accuracy": sum(r["accuracy"] for r in rows) / len(rows) if rows else 0.0,
        "correct": correct,
        "total": total,
    }


def to_markdown(report: dict) -> str:
    lines = [
        f"# BFCL evaluation: {report['model']}",
        "",
        (
            f"backend: {report['backend']}, limit per category: {report['limit'] or 'none'}, "
            f"bfcl-eval {report['bfcl_eval_version']}"
        ),
        "",
        "## BFCL summary (the paper's Table 2 layout)",
        "",
        *_table2_markdown(report.get("table2") or table2(report["categories"])),
        "",
        "## Per category",
        "",
        "| category | accuracy | correct | total | s/sample | top error |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in report["categories"]:
        top = next(iter(r["errors"]), "")
        sps = f"{r['seconds_per_sample']:.2f}" if r["seconds_per_sample"] is not None else ""
        lines.append(f"| {r['category']} | {r['accuracy']:.2%} | {r['correct']} | {r['total']} | {sps} | {top} |")
    o = report["overall"]
    lines += [
        f"| **overall (micro)** | {o['micro_accuracy']:.2%} | {o['correct']} | {o['total']} | | |",
        f"| **overall (macro)** | {o['macro_accuracy']:.2%} | | | | |",
    ]
    if "bfcl_scorer" in report:
        agree = "agree" if report["bfcl_scorer"]["agree"] else "DISAGREE"
        lines += ["", f"bfcl's own scorer on the same result files: {agree}."]
    return "\n".join(lines) + "\n"


def save(report: dict, output_dir: str | Path) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "results.json", output_dir / "results.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(to_markdown(report))
    return json_path, md_path
