"""Segment masks: decoded CoT/call masks equal the texts they stand for, through packing and truncation."""

import json

import pytest
import torch

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from balancetrl.segments import COT_MASK, SegmentSpec, tokenize_with_segments
from conftest import TRAINING_TEMPLATE, as_dataset, build_tiny_model


def expected_texts(conv, mask_empty_cot=True):
    """CoT and call/result texts of a conversation, written out independently of the template machinery."""
    cot, call = "", ""
    for message in conv["messages"]:
        if message["role"] != "assistant":
            continue
        reasoning = message.get("reasoning_content", "")
        if reasoning:
            cot += f"<think>\n{reasoning}\n</think>"
        elif not mask_empty_cot:
            call += "<think>\n\n</think>"  # an empty think block is not CoT; trained as a call token, or not at all
        blocks = [
            f'<tool_call>\n{{"name": "{c["function"]["name"]}", "arguments": {json.dumps(c["function"]["arguments"])}}}'
            "\n</tool_call>"
            for c in message.get("tool_calls", [])
        ]
        content = message.get("content", "")
        call += "\n\n" + content + ("\n" if content and blocks else "") + "\n".join(blocks) + "<|im_end|>\n"
    return cot, call


def decode_masked(tokenizer, ids, mask):
    return tokenizer.decode([t for t, m in zip(ids, mask) if m])


@pytest.mark.parametrize("mask_empty_cot", [True, False], ids=["mask_empty", "train_empty"])
@pytest.mark.parametrize("kind", [0, 1, 2, 3], ids=["single", "parallel", "multi_turn", "no_cot"])
def test_decoded_masks_equal_reasoning_and_call_texts(tokenizer, conversations, kind, mask_empty_cot):
    conv = conversations[kind]
    out = tokenize_with_segments(conv, tokenizer, TRAINING_TEMPLATE, SegmentSpec(mask_empty_cot=mask_empty_cot))
    supervised = [label != -100 for label in out["labels"]]
    call_mask = [s and not c for s, c in zip(supervised, out[COT_MASK])]
    cot_text, call_text = expected_texts(conv, mask_empty_cot)
    assert decode_masked(tokenizer, out["input_ids"], out[COT_MASK]) == cot_text
    assert decode_masked(tokenizer, out["input_ids"], call_mask) == call_text
    assert all(s for s, c in zip(supervised, out[COT_MASK]) if c)  # CoT ⊂ supervised


def test_tokens_and_supervision_match_apply_chat_template(tokenizer, conversations):
    for conv in conversations:
        out = tokenize_with_segments(conv, tokenizer, TRAINING_TEMPLATE, SegmentSpec(mask_empty_cot=False))
        ref = tokenizer.apply_chat_template(
            conv["messages"], tools=conv["tools"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert out["input_ids"] == ref["input_ids"]
        assert [int(label != -100) for label in out["labels"]] == ref["assistant_masks"]


def _trainer(tokenizer, conversations, tmp_path, **kwargs):
    args = BalanceSFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **kwargs)
    return BalanceSFTTrainer(
        model=build_tiny_model(tokenizer), args=args, train_dataset=as_dataset(conversations),
        processing_class=tokenizer,
    )


def test_masks_survive_packing_and_padding_free(tokenizer, conversations, tmp_path):
    trainer = _trainer(tokenizer, conversations, tmp_path, packing=True, max_length=2048, padding_free=True,
                       per_device_train_batch_size=2)
    packed = trainer.train_dataset
    assert len(packed) < len(conversations)
    got = []
    for row in packed:
        assert len(row[COT_MASK]) == len(row["input_ids"])
        start = 0
        for length in row["seq_lengths"]:
            ids, mask = row["input_ids"][start:start + length], row[COT_MASK][start:start + length]
            got.append(decode_masked(tokenizer, ids, mask))
            start += length
    assert sorted(got) == sorted(expected_texts(c)[0] for c in conversations)
    # the collator flattens cot_mask like labels
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch[COT_MASK].shape == batch["labels"].shape == batch["input_ids"].shape
    assert batch[COT_MASK].shape[0] == 1 and "position_ids" in batch
    assert (batch["labels"][batch[COT_MASK].bool()] != -100).all()


def test_masks_survive_truncation_and_padding(tokenizer, conversations, tmp_path):
    trainer = _trainer(tokenizer, conversations, tmp_path, max_length=250, per_device_train_batch_size=4,
                       shuffle_dataset=False)
    full = [tokenize_with_segments(c, tokenizer, TRAINING_TEMPLATE, SegmentSpec()) for c in conversations]
    rows = list(trainer.train_dataset)
    kept = [f for f in full if any(label != -100 for label in f["labels"][:250])]
    assert len(rows) == len(kept)
    for row, ref in zip(rows, kept):
        assert len(row["input_ids"]) == min(250, len(ref["input_ids"]))
        assert row[COT_MASK] == ref[COT_MASK][:250] and row["labels"] == ref["labels"][:250]
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch[COT_MASK].shape == batch["input_ids"].shape
    pad_positions = batch["attention_mask"] == 0
    assert pad_positions.any() and (batch[COT_MASK][pad_positions] == 0).all()
    assert torch.equal(batch[COT_MASK].bool() & (batch["labels"] == -100), torch.zeros_like(pad_positions))


@pytest.mark.parametrize(
    "breakage, reason",
    [
        (lambda c: c.update(messages=[m for m in c["messages"] if m["role"] != "assistant"]), "no assistant turn"),
        (lambda c: c["messages"][1].update(reasoning_content=None, content="<think>I will call it"), "unclosed '<think>'"),
        (lambda c: c["messages"][1]["tool_calls"][0]["function"].update(arguments='{"city": Paris'), "not valid JSON"),
    ],
    ids=["no_assistant", "unclosed_think", "bad_json"],
)
def test_bad_samples_fail_at_preparation_naming_the_index(tokenizer, conversations, tmp_path, breakage, reason):
    data = conversations + [json.loads(json.dumps(conversations[0]))]
    breakage(data[4])
    with pytest.raises(ValueError, match=rf"train sample 4: .*{reason}"):
        _trainer(tokenizer, data, tmp_path)


EMPTY_COT = "<think>\n\n</think>"


def test_empty_cot_carries_no_loss_when_masked_and_counts_as_call_otherwise(tokenizer, conversations, tmp_path):
    no_cot = conversations[3]
    on = tokenize_with_segments(no_cot, tokenizer, TRAINING_TEMPLATE, SegmentSpec(mask_empty_cot=True))
    off = tokenize_with_segments(no_cot, tokenizer, TRAINING_TEMPLATE, SegmentSpec(mask_empty_cot=False))
    assert on["input_ids"] == off["input_ids"] and not any(on[COT_MASK]) and not any(off[COT_MASK])
    empty_ids = tokenizer(EMPTY_COT, add_special_tokens=False)["input_ids"]
    dropped = [t for t, a, b in zip(on["input_ids"], on["labels"], off["labels"]) if a == -100 and b != -100]
    assert dropped == empty_ids and tokenizer.decode(dropped) == EMPTY_COT

    logs = {}
    for mask in (True, False):
        trainer = _trainer(tokenizer, conversations, tmp_path / str(mask), mask_empty_cot=mask, max_steps=1,
                           logging_steps=1, per_device_train_batch_size=4, save_strategy="no")
        trainer.train()
        logs[mask] = next(e for e in trainer.state.log_history if "ssb/tokens_call" in e)
    # one empty block in the data (the no-CoT sample; the others reason in every turn)
    assert logs[True]["ssb/tokens_cot"] == logs[False]["ssb/tokens_cot"] > 0
    assert logs[False]["ssb/tokens_call"] - logs[True]["ssb/tokens_call"] == len(empty_ids) > 1


# The template writes nothing around an assistant turn: its generation span is the output text itself, as a model wrote
# it (the prompt may already have written the opener).
OUTPUT_TEMPLATE = ("{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}"
                   "{% endgeneration %}{% else %}{{ m.content }}\n{% endif %}{% endfor %}")


@pytest.mark.parametrize("output", [
    "<think>\nplan\n</think>\n\n[f(a=1)]",
    "plan</think>\n[f(a=1)]",  # the prompt wrote the opener
    "<think>\na\n</think>\n[f(a=1)]\n<think>\nb\n</think>",  # two blocks: eval once took the call for reasoning
    "Sure.\n<think>\na\n</think>\n[f(a=1)]",  # text before the block
    "<think>\n\n</think>\n\n[f(a=1)]",  # an empty block: neither CoT nor trained
    "<r>\nplan\n</r>\n[f(a=1)]",  # other markers, read with the run's
], ids=["one_block", "opened_by_prompt", "two_blocks", "text_before", "empty_block", "custom_markers"])
def test_eval_scores_as_the_answer_what_training_trains_as_the_call(tokenizer, output):
    from balancetrl.eval.bfcl import split_reasoning

    spec = SegmentSpec("<r>", "</r>") if "<r>" in output else SegmentSpec()
    conv = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": output}]}
    out = tokenize_with_segments(conv, tokenizer, OUTPUT_TEMPLATE, spec)
    supervised = [label != -100 for label in out["labels"]]
    trained_cot = decode_masked(tokenizer, out["input_ids"], out[COT_MASK])
    trained_call = decode_masked(tokenizer, out["input_ids"], [s and not c for s, c in zip(supervised, out[COT_MASK])])
    reasoning, answer = split_reasoning(output, (spec.cot_start, spec.cot_end))
    assert answer == trained_call.lstrip("\n")
    # the reasoning eval records is the trained CoT, markers left out
    blocks = trained_cot.replace(spec.cot_start, "").split(spec.cot_end)
    assert reasoning == "\n\n".join(block.strip() for block in blocks if block.strip())
