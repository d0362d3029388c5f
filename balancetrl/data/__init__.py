"""Function-calling data: loaders to the canonical record, call parsing, quality checks, token statistics."""

from .calls import (
    CallParseError,
    parse_assistant_output,
    parse_calls,
    render_tool_call_block,
)
from .checks import REASONS, CheckOutcome, CheckResult, answer_check, check_record
from .formats import FORMATS, ConversationTags, detect_format, load_dataset_info, load_records
from .io import AtomicJsonlWriter, InputError, atomic_write, read_records, write_jsonl
from .record import Record

__all__ = [
    "FORMATS", "REASONS", "AtomicJsonlWriter", "CallParseError", "CheckOutcome", "CheckResult", "ConversationTags",
    "InputError", "Record", "answer_check", "atomic_write", "check_record", "detect_format", "load_dataset_info",
    "load_records", "parse_assistant_output",
    "parse_calls", "read_records", "render_tool_call_block", "write_jsonl",
]
