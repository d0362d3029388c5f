"""Function-calling data: loaders to the canonical record, call parsing, quality checks, token statistics."""

from .answers import answer_check
from .calls import (
    CallParseError,
    parse_assistant_output,
    parse_calls,
    render_tool_call_block,
)
from .checks import CheckOutcome, check_record
from .formats import FORMATS, ConversationTags, detect_format, load_dataset_info, load_records
from .io import AtomicJsonlWriter, InputError, atomic_write, read_records, write_jsonl
from .reasons import REASONS, CheckResult
from .record import Record

__all__ = [
    "FORMATS", "REASONS", "AtomicJsonlWriter", "CallParseError", "CheckOutcome", "CheckResult", "ConversationTags",
    "InputError", "Record", "answer_check", "atomic_write", "check_record", "detect_format", "load_dataset_info",
    "load_records", "parse_assistant_output",
    "parse_calls", "read_records", "render_tool_call_block", "write_jsonl",
]
