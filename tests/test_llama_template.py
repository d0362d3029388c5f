"""balancetrl's Llama 3.1/3.2 training template, with a tokenizer built here in the Llama 3 format (no hub)."""

import json
from pathlib import Path

import pytest
import yaml

from balancetrl import BalanceSFTConfig, BalanceSFTTrainer
from balancetrl.models import apply_tool_chat_template, balancetrl_chat_template
from balancetrl.segments import COT_MASK, SegmentSpec, tokenize_with_segments
from conftest import as_dataset, build_tiny_model, make_conversations

TEMPLATE = balancetrl_chat_template("llama3_training")
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<|eom_id|>", "<|python_tag|>", "<|finetune_right_pad_id|>"]
RECIPES = Path(__file__).parent.parent / "recipes" / "llama-3.2-3b-instruct"


def _render(conv, **kwargs):
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([conv["messages"]], tools=conv.get("tools"), chat_template=TEMPLATE,
                                        bos_token="<|begin_of_text|>", **kwargs)
    return rendered[0]


@pytest.fixture(scope="module")
def llama_tokenizer():
    """Byte-level BPE trained on Llama-3-rendered chats, with Llama 3's special tokens, given our template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [_render(c) for c in make_conversations()] * 3
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=LLAMA3_SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   additional_special_tokens=LLAMA3_SPECIAL[2:])
    return apply_tool_chat_template(fast, "llama3_training")


def _call_json(call):
    return json.dumps({"name": call["function"]["name"], "parameters": call["function"]["arguments"]})


def expected_texts(conv):
    """CoT and call/result texts, written out from Meta's format independently of the template."""
    cot, call = "", ""
    for message in conv["messages"]:
        if message["role"] != "assistant":
            continue
        reasoning = message.get("reasoning_content")
        if reasoning:
            cot += f"<think>\n{reasoning}\n</think>"
            call += "\n\n"
        calls = "; ".join(_call_json(c) for c in message.get("tool_calls", []))
        content = message.get("content", "")
        call += content + ("\n" if content and calls else "") + calls + "<|eot_id|>"
    return cot, call


def test_renders_meta_format_with_tools_reasoning_and_results():
    conv = make_conversations()[2]  # multi-turn with a tool result
    tool = json.dumps(conv["tools"][0], indent=4)
    assert _render(conv) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its proper arguments "
        "that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
        f"Do not use variables.\n\n{tool}\n\nIs it raining in Rome?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<think>\nI need the Rome weather.\n</think>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Rome"}}<|eot_id|>'
        '<|start_header_id|>ipython<|end_header_id|>\n\n{"rain": true, "temp": 14}<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n<think>\nThe tool says rain is true and 14 degrees.\n"
        "</think>\n\nYes, it is raining in Rome (14 degrees).<|eot_id|>"
    )
    prompt = _render({"messages": conv["messages"][:1]}, add_generation_prompt=True)
    assert prompt.endswith("Is it raining in Rome?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "Environment: ipython" not in prompt  # no tools, no ipython environment


def test_parallel_calls_are_joined_and_no_cot_has_no_think_block():
    parallel, no_cot = make_conversations()[1], make_conversations()[3]
    assert _render(parallel).endswith(
        '</think>\n\n{"name": "get_weather", "parameters": {"city": "Oslo", "unit": "c"}}; '
        '{"name": "get_time", "parameters": {"tz": "Asia/Tokyo"}}<|eot_id|>'
    )
    text = _render(no_cot)
    assert "<think>" not in text
    assert text.endswith('<|end_header_id|>\n\n{"name": "get_time", "parameters": {"tz": "America/Lima"}}<|eot_id|>')


def test_tokenizer_has_llama3_special_tokens(llama_tokenizer):
    for token in LLAMA3_SPECIAL:
        ids = llama_tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and llama_tokenizer.convert_ids_to_tokens(ids) == [token]
    assert llama_tokenizer.eos_token == "<|eot_id|>" and llama_tokenizer.pad_token == "<|finetune_right_pad_id|>"


@pytest.mark.parametrize("kind", [0, 1, 2, 3], ids=["single", "parallel", "multi_turn", "no_cot"])
def test_decoded_masks_equal_reasoning_and_call_texts(llama_tokenizer, kind):
    conv = make_conversations()[kind]
    out = tokenize_with_segments(conv, llama_tokenizer, TEMPLATE, SegmentSpec())
    supervised = [label != -100 for label in out["labels"]]
    call_mask = [s and not c for s, c in zip(supervised, out[COT_MASK])]
    cot_text, call_text = expected_texts(conv)
    decode = lambda mask: llama_tokenizer.decode([t for t, m in zip(out["input_ids"], mask) if m])  # noqa: E731
    assert decode(out[COT_MASK]) == cot_text
    assert decode(call_mask) == call_text
    assert out["input_ids"][0] == llama_tokenizer.bos_token_id
    ref = llama_tokenizer.apply_chat_template(conv["messages"], tools=conv["tools"], tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
    assert out["input_ids"] == ref["input_ids"]
    assert [int(s) for s in supervised] == ref["assistant_masks"]


def test_trains_with_the_llama_template(llama_tokenizer, tmp_path):
    args = BalanceSFTConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no", max_steps=1,
                            logging_steps=1, per_device_train_batch_size=4)
    trainer = BalanceSFTTrainer(model=build_tiny_model(llama_tokenizer), args=args, processing_class=llama_tokenizer,
                                train_dataset=as_dataset(make_conversations()))
    trainer.train()
    log = next(e for e in trainer.state.log_history if "ssb/tokens_cot" in e)
    want = [tokenize_with_segments(c, llama_tokenizer, TEMPLATE, SegmentSpec()) for c in make_conversations()]
    n_cot = sum(sum(w[COT_MASK]) for w in want)
    n_call = sum(sum(y != -100 for y in w["labels"]) for w in want) - n_cot
    assert (log["ssb/tokens_cot"], log["ssb/tokens_call"]) == (n_cot, n_call)


@pytest.mark.parametrize("name", ["balance_sft", "balance_sft_lora", "sft", "sft_lora"])
def test_llama_recipes_name_the_shipped_template(name):
    from balancetrl.scripts.balance_sft import make_parser

    path = RECIPES / f"{name}.yaml"
    assert yaml.safe_load(path.read_text())["chat_template"] == "llama3_training"
    script_args, training_args, *_ = make_parser().parse_recipe(["--config", str(path), "--use_cpu", "true"])
    assert script_args.chat_template == "llama3_training" and training_args.mask_empty_cot is True


@pytest.mark.parametrize("kind", [0, 1, 3], ids=["single", "parallel", "no_cot"])
def test_rendered_calls_parse_back(kind):
    # HDR and eval parse generated answers with balancetrl.data.calls: the template's call format must round-trip
    from balancetrl.data.calls import parse_assistant_output

    conv = make_conversations()[kind]
    answer = _render(conv).rsplit("<|end_header_id|>\n\n", 1)[1].removesuffix("<|eot_id|>")
    cot, calls, text = parse_assistant_output(answer)
    message = conv["messages"][-1]
    assert cot == message.get("reasoning_content")
    assert calls == [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                     for c in message["tool_calls"]]
    assert text == ""


def test_the_model_cards_quick_start_parses_what_the_template_writes(tmp_path):
    # A llama3_training model answers `{"name", "parameters"}` objects joined by "; ", not ChatML <tool_call> blocks:
    # the card's own parse_calls, run as a user would, must read every kind of answer back exactly.
    import re
    import subprocess
    import sys

    from balancetrl.artifacts.model_card import build_model_card

    summary = {"base_model": "m", "dataset": "d.jsonl", "chat_template": "llama3_training", "hdr": None,
               "ssb_settings": {"ssb": True}, "final_lambda": 0.7, "global_steps": 1,
               "data": {"base": 1, "hard": 0, "rejected": 0, "train": 1}}
    card = str(build_model_card(tmp_path / "run", summary))
    assert "<tool_call>" not in card and '`{"name": ..., "parameters": {...}}` joined by `; `' in card
    (code,) = re.findall(r"## Quick start\n.*?```python\n(.*?)\nmodel_id = ", card, re.DOTALL)
    answers, expected = [], []
    for kind in (0, 1, 3):  # single call after reasoning, parallel calls, calls without reasoning
        conv = make_conversations()[kind]
        answers.append(_render(conv).rsplit("<|end_header_id|>\n\n", 1)[1])  # as decoded: <|eot_id|> included
        expected.append([{"name": c["function"]["name"], "parameters": c["function"]["arguments"]}
                         for c in conv["messages"][-1]["tool_calls"]])
    script = code + "\nimport sys\nprint(json.dumps([parse_calls(a) for a in json.load(sys.stdin)]))\n"
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(answers), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == expected
    assert len(expected[1]) > 1
