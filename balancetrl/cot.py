"""CoT markers and the one reading of them: which characters of an assistant output are CoT.

Training (`segments`: the CoT mask of the SSB loss), the data checks (`data.calls`) and BFCL scoring (`eval.bfcl`) all
read an output through `cot_blocks`, so the text a model is trained on as CoT is the text checked and scored as its
reasoning, and what is trained as the call is what is scored as the answer. It lives here, below all three and
importing nothing, because the data tools must not pay for importing transformers (see `balancetrl/__init__.py`).

The reading: a CoT block runs from `cot_start` to the first `cot_end` after it, markers included; an output may hold
any number of blocks, and the text outside them is the rest (the calls or the answer). An output may also begin
inside a block whose opener the prompt already wrote (a chat template's generation prompt ending in `<think>`): a
`cot_end` with no `cot_start` before it closes a block that began where the output begins. A `cot_start` that is
never closed raises `UnclosedCot`; what that costs (a sample that cannot be trained on, a turn that made no call) is
for the caller to say.
"""

from __future__ import annotations

from typing import NamedTuple

# the CoT markers every option defaults to (`cot_start`/`cot_end`): R1/Qwen3-style reasoning blocks
DEFAULT_COT = ("<think>", "</think>")


class UnclosedCot(ValueError):
    """A `cot_start` with no `cot_end` after it."""

    def __init__(self, cot_start: str, cot_end: str):
        super().__init__(f"{cot_start} is never closed by {cot_end}")
        self.cot_start, self.cot_end = cot_start, cot_end


class CotBlock(NamedTuple):
    """One CoT block, as character offsets into the text it was found in."""

    start: int  # its first character: the opener's, or where the output begins when the prompt wrote the opener
    end: int  # one past its closer
    body_start: int  # the reasoning is text[body_start:body_end], between the markers
    body_end: int


def cot_blocks(
    text: str, cot_start: str = DEFAULT_COT[0], cot_end: str = DEFAULT_COT[1], start: int = 0, end: int | None = None
) -> list[CotBlock]:
    """The CoT blocks of the output `text[start:end]`, in order. Raises `UnclosedCot`."""
    if not cot_start or not cot_end:
        # an empty marker is found everywhere: no block would ever end
        raise ValueError("the CoT markers must be non-empty strings: set cot_start and cot_end (--cot-start/--cot-end)")
    end = len(text) if end is None else end
    blocks, pos = [], start
    first_close, first_open = text.find(cot_end, start, end), text.find(cot_start, start, end)
    if first_close != -1 and (first_open == -1 or first_close < first_open):
        blocks.append(CotBlock(start, first_close + len(cot_end), start, first_close))
        pos = first_close + len(cot_end)
    while (opener := text.find(cot_start, pos, end)) != -1:
        body = opener + len(cot_start)
        close = text.find(cot_end, body, end)
        if close == -1:
            raise UnclosedCot(cot_start, cot_end)
        blocks.append(CotBlock(opener, close + len(cot_end), body, close))
        pos = close + len(cot_end)
    return blocks


class CotSplit(NamedTuple):
    blocks: list[CotBlock]
    reasoning: str | None  # the blocks' non-empty texts between their markers, stripped, joined by blank lines;
    # None when there is no block
    rest: str  # the text outside the blocks, in order: the calls or the answer


def split_cot(text: str, cot_start: str = DEFAULT_COT[0], cot_end: str = DEFAULT_COT[1]) -> CotSplit:
    """An assistant output split into its CoT and the rest, read as `cot_blocks` reads it. Raises `UnclosedCot`."""
    blocks = cot_blocks(text, cot_start, cot_end)
    rest, pos = [], 0
    for block in blocks:
        rest.append(text[pos:block.start])
        pos = block.end
    bodies = [text[block.body_start:block.body_end].strip() for block in blocks]
    reasoning = "\n\n".join(body for body in bodies if body) if blocks else None
    return CotSplit(blocks, reasoning, "".join(rest) + text[pos:])
