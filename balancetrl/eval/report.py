"""The results table: per-category accuracy and counts, as JSON, Markdown and console text."""

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
