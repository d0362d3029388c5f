"""HDR state on disk, under `output_dir/hdr/`: one folder per finished round, written atomically.

    hdr/round_001/accepted.jsonl   new training records of the round
    hdr/round_001/still_hard.jsonl the hard set after the round
    hdr/round_001/candidates.jsonl every generated answer: gate outcome, every judge verdict or abstention
    hdr/round_001/summary.json     counts, judge accounting
    hdr/summary.json, hdr/rounds.png  the whole run, rewritten after every round

A round folder is built as `round_001.tmp` and renamed into place, so a job killed mid-round leaves either the
whole round or none of it; a resumed job continues after the last complete round.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data.io import atomic_write, write_jsonl


def _read_round_file(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class HDRState:
    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir) / "hdr"

    def round_dir(self, k: int) -> Path:
        return self.root / f"round_{k:03d}"

    def finished_rounds(self) -> list[int]:
        if not self.root.is_dir():
            return []
        return sorted(int(p.name[6:]) for p in self.root.glob("round_[0-9][0-9][0-9]") if p.is_dir())

    def write_round(self, result, summary: dict[str, Any]) -> None:
        final = self.round_dir(result.round)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_jsonl(tmp / "accepted.jsonl", result.accepted)
        write_jsonl(tmp / "still_hard.jsonl", result.still_hard)
        write_jsonl(tmp / "candidates.jsonl", [asdict(c) for c in result.candidates])
        (tmp / "summary.json").write_text(json.dumps({**summary, "judges": result.judge_totals}, indent=2))
        shutil.rmtree(final, ignore_errors=True)  # only a crash between rename and here leaves a stale copy
        os.replace(tmp, final)

    def load_round(self, k: int) -> tuple[list[dict], list[dict], dict]:
        d = self.round_dir(k)
        return (_read_round_file(d / "accepted.jsonl"), _read_round_file(d / "still_hard.jsonl"),
                json.loads((d / "summary.json").read_text()))

    def load_finished(self) -> list[tuple[int, list[dict], list[dict], dict]]:
        """Every finished round as ``(k, accepted, still_hard, summary)``, in order."""
        return [(k, *self.load_round(k)) for k in self.finished_rounds()]

    def summaries(self) -> list[dict]:
        return [self.load_round(k)[2] for k in self.finished_rounds()]

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.root / "summary.json") as f:
            f.write(json.dumps(summary, indent=2) + "\n")
