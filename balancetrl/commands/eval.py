"""`balancetrl eval`: BFCL single- and multi-turn evaluation of a model (see balancetrl.eval.runner)."""

from __future__ import annotations

from argparse import Namespace

from trl.cli.commands.base import Command, CommandContext

from ..models import CHAT_TEMPLATES


class EvalCommand(Command):
    """Evaluate a model on BFCL categories with bfcl-eval's data and checkers."""

    def __init__(self):
        super().__init__(name="eval", help_text="Evaluate a model on BFCL (needs balancetrl[bfcl])")

    def register(self, subparsers) -> None:
        p = subparsers.add_parser(self.name, help=self.help_text, description=self.help_text)
        p.add_argument("--model", required=True, help="HF model dir, .gguf file, or alias smollm2-135m-instruct")
        p.add_argument(
            "--categories", nargs="+", default=None,
            help="BFCL categories or groups (e.g. simple_python live multi_turn). Multi-turn categories run FC style "
            "(tools through the chat template). Default: the python single-turn AST and relevance categories, live "
            "included.",
        )
        p.add_argument("--limit", type=int, default=None, help="first N entries per category (quick looks)")
        p.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
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
            help="vLLM backend: turn vLLM's prefix caching off (on by default: a multi-turn step re-reads its "
            "conversation so far; results.json records vLLM's hit counters)",
        )
        p.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def run(self, args: Namespace, context: CommandContext) -> int:
        from ..eval.report import to_markdown
        from ..eval.runner import evaluate_bfcl

        if args.limit is not None and args.limit < 1:
            raise SystemExit("--limit must be a positive integer")
        result = evaluate_bfcl(
            args.model, args.categories, output_dir=args.output_dir, limit=args.limit,
            backend=args.backend, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
            chat_template=args.chat_template, dtype=args.dtype, check_with_bfcl=args.check_with_bfcl,
            progress=not args.no_progress, prompt_style=args.prompt_style, resume=args.resume,
            prefix_caching=not args.no_prefix_caching,
        )
        print(to_markdown(result))
        print(f"Saved {args.output_dir}/results.json and results.md")
        if "bfcl_scorer" in result and not result["bfcl_scorer"]["agree"]:
            return 1
        return 0
