"""``GenerationJournal``: finished greedy batches kept on disk, so a long generation run that is killed resumes where
it stopped instead of starting over (as ``bfcl generate`` skips the ids already in its result files).

One JSON line per finished batch: its key (sha256 of the batch's prompt token ids and the generation settings) and
its completions. The first line names the weights the journal belongs to (``weights_fingerprint``): a journal written
by other weights is refused, never replayed. Each line is flushed and fsynced when its batch finishes; a line cut
short by a kill is dropped on reopening (that batch is generated again).

Greedy only: a sampled batch depends on the RNG state the batches before it left, so a replayed prefix would change
what the rest samples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from .base import Completion


def weights_fingerprint(model) -> str:
    """sha256 of every tensor ``save_pretrained`` writes (name, dtype, shape, bytes), in name order.

    Exact by construction: a cast, one optimizer step or another checkpoint changes it; a model saved and loaded
    again keeps it (tensors the model marks ``_keys_to_ignore_on_save``, such as the SSB λ module the trainer
    attaches, are left out, as ``save_pretrained`` leaves them out). Reads every weight once (SmolLM2-135M: 1.1 s
    for its 0.6 GiB fp32 state dict on 2 shared CPU cores; a GPU model is copied to host memory tensor by tensor)."""
    ignored = set(getattr(model, "_keys_to_ignore_on_save", None) or ())
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name in ignored:
            continue
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def decoding_context(model) -> dict:
    """What besides the weights and the prompts can change a greedy token: the generation config the model carries
    (a repetition penalty, say), its attention kernel, and the torch / transformers versions."""
    import transformers

    generation_config = getattr(model, "generation_config", None)
    settings = generation_config.to_dict() if generation_config is not None else {}
    return {
        "generation_config": {k: v for k, v in settings.items() if not k.startswith("_") and k != "transformers_version"},
        "attention": getattr(getattr(model, "config", None), "_attn_implementation", None),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


class GenerationJournal:
    """Append-only record of finished batches for one set of weights (``fingerprint``), at ``path``."""

    def __init__(self, path: str | os.PathLike, fingerprint: str):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.batches: dict[str, dict] = {}
        self.replayed = {"batches": 0, "seconds": 0.0, "cpu_seconds": 0.0}
        self.written = 0
        if self.path.is_file():
            self._read()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"journal": "balancetrl generation", "fingerprint": fingerprint})

    def _read(self) -> None:
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # killed mid-line: drop the torn batch, keep the finished ones
            raw = raw[: raw.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(raw))
        lines = raw.decode("utf-8").splitlines()
        if not lines:  # killed before the header was down
            self._append({"journal": "balancetrl generation", "fingerprint": self.fingerprint})
            return
        header = json.loads(lines[0])
        if header.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"{self.path} holds generations of other weights (fingerprint {str(header.get('fingerprint'))[:12]}, "
                f"this model {self.fingerprint[:12]}): its batches cannot be replayed for this model. Delete it or "
                "write to another output directory to start over."
            )
        for number, line in enumerate(lines[1:], start=2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path} line {number} is not JSON ({e}); delete the file to start over") from e
            self.batches[record["key"]] = record

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def key(prompt_ids: list[list[int]], **settings) -> str:
        """What decides a greedy batch's output besides the weights: its prompts (their order and padding) and the
        generation settings (``decoding_context`` among them)."""
        blob = json.dumps({"prompts": prompt_ids, "settings": settings}, sort_keys=True, separators=(",", ":"),
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> list[list[Completion]] | None:
        """The batch's completions if it finished before (counted as replayed), else None."""
        record = self.batches.get(key)
        if record is None:
            return None
        self.replayed["batches"] += 1
        self.replayed["seconds"] += record["seconds"]
        self.replayed["cpu_seconds"] += record["cpu_seconds"]
        return [[Completion(**c) for c in row] for row in record["rows"]]

    def put(self, key: str, rows: list[list[Completion]], seconds: float, cpu_seconds: float) -> None:
        """Record a finished batch (durable before the next batch starts)."""
        record = {"key": key, "seconds": seconds, "cpu_seconds": cpu_seconds,
                  "rows": [[dataclasses.asdict(c) for c in row] for row in rows]}
        self._append(record)
        self.batches[key] = record
        self.written += 1

    def summary(self) -> dict:
        return {"path": str(self.path), "replayed_batches": self.replayed["batches"],
                "replayed_seconds": self.replayed["seconds"], "replayed_cpu_seconds": self.replayed["cpu_seconds"],
                "generated_batches": self.written}
