"""The verdict cache: one JSON file per (judge, prompt) key, so a resumed or repeated round pays nothing twice."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from pathlib import Path

from .judge_prompt import PROMPT_VERSION
from .verdicts import JudgeSpec

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- cache
class VerdictCache:
    """One JSON file per (judge, prompt) key; written atomically so a killed round never
    leaves a half-written entry. Holds the verdict and what it cost, never a request."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(spec: JudgeSpec, messages: list[dict]) -> str:
        blob = json.dumps({"v": PROMPT_VERSION, "judge": spec.identity, "messages": messages}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self._path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None  # absent, or corrupt: ask again

    def put(self, key: str, entry: dict) -> None:
        p = self._path(key)
        p.parent.mkdir(exist_ok=True)
        tmp = p.with_suffix(f".{os.getpid()}.{random.getrandbits(32):08x}.tmp")
        try:
            tmp.write_text(json.dumps(entry, sort_keys=True))
            os.replace(tmp, p)
        except OSError as e:  # a full disk costs a re-ask next time, never this verdict
            logger.warning("verdict cache write failed (%s): %s", p, e)
            tmp.unlink(missing_ok=True)
