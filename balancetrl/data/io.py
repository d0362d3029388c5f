"""Streaming record readers and atomic writers.

Readers never raise on a bad record: they yield `RawRow`s whose `error` names what is wrong (with the line), so
a checker can put the record in `rejected.jsonl` and go on. Writers go to a temporary file in the target
folder and are renamed into place only when complete, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .record import SharedTool


@dataclass
class RawRow:
    """One input row. `line` is 1-based (JSONL line, JSON array index + 1, or row number)."""

    line: int
    data: Any = None
    error: str | None = None  # reason code: invalid_utf8 | invalid_json | not_an_object
    message: str | None = None
    raw: str | None = None  # the undecodable/unparsable text, kept for rejected.jsonl


class InputError(ValueError):
    """The input as a whole is unusable (missing, empty, unknown type); the message names the file/line."""


def why_unusable(e: BaseException) -> str:
    """Why `json`/`ast` refused hostile text beyond a syntax error: an integer past Python's 4,300 digits (the
    ValueError's own message) or nesting deeper than the interpreter's stack allows."""
    return "nested too deeply" if isinstance(e, (RecursionError, MemoryError)) else str(e)[:160]


def _read_jsonl(path: Path) -> Iterator[RawRow]:
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                # utf-8-sig on the first line: editors on Windows start files with a byte-order mark
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield RawRow(line_no, error="invalid_utf8", message=f"line {line_no}: not UTF-8 ({e.reason} at byte "
                             f"{e.start})", raw=raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                continue
            yield decode_json_line(line_no, text)


def decode_json_line(line_no: int, text: str) -> RawRow:
    """One JSON line → its record, or a `RawRow` naming what is wrong (`invalid_json`, `not_an_object`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return RawRow(line_no, error="invalid_json", message=f"line {line_no}: invalid JSON ({e.msg}, "
                      f"column {e.colno})", raw=text.rstrip("\r\n"))
    except (ValueError, RecursionError) as e:
        return RawRow(line_no, error="invalid_json", message=f"line {line_no}: unusable JSON "
                      f"({why_unusable(e)})", raw=text.rstrip("\r\n"))
    if not isinstance(data, dict):
        return RawRow(line_no, error="not_an_object", message=f"line {line_no}: a record must be a JSON "
                      f"object, got {type(data).__name__}", raw=text.rstrip("\r\n"))
    return RawRow(line_no, data)


class JsonLines:
    """A `datasets` dataset of JSON lines kept as text (`load_dataset("text", ...)`: one `text` row per line), read
    record-exact by `read_records`: each line is decoded with `json` like a `.jsonl` file's, so objects keep exactly
    their keys (no Arrow struct holding every row's keys) and a bad line is one rejected row. Rows are numbered by
    their position in the dataset (a file's line number when it is one file)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def rows(self) -> Iterator[RawRow]:
        for line_no, row in enumerate(self.dataset, start=1):
            text = row["text"]
            if text.strip():
                yield decode_json_line(line_no, text.lstrip("\ufeff"))  # a byte-order mark starts a file's first line


def json_document(path: Path) -> list:
    """The records of a file holding one JSON document: an array, a `{"data": [...]}`-style wrapper, or one object.
    A JSON array cannot be streamed with the stdlib; JSON lines is the format for large inputs."""
    try:
        value = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise InputError(f"{path}: unusable JSON ({why_unusable(e)})") from None
    if isinstance(value, dict):
        # {"data": [...]} and similar single-key wrappers; a lone object is one record
        lists = [v for v in value.values() if isinstance(v, list)]
        value = lists[0] if len(value) == 1 and lists else [value]
    if not isinstance(value, list):
        raise InputError(f"{path}: expected a JSON array of records")
    return value


def _read_parquet(path: Path, batch_size: int = 1024) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: not a Parquet file ({e}); use .jsonl or .json for JSON data") from None
    line = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            line += 1
            yield RawRow(line, row)


def iter_rows(rows: Iterable[Any]) -> Iterator[RawRow]:
    """Wrap in-memory rows (a list, a `datasets.Dataset` or `IterableDataset`) as `RawRow`s."""
    if hasattr(rows, "keys") and not hasattr(rows, "features"):  # a DatasetDict: which split is ambiguous
        raise InputError(f"pick a split first, e.g. dataset['train'] (splits: {list(rows.keys())})")
    for i, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            yield RawRow(i, dict(row))
        else:
            yield RawRow(i, error="not_an_object", message=f"row {i}: not an object", raw=repr(row)[:1000])


def read_records(source: str | os.PathLike | Iterable[Any]) -> Iterator[RawRow]:
    """Stream rows from a `.jsonl`/`.json`/`.parquet` file, a `save_to_disk` folder, `JsonLines`, or an iterable of
    dicts (e.g. a `datasets.Dataset`).

    Raises `InputError` when the file is missing, empty, or of an unknown type; bad rows are yielded with
    `error` set instead of raising.
    """
    if isinstance(source, JsonLines):
        yield from source.rows()
        return
    if not isinstance(source, (str, os.PathLike)):
        yield from iter_rows(source)
        return
    path = Path(source)
    if path.is_dir():  # a `datasets` folder written by `save_to_disk`
        try:
            import datasets

            dataset = datasets.load_from_disk(str(path))
        except (ImportError, FileNotFoundError, ValueError) as e:
            raise InputError(f"{path}: a folder, but not a saved `datasets` dataset ({e})") from None
        yield from iter_rows(dataset)
        return
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    elif suffix == ".json":
        rows = iter_rows(json_document(path)) if is_json_document(path) else _read_jsonl(path)
    elif suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        raise InputError(f"{path}: unknown file type {suffix!r} (use .jsonl, .json or .parquet)")
    seen = False
    for row in rows:
        seen = True
        yield row
    if not seen:
        raise InputError(f"{path}: no records (only blank lines)")


_MAX_DOCUMENT_BYTES = 512 * 2**20


def is_json_document(path: Path) -> bool:
    """True for one JSON document (an array, `{"data": [...]}`, a pretty-printed object); False for JSON lines.

    BFCL ships JSON-lines in files named .json, so the content decides: an array is a document; so is a file whose
    first line is not a complete JSON value but whose whole text is, or which holds one line only.
    """
    with open(path, "rb") as f:
        first = f.readline()
        while first and not first.strip():
            first = f.readline()
        first = first.removeprefix(b"\xef\xbb\xbf").strip()
        if first[:1] == b"[":
            return True
        try:
            json.loads(first)
        except (ValueError, RecursionError):
            # "{" of a pretty-printed object, or a bad first record of JSON lines (reported as such): the whole
            # file decides, unless it is too large to be anything but JSON lines
            if path.stat().st_size > _MAX_DOCUMENT_BYTES:
                return False
            try:
                json.loads(path.read_bytes().decode("utf-8-sig"))
                return True
            except (ValueError, RecursionError):
                return False
        rest = f.readline()
        while rest and not rest.strip():
            rest = f.readline()
        # one line holding one object: a wrapper such as {"data": [...]} or a single record; both are documents
        return not rest


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file next to `path`; on clean exit fsync and rename it onto `path`, on error delete it.

    Example:
        >>> with atomic_write("out/report.json") as f:
        ...     json.dump(report, f)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def encode_record(record: dict) -> str:
    """One JSON line. Shared tools (`SharedTool`) are written from their cached encoding: tool schemas are most of
    a record's structure and repeat across records. ASCII escapes: ~30% faster to encode than ensure_ascii=False,
    and the same data to any JSON reader."""
    tools = record.get("tools")
    if type(tools) is not list or not tools or type(tools[0]) is not SharedTool:
        return json.dumps(record)
    parts = []
    for tool in tools:
        if type(tool) is not SharedTool:
            return json.dumps(record)
        if tool.json is None:
            tool.json = json.dumps(tool)
        parts.append(tool.json)
    rest = json.dumps({k: v for k, v in record.items() if k != "tools"})
    return rest[:-1] + (", " if len(rest) > 2 else "") + '"tools": [' + ", ".join(parts) + "]}"


class AtomicJsonlWriter:
    """Write JSON lines to a temporary file; `commit()` renames it to `path`, `abort()` deletes it.

    Several writers can be committed together after all succeeded (as `balancetrl check` does), so either all
    outputs of a run appear or none is replaced.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._file = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def write(self, record: dict) -> None:
        self._file.write(encode_record(record) + "\n")
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def commit(self) -> None:
        self.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort() if exc_type else self.commit()
        return False


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Atomically write `records` as JSON lines; returns how many were written."""
    with AtomicJsonlWriter(path) as w:
        for record in records:
            w.write(record)
    return w.count
