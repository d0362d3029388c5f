"""`balancetrl eval`: BFCL single- and multi-turn evaluation of a model, held-out L_c / L_f and Answer Check on a
dataset, and forgetting against a base model (see balancetrl.eval.runner)."""

from __future__ import annotations

from argparse import Namespace

from trl.cli.commands.base import Command, CommandContext

from ..data.formats import FORMATS
from ..models import CHAT_TEMPLATES
from .options import add_cot_arguments


class EvalCommand(Command):
    """Evaluate a model on BFCL categories with bfcl-eval's data and checkers."""

    def __init__(self):
        super().__init__(name="eval", help_text="Evaluate a model on BFCL (needs balancetrl[bfcl]), on a held-out dataset (L_c, L_f, "
                         "Answer Check) or against its base model (forgetting)")

    def register(self, subparsers) -> None:
        p = subparsers.add_parser(self.name, help=self.help_text, description=self.help_text)
        p.add_argument("--model", required=True, help="HF model dir, .gguf file, or alias smollm2-135m-instruct")
        p.add_argument(
            "--categories", nargs="+", default=None,
            help="BFCL categories or groups (e.g. simple_python live multi_turn). Multi-turn categories run FC style "
            "(tools through the chat template). Default: the python single-turn AST and relevance categories, live "
            "included.",
        )
        p.add_argument("--limit", type=int, default=None, help="first N entries per category, or first N evaluable records of --dataset (quick looks)")
        p.add_argument(
            "--backend", choices=("auto", "transformers", "vllm"), default="auto",
            help="auto: vLLM where it is installed and can run this evaluation (a Hugging Face model folder, no "
            "--resume), else transformers; the choice and its reason are printed and recorded in results.json",
        )
        p.add_argument("--output-dir", default="bfcl_eval_output")
        p.add_argument("--batch-size", type=int, default=8,
                       help="generation batch of the transformers backend (vLLM schedules its own batches); in "
                            "multi-turn, also the entries run at once, their steps batched (both backends)")
        p.add_argument("--max-new-tokens", type=int, default=512)
        p.add_argument(
            "--chat-template", default="keep", choices=CHAT_TEMPLATES,
            help="keep the model's own template (as bfcl does), TRL's Qwen3 ChatML ones or balancetrl's Llama 3.x one "
            "(multi-turn needs a template that renders tools)",
        )
        p.add_argument(
            "--prompt-style", default="prompt", choices=("prompt", "fc"),
            help="prompt: bfcl's prompt-based path ([func(a=1)] answers); fc: functions as chat-template tools and "
            "<tool_call> answers, as bfcl's Qwen FC handler (use it for models trained with balancetrl's ChatML "
            "templates, with --chat-template qwen3_training)",
        )
        p.add_argument("--dtype", default="float32", help="dtype to load the model in (both backends)")
        p.add_argument(
            "--check-with-bfcl", action="store_true",
            help="also re-score the written result files with bfcl's own `evaluate` entry and compare",
        )
        p.add_argument(
            "--resume", action="store_true",
            help="record each finished generation batch in <output-dir>/generation_journal.jsonl and replay the "
            "batches already there: a killed run started again with --resume continues where it stopped (transformers "
            "backend; refused when the journal was written by other weights)",
        )
        p.add_argument(
            "--no-prefix-caching", action="store_true",
            help="turn prefix caching off, both backends (on by default: a multi-turn step re-reads its conversation "
            "so far). vLLM: its prefix caching; transformers: each conversation's KV cache kept from one step to the "
            "next, so only new tokens are prefilled (the same greedy texts wherever compared). results.json records "
            "the hit counters (<backend>.prefix_cache)",
        )
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        add_cot_arguments(p)  # the markers the model was trained with: BFCL answers and held-out records read with them

        held = p.add_argument_group(
            "held-out dataset (--dataset)",
            "Per record: the model's teacher-forced NLL of the reference CoT tokens (L_c) and of the other supervised "
            "tokens, calls and text answers (L_f), with the segment masks training uses, and the Answer Check of its "
            "greedy answer to the last assistant turn. Writes <output-dir>/heldout/items.jsonl and summary.json. "
            "Runs instead of BFCL unless --categories is given.",
        )
        held.add_argument("--dataset", default=None, metavar="FILE",
                          help="records in any format `balancetrl check` reads (e.g. a held-out split); rendered with "
                               "the chat template after --chat-template, which needs {%% generation %%} markers (a "
                               "*_training template)")
        held.add_argument("--dataset-format", default="auto", choices=("auto", *FORMATS),
                          help="format of --dataset (default: detected from the first record)")
        held.add_argument("--answers", default=None,
                          help="BFCL possible-answer file for a BFCL --dataset (default: possible_answer/<same name>)")
        held.add_argument("--allow-missing-cot", action="store_true",
                          help="evaluate records without CoT, and answers without CoT, as `balancetrl check` does")
        held.add_argument("--keep-empty-cot", action="store_true",
                          help="score the tokens of an empty CoT block (training's mask_empty_cot=False)")

        forget = p.add_argument_group(
            "forgetting (--forgetting)",
            "The tuned model (--model) against its base (--base-model) on general prompts: BFCL's irrelevance "
            "questions asked without tools. Per prompt, the base model's greedy answer, the NLL of it under both "
            "models and the token-level KL(base || tuned). Writes <output-dir>/forgetting/prompts.jsonl and "
            "summary.json. Runs instead of BFCL unless --categories is given.",
        )
        forget.add_argument("--forgetting", action="store_true", help="measure forgetting (needs --base-model)")
        forget.add_argument("--base-model", default=None, metavar="PATH",
                            help="the base model --model was tuned from (HF dir, .gguf file or alias; same tokenizer)")
        forget.add_argument("--forgetting-limit", type=int, default=None, metavar="N",
                            help="first N prompts of the set (default: all of them)")
        forget.add_argument("--forgetting-max-new-tokens", type=int, default=128,
                            help="length cap of the base model's answers")

    def run(self, args: Namespace, context: CommandContext) -> int:
        if args.limit is not None and args.limit < 1:
            raise SystemExit("--limit must be a positive integer")
        if args.forgetting_limit is not None and args.forgetting_limit < 1:
            raise SystemExit("--forgetting-limit must be a positive integer")
        if args.forgetting != (args.base_model is not None):
            raise SystemExit("--forgetting and --base-model go together")
        if args.dataset is not None:
            self._heldout(args)
        if args.forgetting:
            self._forgetting(args)
        if args.categories is None and (args.dataset is not None or args.forgetting):
            return 0
        return self._bfcl(args)

    def _heldout(self, args: Namespace) -> None:
        from ..eval.runner import evaluate_heldout

        s = evaluate_heldout(
            args.model, args.dataset, output_dir=args.output_dir, format=args.dataset_format, answers=args.answers,
            require_cot=not args.allow_missing_cot, cot=(args.cot_start, args.cot_end),
            mask_empty_cot=not args.keep_empty_cot, limit=args.limit, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, chat_template=args.chat_template, dtype=args.dtype,
            progress=not args.no_progress,
        )
        a = s["answer_check"]
        print(f"held-out: {s['items']} items ({s['skipped']['count']} skipped), L_c {_num(s['L_c']['token_weighted'])}"
              f" / L_f {_num(s['L_f']['token_weighted'])} per token, Answer Check {a['passed']}/{a['total']}"
              + (" (" + ", ".join(f"{k} {v}" for k, v in a["reasons"].items()) + ")" if a["reasons"] else ""))
        print(f"Saved {args.output_dir}/heldout/items.jsonl and summary.json")

    def _forgetting(self, args: Namespace) -> None:
        from ..eval.runner import evaluate_forgetting

        s = evaluate_forgetting(
            args.model, args.base_model, output_dir=args.output_dir, limit=args.forgetting_limit,
            batch_size=args.batch_size, max_new_tokens=args.forgetting_max_new_tokens,
            chat_template=args.chat_template, dtype=args.dtype,
        )
        print(f"forgetting: {s['prompts']} prompts of {s['prompt_set']}, KL(base || tuned) "
              f"{_num(s['kl']['token_weighted'])} per token, tuned NLL {_num(s['tuned_nll']['token_weighted'])} vs "
              f"base {_num(s['base_nll']['token_weighted'])} per token of the base's answers")
        print(f"Saved {args.output_dir}/forgetting/prompts.jsonl and summary.json")

    def _bfcl(self, args: Namespace) -> int:
        from ..eval.report import to_markdown
        from ..eval.runner import evaluate_bfcl

        result = evaluate_bfcl(
            args.model, args.categories, output_dir=args.output_dir, limit=args.limit,
            backend=args.backend, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            chat_template=args.chat_template, dtype=args.dtype, check_with_bfcl=args.check_with_bfcl,
            progress=not args.no_progress, prompt_style=args.prompt_style, resume=args.resume,
            prefix_caching=not args.no_prefix_caching, cot=(args.cot_start, args.cot_end),
        )
        print(to_markdown(result))
        print(f"Saved {args.output_dir}/results.json and results.md")
        if "bfcl_scorer" in result and not result["bfcl_scorer"]["agree"]:
            return 1
        return 0


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
