"""Datasets named the TRL way: `dataset_name` (+ config and splits) and the `datasets:` mixture of a recipe.

Loading is TRL's and `datasets`' own (`datasets.load_dataset`, `trl.get_dataset` with `DatasetMixtureConfig`); what
comes back is a `datasets.Dataset` of raw rows, which `load_records` converts to canonical records and `balancetrl
check` splits like a local file. Additions, each for a reason:

- a local data file (`.jsonl`, `.json`, `.parquet`, ...) as `dataset_name` or as a mixture entry's `path` is read
  with the matching packaged builder (`load_dataset("json", data_files=...)`): `load_dataset` itself only takes
  folders and Hub ids; a folder written by `save_to_disk` is read with `load_from_disk`;
- JSON data stays JSON (`json_lines_files`): Arrow stores a column of objects as one struct type with the union of
  every row's keys, so a tool schema or call arguments held as objects would come back with other rows' keys set to
  `None`. When every data file of a dataset (a local folder or file, a Hub repo) is JSON or JSON lines, `datasets`
  reads them as text, one line per row (`load_dataset("text")`, the same data files, splits, streaming and TRL
  mixture rules), and `io.JsonLines` decodes each line with `json`, as a `.jsonl` file's;
- `check_arrow_rows`: sources that are not JSON (Parquet, Arrow) hold the merged structs already; which `None` was
  a key of the row and which another row's cannot be told apart, so such columns are refused with the fix (store
  them as JSON strings).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .io import InputError, JsonLines, atomic_write, is_json_document, json_document

# suffix → packaged `datasets` builder
_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet", ".csv": "csv",
             ".arrow": "arrow"}
_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
# Keys whose values are objects with row-specific keys: as Arrow structs they gain the other rows' keys.
_OPEN_KEYS = ("arguments", "parameters", "properties")


def _local_file(path: str) -> tuple[str, dict] | None:
    """`(builder, {"train": path})` for a local data file, `None` otherwise."""
    p = Path(path)
    if not p.is_file():
        return None
    builder = _BUILDERS.get(p.suffix.lower())
    if builder is None:
        raise InputError(f"{path}: unknown data file type {p.suffix!r} (use one of {', '.join(sorted(_BUILDERS))})")
    return builder, {"train": str(p)}


def _is_saved_dataset(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())


def json_lines_files(path: str, name: str | None = None, data_dir: str | None = None,
                     data_files: Any = None) -> dict[str, list[str]] | None:
    """The data files of a dataset per split (resolved by `datasets` as `load_dataset` resolves them: a local file,
    folder or Hub repo, its README configs, `data_dir`, `data_files`) when every one is JSON or JSON lines, as JSON
    lines (`as_json_lines`); `None` for other data (Parquet, Arrow, CSV, compressed files, a loading script)."""
    p = Path(path)
    if _is_saved_dataset(path):
        return None
    if p.is_file() and data_files is None:
        files = {"train": [str(p)]}
    else:
        import datasets

        try:
            resolved = datasets.load_dataset_builder(path, name=name, data_dir=data_dir, data_files=data_files)
        except Exception:  # noqa: BLE001 - not resolvable here: `load_dataset` will say why when it tries
            return None
        files = {str(split): [str(f) for f in fs] for split, fs in (resolved.config.data_files or {}).items()}
    if not files or not all(f.lower().endswith(_JSON_SUFFIXES) for fs in files.values() for f in fs):
        return None
    return {split: [as_json_lines(f) for f in fs] for split, fs in files.items()}


def as_json_lines(file: str) -> str:
    """`file` when it holds JSON lines; a JSON document (an array, `{"data": [...]}`) is written once as JSON lines
    into the `datasets` cache, record by record with `json` (same keys, same values), and that file is returned."""
    if not file.lower().endswith(".json"):
        return file
    import datasets

    local = Path(file) if Path(file).is_file() else Path(datasets.DownloadManager().download(file))
    if not is_json_document(local):
        return file  # JSON lines in a `.json` file (BFCL's)
    stat = local.stat()
    key = hashlib.sha256(f"{local.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    target = Path(datasets.config.HF_DATASETS_CACHE) / "balancetrl_json_lines" / f"{key}.jsonl"
    if not target.is_file():
        with atomic_write(target) as f:
            for record in json_document(local):
                f.write(json.dumps(record) + "\n")
    return str(target)


def _json_text(loaded) -> dict:
    """Every split of a `load_dataset("text")` result as `JsonLines`."""
    return {split: JsonLines(dataset) for split, dataset in loaded.items()}


def load_named_dataset(name: str, config: str | None = None, streaming: bool = False):
    """`dataset_name` → a `DatasetDict` (or `IterableDatasetDict`): a Hub id or a local folder with
    `datasets.load_dataset`, a `save_to_disk` folder with `load_from_disk`, a local data file as split `train`.
    JSON data come back as `JsonLines` per split (record-exact, see the module docstring)."""
    import datasets

    try:
        if _is_saved_dataset(name):
            loaded = datasets.load_from_disk(name)
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
        json_files = json_lines_files(name, config)
        if json_files is not None:
            return _json_text(datasets.load_dataset("text", data_files=json_files, streaming=streaming))
        local = _local_file(name)
        if local is not None:
            return datasets.load_dataset(local[0], data_files=local[1], streaming=streaming)
        return datasets.load_dataset(name, name=config, streaming=streaming)
    except InputError:
        raise
    except Exception as e:  # datasets raises many types (FileNotFoundError, DatasetNotFoundError, ValueError, ...)
        raise InputError(f"dataset_name {name!r} cannot be loaded: {type(e).__name__}: {e}") from e


def load_mixture(mixture) -> Any:
    """TRL's `datasets:` mixture (`trl.DatasetMixtureConfig`) → `DatasetDict` through `trl.get_dataset`; local
    data files given as `path` are first turned into `path: <builder>, data_files: <file>`."""
    import dataclasses

    from trl import get_dataset

    entries = []
    for entry in mixture.datasets:
        local = _local_file(entry.path) if entry.data_files is None else None
        if local is not None:
            entry = dataclasses.replace(entry, path=local[0], data_files=local[1]["train"])
        elif _is_saved_dataset(entry.path):
            raise InputError(f"datasets: {entry.path} is a save_to_disk folder, which datasets.load_dataset cannot "
                             "read; point `path` at its data files or use dataset_name")
        entries.append(entry)
    # JSON entries are read as text, so that `_json_text` can decode them record-exact; only when all are JSON:
    # text rows and structured rows cannot be concatenated into one dataset
    as_text = [_text_entry(entry) for entry in entries]
    json_only = all(entry is not None for entry in as_text)
    try:
        loaded = get_dataset(dataclasses.replace(mixture, datasets=as_text if json_only else entries))
    except Exception as e:
        raise InputError(f"the `datasets:` mixture cannot be loaded: {type(e).__name__}: {e}") from e
    return _json_text(loaded) if json_only else loaded


def _text_entry(entry):
    """A mixture entry whose data are JSON, rewritten to read the same files as text; `None` for other data."""
    import dataclasses

    files = json_lines_files(entry.path, entry.name, entry.data_dir, entry.data_files)
    if files is None:
        return None
    if entry.columns is not None:
        raise InputError(f"datasets: {entry.path}: `columns` cannot select from JSON rows read record-exact; leave it "
                         "out (the converters read only the columns of their format)")
    return dataclasses.replace(entry, path="text", name=None, data_dir=None, data_files=files)


def pick_split(dataset_dict, split: str, key: str):
    """`dataset_dict[split]` with an error naming the splits there are."""
    if split not in dataset_dict:
        raise InputError(f"{key}={split!r}: no such split (splits: {', '.join(dataset_dict)})")
    return dataset_dict[split]


def check_arrow_rows(dataset, source: str) -> None:
    """Refuse columns whose objects Arrow has merged into one struct type (see the module docstring)."""
    features = getattr(dataset, "features", None)
    if not features:
        return
    bad = _open_struct(features, "")
    if bad:
        raise InputError(
            f"{source}: column path {bad!r} holds objects that `datasets` stores as one struct with every row's "
            "keys (other rows' parameter/argument names come back as None, changing schemas and calls). Store "
            "tool schemas and call arguments as JSON strings (one `tools` string per row, `arguments` strings), "
            "or keep the data as JSON / JSON-lines files, which are read record-exact"
        )


def _open_struct(feature: Any, path: str) -> str | None:
    inner = getattr(feature, "feature", None)  # List / Sequence / LargeList
    if inner is not None:
        return _open_struct(inner, path + "[]")
    if isinstance(feature, list) and feature:  # [feature]: the old list notation
        return _open_struct(feature[0], path + "[]")
    if isinstance(feature, dict):
        last = path.rsplit(".", 1)[-1].rstrip("[]")
        if last in _OPEN_KEYS and feature:
            return path
        for key, sub in feature.items():
            found = _open_struct(sub, f"{path}.{key}" if path else key)
            if found:
                return found
    return None

