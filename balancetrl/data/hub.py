"""Datasets named the TRL way: `dataset_name` (+ config and splits) and the `datasets:` mixture of a recipe.

Loading is TRL's and `datasets`' own (`datasets.load_dataset`, `trl.get_dataset` with `DatasetMixtureConfig`); what
comes back is a `datasets.Dataset` of raw rows, which `load_records` converts to canonical records and `balancetrl
check` splits like a local file. Additions, each for a reason:

- a local data file (`.jsonl`, `.json`, `.parquet`, ...) as `dataset_name` or as a mixture entry's `path` is read
  with the matching packaged builder (`load_dataset("json", data_files=...)`): `load_dataset` itself only takes
  folders and Hub ids; a folder written by `save_to_disk` is read with `load_from_disk`;
- `check_arrow_rows`: Arrow stores a column of objects as one struct type with the union of every row's keys, so a
  tool schema or call arguments held as objects would come back with other rows' keys set to `None`, which
  changes what the checks see. Such columns are refused with the fix (store them as JSON strings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import InputError

# suffix → packaged `datasets` builder
_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet", ".csv": "csv",
             ".arrow": "arrow"}
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


def load_named_dataset(name: str, config: str | None = None, streaming: bool = False):
    """`dataset_name` → a `DatasetDict` (or `IterableDatasetDict`): a Hub id or a local folder with
    `datasets.load_dataset`, a `save_to_disk` folder with `load_from_disk`, a local data file as split `train`."""
    import datasets

    try:
        if _is_saved_dataset(name):
            loaded = datasets.load_from_disk(name)
            return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
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
    try:
        return get_dataset(dataclasses.replace(mixture, datasets=entries))
    except Exception as e:
        raise InputError(f"the `datasets:` mixture cannot be loaded: {type(e).__name__}: {e}") from e


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
            "or pass the file as dataset_path"
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

