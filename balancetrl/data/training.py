"""Canonical records → a `datasets.Dataset` the trainers take (TRL's conversational tool-calling format)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

from datasets import Dataset


def to_training_row(record: dict) -> dict:
    """`messages` with call arguments as JSON strings and `tools` as one JSON string, as OpenAI/TRL store them.

    Arrow stores a list of dicts as one struct type with the union of all keys, so dict-valued arguments and tool
    schemas would come back with the other tools' keys set to None; strings keep each one exactly as written.
    """
    messages = copy.deepcopy(record["messages"])
    for message in messages:
        for call in message.get("tool_calls") or []:
            function = call.get("function", call)
            if not isinstance(function.get("arguments"), str):
                function["arguments"] = json.dumps(function.get("arguments", {}), ensure_ascii=False)
    return {"id": str(record.get("id", "")), "messages": messages, "tools": json.dumps(record.get("tools") or [])}


def to_training_dataset(records: Iterable[dict]) -> Dataset:
    return Dataset.from_list([to_training_row(r) for r in records])
