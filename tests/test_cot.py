"""`balancetrl.cot`: the one reading of CoT markers that training, the data checks and BFCL scoring share."""

import pytest

from balancetrl.cot import CotBlock, UnclosedCot, cot_blocks, split_cot


def test_blocks_with_their_markers_and_the_rest_outside_them():
    text = "<think>a</think>[f(x=1)]<think> </think>!"
    assert cot_blocks(text) == [CotBlock(0, 16, 7, 8), CotBlock(24, 40, 31, 32)]
    assert split_cot(text) == (cot_blocks(text), "a", "[f(x=1)]!")
    assert split_cot("<think>a</think><think>b</think>").reasoning == "a\n\nb"
    assert split_cot("<think>\n\n</think>\n\nok").reasoning == ""  # a block, but an empty one
    assert split_cot("[f(x=1)]") == ([], None, "[f(x=1)]")
    # only inside text[start:end], offsets into the whole text (training reads one generation span at a time)
    assert cot_blocks("<think>a</think>|<r>b</r>", "<r>", "</r>", 17) == [CotBlock(17, 25, 20, 21)]


def test_output_that_starts_inside_a_block_the_prompt_opened():
    assert split_cot("plan</think>\n[f(x=1)]") == ([CotBlock(0, 12, 0, 4)], "plan", "\n[f(x=1)]")
    # a closer after the first block opens nothing: it stays in the rest
    assert split_cot("<think>a</think>b</think>").rest == "b</think>"


def test_an_unclosed_block_and_empty_markers_raise_naming_the_fix():
    for text in ("<think>never ends", "<think>a</think> then <think>b"):
        with pytest.raises(UnclosedCot, match="<think> is never closed by </think>"):
            split_cot(text)
    with pytest.raises(ValueError, match="cot_start and cot_end"):
        cot_blocks("text", "", "</think>")
