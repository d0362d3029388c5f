"""Loaders from the formats users have to the canonical record (docs/data.md; typed in `record.py`).

Formats (`--format` names):

- `xlam`: xlam-function-calling-60k rows, `{"id", "query", "tools", "answers"}` (tools/answers as JSON strings or
  lists). The assistant turn is the ground-truth calls, so there is no CoT.
- `xlam_cot`: the same plus a distilled response (`response`, `output`, `completion` or `generation`) holding
  `<think>…</think>` and a call block. The response is kept as raw assistant `content`; the Base Quality Check
  parses it, so a malformed response is rejected with a reason instead of failing the load.
- `messages`: conversational `{"messages", "tools"}` rows (multi-turn, OpenAI/TRL `tool_calls`, role `tool`,
  reasoning fields or reasoning content parts), including canonical records themselves.
- `ms_swift`: ms-swift's agent rows, `messages` with `tool_call` / `tool_response` turns (`from_ms_swift`).
- `llamafactory_v1`: LLaMA-Factory's v1 rows, `messages` of typed content parts with a `value`
  (`from_llamafactory_v1`). `auto` reads the three `messages`-family formats row by row (`from_any_messages`).
- `sharegpt` / `openai`: LLaMA-Factory's two conversation formattings (`from_sharegpt`, `from_openai`), role and
  column names configurable like its `dataset_info.json` (`ConversationTags`, `load_dataset_info`).
- `hermes`: Hermes-style ChatML text with `<tool_call>` / `<tool_response>` blocks (`from_hermes`).
- `bfcl`: BFCL question files (`{"id", "question", "function"}`) with their possible-answer file. The reference
  keeps BFCL's accepted alternatives (see `bfcl_reference`), the assistant turn is built from the first ones.

One module per format family (`xlam`, `messages`, `conversations`, `bfcl`), the helpers they share in `common`;
this module is the registry (`FORMATS`, `CONVERTERS`, `detect_format`) and the loader (`load_records`).

Rows that cannot be converted come back as `RawRow`s with `error` set (a reason code) and `data` kept, so the
check command writes them to `rejected.jsonl`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ...cot import DEFAULT_COT
from ..io import InputError, RawRow, read_records
from .bfcl import bfcl_answers, bfcl_pick, bfcl_reference, default_bfcl_answers, from_bfcl
from .common import FormatError, parse_tools, to_canonical_tool, tool_list
from .conversations import ConversationTags, from_hermes, from_openai, from_sharegpt, load_dataset_info, resolve_format
from .messages import (
    MESSAGES_FAMILY,
    agent_messages,
    from_any_messages,
    from_llamafactory_v1,
    from_messages,
    from_ms_swift,
    json_call_turn,
    messages_kind,
    name_results,
)
from .xlam import RESPONSE_KEYS, from_xlam, from_xlam_cot

FORMATS = ("xlam", "xlam_cot", "messages", "ms_swift", "llamafactory_v1", "sharegpt", "openai", "hermes", "bfcl")


def detect_format(row: dict) -> str | None:
    """Guess the format of one row; `None` when it matches none or is ambiguous."""
    if "messages" in row:
        return messages_kind(row["messages"])
    if "conversations" in row:
        return "sharegpt"
    if isinstance(row.get("text"), str) and "<|im_start|>" in row["text"]:
        return "hermes"
    if "question" in row and "function" in row:
        return "bfcl"
    if "query" in row and "answers" in row:
        return "xlam_cot" if any(k in row for k in RESPONSE_KEYS) else "xlam"
    return None


# formats whose `function_call` turns may hold a CoT block before the calls, split at load time with the run's markers
CALL_TURN_FORMATS = ("sharegpt", "openai")
CONVERTERS = {"xlam": from_xlam, "xlam_cot": from_xlam_cot, "messages": from_messages, "ms_swift": from_ms_swift,
              "llamafactory_v1": from_llamafactory_v1, "sharegpt": from_sharegpt, "openai": from_openai,
              "hermes": from_hermes}


def _converter(format: str, tags: ConversationTags | None, cot: tuple[str, str]):
    converter = CONVERTERS.get(format)
    if converter is None:
        return None
    kwargs = {"tags": tags} if tags is not None else {}
    if format in CALL_TURN_FORMATS:
        kwargs["cot"] = tuple(cot)
    return functools.partial(converter, **kwargs) if kwargs else converter


def load_records(
    source: str | os.PathLike | Iterable[Any],
    format: str = "auto",
    answers: str | os.PathLike | None = None,
    tags: ConversationTags | None = None,
    cot: tuple[str, str] = DEFAULT_COT,
    mapping=None,
) -> Iterator[RawRow]:
    """Stream canonical records from a file or an iterable of rows.

    Yields `RawRow`s: `data` is the canonical record, or, when `error` is set, the original row (reader errors:
    `invalid_json`, `invalid_utf8`, `not_an_object`; conversion errors: `missing_field`, `tools_not_list`, ...).
    `format="auto"` detects the format from the first readable row and raises `InputError` when it cannot.
    `tags`: column and role names of `sharegpt`/`openai` data (see `load_dataset_info`); needs that format named.
    `cot`: the (start, end) CoT markers of the run, used where a format holds CoT inside a call turn (`function_call`
    turns of `sharegpt`/`openai` data); elsewhere raw assistant text is split by the checks with the same markers.
    `mapping`: a `balancetrl.data.mapping.RowMapping` describing rows of no built-in format (then `format` stays
    `auto`: the mapping is the format).
    """
    if format != "auto" and format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if tags is not None and format not in ("sharegpt", "openai"):
        raise InputError(f"column/role tags apply to the sharegpt and openai formats, not to {format!r}")
    if mapping is not None and (format != "auto" or tags is not None):
        raise InputError("a mapping describes the rows itself: use it without a format or dataset_info")
    answer_rows = None
    converter = mapping.convert if mapping is not None else _converter(format, tags, cot)
    for row in read_records(source):
        if row.error:
            yield row
            continue
        if converter is None and format == "auto":
            format = detect_format(row.data) or "auto"
            if format == "auto":
                raise InputError(
                    f"line {row.line}: cannot detect the format from keys {sorted(row.data)[:8]}; "
                    f"pass --format ({', '.join(FORMATS)})"
                )
            converter = _converter(format, tags, cot)
            if format in MESSAGES_FAMILY:
                converter = from_any_messages
        if format == "bfcl" and answer_rows is None:
            answer_rows = bfcl_answers(source, answers)
        try:
            if format == "bfcl":
                record = from_bfcl(row.data, answer_rows.get(row.data.get("id")))
            else:
                record = converter(row.data, row.line)
        except FormatError as e:
            yield RawRow(row.line, row.data, e.reason, f"line {row.line}: {e.message}")
            continue
        except (TypeError, AttributeError, KeyError, ValueError) as e:  # wrong shapes deep inside a row
            yield RawRow(row.line, row.data, "malformed_record", f"line {row.line}: {type(e).__name__}: {e}")
            continue
        except RecursionError:
            yield RawRow(row.line, row.data, "malformed_record", f"line {row.line}: values nested too deeply")
            continue
        yield RawRow(row.line, record)


__all__ = [
    "CALL_TURN_FORMATS", "CONVERTERS", "FORMATS", "MESSAGES_FAMILY", "RESPONSE_KEYS", "ConversationTags", "FormatError",
    "agent_messages", "bfcl_pick", "bfcl_reference", "default_bfcl_answers", "detect_format", "from_any_messages",
    "from_bfcl", "from_hermes", "from_llamafactory_v1", "from_messages", "from_ms_swift", "from_openai",
    "from_sharegpt", "from_xlam", "from_xlam_cot", "json_call_turn", "load_dataset_info", "load_records",
    "messages_kind", "name_results", "parse_tools", "resolve_format", "to_canonical_tool", "tool_list",
]
