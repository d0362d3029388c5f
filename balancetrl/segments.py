"""Segment masks: which supervised token is CoT and which is call/result.

Built once, at tokenization, from character spans of the rendered chat: the chat template's
`{% generation %}` spans give the assistant output (exactly as `apply_chat_template(...,
return_assistant_tokens_mask=True)` does), and inside each of them the CoT blocks (`cot_start` to
`cot_end`, markers included, read by `balancetrl.cot` as the data checks and BFCL scoring read an
output) are CoT. The masks are then plain per-token columns that TRL's truncation, packing and
collators carry along like `labels`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transformers.utils.chat_template_utils import render_jinja_template

from .cot import DEFAULT_COT, UnclosedCot, cot_blocks

COT_MASK = "cot_mask"  # dataset / batch column: 1 where the token lies in a CoT span


class SampleError(ValueError):
    """A training sample that cannot be used, with its index in the dataset."""

    def __init__(self, index: int | None, reason: str, dataset_name: str = "train"):
        self.index, self.reason = index, reason
        where = f"{dataset_name} sample {index}" if index is not None else f"{dataset_name} sample"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class SegmentSpec:
    cot_start: str = DEFAULT_COT[0]
    cot_end: str = DEFAULT_COT[1]
    mask_empty_cot: bool = True  # an empty CoT block carries no loss (BalanceSFTConfig.mask_empty_cot)


def _decoded(value):
    # Arrow merges the keys of every dict in a column (each tool's arguments gain the others' keys as None), so
    # datasets should carry `messages` and `tools` as JSON strings; lists are accepted as they are.
    return json.loads(value) if isinstance(value, str) else value


def validate_conversation(messages: Any) -> None:
    """Raise `SampleError(None, reason)` for a conversation that cannot be trained on."""
    if not isinstance(messages, list) or not messages:
        raise SampleError(None, "no 'messages' list")
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        raise SampleError(None, "no assistant turn")
    for turn, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or []:
            function = call.get("function", call) if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
                raise SampleError(None, f"message {turn}: tool call without a function name")
            arguments = function.get("arguments", {})
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments)
                except json.JSONDecodeError as e:
                    raise SampleError(None, f"message {turn}: tool call arguments are not valid JSON ({e})") from None
            if not isinstance(arguments, dict):
                raise SampleError(None, f"message {turn}: tool call arguments must be a JSON object")


def _cot_blocks(text: str, start: int, end: int, spec: SegmentSpec) -> list[tuple[int, int, bool]]:
    """`(a, b, empty)` for each CoT block inside `text[start:end]`: characters `[a, b)`, markers included."""
    try:
        blocks = cot_blocks(text, spec.cot_start, spec.cot_end, start, end)
    except UnclosedCot:
        raise SampleError(None, f"unclosed {spec.cot_start!r} in an assistant turn") from None
    return [(block.start, block.end, not text[block.body_start:block.body_end].strip()) for block in blocks]


def tokenize_with_segments(
    example: dict[str, Any],
    tokenizer,
    chat_template: str,
    spec: SegmentSpec,
    assistant_only_loss: bool = True,
) -> dict[str, list[int]]:
    """Render one conversation, tokenize it and return `input_ids`, `labels` and `cot_mask`.

    `input_ids` and the assistant mask are those of `tokenizer.apply_chat_template(messages, tools=...,
    return_assistant_tokens_mask=True)`; labels are -100 outside the supervised tokens.
    """
    try:
        messages, tools = _decoded(example.get("messages")), _decoded(example.get("tools"))
    except json.JSONDecodeError as e:
        raise SampleError(None, f"'messages' or 'tools' is a string but not valid JSON ({e})") from None
    validate_conversation(messages)
    rendered, generation_indices = render_jinja_template(
        conversations=[messages],
        tools=tools or None,
        chat_template=chat_template,
        return_assistant_tokens_mask=True,
        **{**tokenizer.special_tokens_map, **(example.get("chat_template_kwargs") or {})},
    )
    text, spans = rendered[0], generation_indices[0]
    if not spans:
        raise SampleError(
            None, "the chat template marked no assistant output: it needs {% generation %} markers "
            "(TRL's *_training.jinja templates have them)"
        )
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoding["offset_mapping"]
    blocks = [block for s, e in spans for block in _cot_blocks(text, s, e, spec)]
    cot = [(a, b) for a, b, empty in blocks if not empty]
    # a token belongs to the block its first character lies in (the rule CoT spans use too)
    skipped = [(a, b) for a, b, empty in blocks if empty] if spec.mask_empty_cot else []
    input_ids = encoding["input_ids"]
    assistant = [any(a < ge and b > gs for gs, ge in spans) for a, b in offsets]
    in_cot = [any(cs <= a < ce for cs, ce in cot) for a, _ in offsets]
    in_empty = [any(es <= a < ee for es, ee in skipped) for a, _ in offsets]
    supervised = assistant if assistant_only_loss else [True] * len(input_ids)
    supervised = [s and not e for s, e in zip(supervised, in_empty)]
    return {
        "input_ids": input_ids,
        "labels": [t if s else -100 for t, s in zip(input_ids, supervised)],
        COT_MASK: [int(c and s) for c, s in zip(in_cot, supervised)],
    }
