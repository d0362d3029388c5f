"""On-disk cache of experiment units (one JSON per (arm, seed)), keyed by a hash of the unit's full config.

A long experiment dies, is stopped, or spans sessions: a finished unit is written atomically (temporary file +
rename, `balancetrl.data.io.atomic_write`), so a unit file is either complete or absent. On resume a unit is reused
only when its stored `config_hash` equals the hash of the config the runner would use now; a changed setting
(steps, data, λ, eval limit ...) reruns it, and the stale file is kept beside it as `<name>.stale.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from balancetrl.data.io import atomic_write


def config_hash(config: dict) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal configs, equal hashes, whatever the key order."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


class UnitCache:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def load(self, name: str, config: dict) -> dict | None:
        """The cached result of unit `name` if it was produced by exactly `config`, else None."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # unreadable (not written by `save`): rerun it
        if stored.get("config_hash") != config_hash(config):
            return None
        return stored

    def stale(self, name: str, config: dict) -> bool:
        """A file exists for `name` but was produced by another config."""
        return self.path(name).is_file() and self.load(name, config) is None

    def save(self, name: str, config: dict, result: dict) -> dict:
        """Write `result` with the config and its hash; an older file for another config moves to `.stale.json`."""
        path = self.path(name)
        if self.stale(name, config):
            os.replace(path, path.with_suffix(".stale.json"))
        record = {**result, "unit": name, "config": config, "config_hash": config_hash(config)}
        with atomic_write(path) as f:
            json.dump(record, f, indent=1, default=str)
        return record

    def all(self) -> dict[str, dict]:
        """Every unit file (not the stale ones), by name, whatever config made it."""
        out = {}
        for path in sorted(self.directory.glob("*.json")):
            if path.name.endswith(".stale.json"):
                continue
            try:
                out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def pending(self, names: list[str], configs: dict[str, dict], max_units: int = 0):
        """Yield, in order, each unit of `names` not cached for its config (printing the cached ones), at most
        `max_units` of them (0: all). The runner runs and saves each before asking for the next."""
        ran = 0
        for name in names:
            if self.load(name, configs[name]):
                print(f"== {name}: cached", flush=True)
                continue
            if max_units and ran >= max_units:
                return
            ran += 1
            yield name
