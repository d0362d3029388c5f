"""The model card of a BalanceSFT run: TRL's card (`generate_model_card`) plus a BalanceSFT section.

TRL's card carries the quick-start snippet, framework versions and citations; the section added here records what
makes the run reproducible as BalanceSFT: the SSB settings and final λ, the HDR rounds, the data counts.
"""

from __future__ import annotations

import os
from pathlib import Path

PAPER_ID = "2505.20192"
PAPER_TITLE = ("FunReason: Enhancing Large Language Models' Function Calling via Self-Refinement Multiscale Loss "
               "and Automated Data Refinement")
# The BalanceSFT paper is published as FunReason (the citation its authors give, reference/balancesft_readme.md).
CITATION = """\
@article{FunReason,
  title={FunReason: Enhancing Large Language Models' Function Calling via Self-Refinement Multiscale Loss and Automated Data Refinement},
  author={Bingguang Hao, Maolin Wang, Zengzhuang Xu, Cunyin Peng, Yicheng Chen, Xiangyu Zhao, Jinjie Gu, Chenyi Zhuang},
  journal={arXiv preprint arXiv:2505.20192},
  year={2025}
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
        f"Trained with BalanceSFT ([arXiv:{PAPER_ID}](https://arxiv.org/abs/{PAPER_ID})) using "
        "[balancetrl](https://github.com/balancetrl/balancetrl), on top of TRL's `SFTTrainer`.",
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


def build_model_card(output_dir: str | os.PathLike, summary: dict, hub_model_id: str | None = None):
    """A `huggingface_hub.ModelCard`: TRL's card for the run with the BalanceSFT section before its citations."""
    from trl.trainer.utils import generate_model_card

    base = summary.get("base_model")
    card = generate_model_card(
        base_model=base if base and "/" in base and not Path(base).exists() else None,
        model_name=Path(output_dir).name, hub_model_id=hub_model_id or Path(output_dir).name,
        dataset_name=None, tags=TAGS, wandb_url=None, trackio_url=None, comet_url=None,
        trainer_name="BalanceSFT", trainer_citation=CITATION, paper_title=PAPER_TITLE, paper_id=PAPER_ID,
    )
    section = balance_sft_section(summary)
    text = card.content
    anchor = text.find("## Citations")
    card.content = text[:anchor] + section + "\n" + text[anchor:] if anchor >= 0 else text + "\n" + section
    return card


def write_model_card(output_dir: str | os.PathLike, summary: dict, hub_model_id: str | None = None) -> Path:
    path = Path(output_dir) / "README.md"
    build_model_card(output_dir, summary, hub_model_id).save(path)
    return path
