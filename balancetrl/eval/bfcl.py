"""Thin adapter over the `bfcl-eval` package: its data, its prompts, its decoder, its checkers.

Nothing here re-implements BFCL. We prompt exactly as BFCL does for prompt-based (non-FC) models
(`system_prompt_pre_processing_chat_model` + the tokenizer's chat template, like bfcl's
`QuickTestingOSSHandler`), decode with bfcl's own `default_decode_ast_prompting` (through a
registered prompt-mode handler) and score each entry with the very per-entry functions that
`bfcl evaluate` uses. Our only additions: a `<think>` block before the call is split off first
(as bfcl's Qwen handler does), and outputs that bfcl's decoder would `eval()` are refused.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import sys
import types
from pathlib import Path

# bfcl's runner picks the decoder and the function-name convention from a *registered* model
# name. This prompt-mode entry uses OSSHandler's `default_decode_ast_prompting` and keeps dots in
# function names (underscore_to_dot=False): the plain prompt-based setting we reproduce.
BFCL_SCORING_MODEL = "Qwen/Qwen3-0.6B"
BFCL_RESULT_MODEL_DIR = BFCL_SCORING_MODEL.replace("/", "_")

# Single-turn categories: one prompt, one answer, AST-checked (or relevance-checked).
SINGLE_TURN_CATEGORIES = (
    "simple_python", "simple_java", "simple_javascript", "multiple", "parallel",
    "parallel_multiple", "irrelevance", "live_simple", "live_multiple", "live_parallel",
    "live_parallel_multiple", "live_irrelevance", "live_relevance",
)
# Multi-turn: bfcl's execution loop with our model call in each step (balancetrl.eval.multi_turn).
MULTI_TURN_CATEGORIES = (
    "multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context",
)
DEFAULT_CATEGORIES = (
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple",
    "live_irrelevance", "live_relevance",
)

# Written into bfcl result files in place of an output we refuse to decode; not valid Python,
# so bfcl's decoder fails on it exactly as it would on any other non-call text.
REFUSED_OUTPUT = "<balancetrl: output not decoded, it holds an expression bfcl would eval()>"

_INSTALL_HINT = "BFCL evaluation needs the `bfcl-eval` package: pip install 'balancetrl[bfcl]'"


def import_bfcl() -> types.SimpleNamespace:
    """Import the parts of bfcl_eval we use, with two environment fixes.

    - bfcl creates result/score folders at import under BFCL_PROJECT_ROOT, which defaults to
      site-packages; point it at a cache folder unless the user chose one.
    - bfcl imports every model handler; qwen-agent (one of them) imports `soundfile` at module
      level without declaring it. It is only used to write audio, never on our path, so a stub
      stands in when the real package is absent.
    """
    os.environ.setdefault(
        "BFCL_PROJECT_ROOT", str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "balancetrl" / "bfcl")
    )
    try:
        import soundfile  # noqa: F401
    except ImportError:
        sys.modules.setdefault("soundfile", types.ModuleType("soundfile"))
    try:
        from bfcl_eval import utils
        from bfcl_eval.constants import enums
        from bfcl_eval.constants.category_mapping import VERSION_PREFIX
        from bfcl_eval.eval_checker import eval_runner
        from bfcl_eval.model_handler import utils as handler_utils
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} ({e})") from e
    return types.SimpleNamespace(
        VERSION_PREFIX=VERSION_PREFIX, enums=enums, eval_runner=eval_runner, handler_utils=handler_utils, utils=utils
    )


def resolve_categories(names: list[str]) -> list[str]:
    """Expand bfcl category names and groups (e.g. `live`, `multi_turn`) into the categories we evaluate:
    single-turn ones, then multi-turn ones (see `balancetrl.eval.multi_turn`), in bfcl's order."""
    bfcl = import_bfcl()
    expanded = bfcl.utils.parse_test_category_argument(list(names))
    supported = SINGLE_TURN_CATEGORIES + MULTI_TURN_CATEGORIES
    unsupported = [c for c in expanded if c not in supported]
    if unsupported and all(n not in ("all", "all_scoring") for n in names):
        raise ValueError(
            f"Unsupported BFCL categories {unsupported}: balancetrl evaluates the single-turn categories "
            f"({', '.join(SINGLE_TURN_CATEGORIES)}) and the multi-turn ones ({', '.join(MULTI_TURN_CATEGORIES)}); "
            "agentic (web search, memory) and format-sensitivity categories are not run."
        )
    return [c for c in supported if c in expanded]


def load_category(category: str, limit: int | None = None) -> list[dict]:
    """First `limit` entries of a category: `{"id", "prompt_entry", "score_entry", "ground_truth"}`.

    bfcl generates from entries *with* its language hints but scores against entries *without*
    them (for Java/JS the hints even rewrite parameter types), so both are kept.
    """
    bfcl = import_bfcl()
    prompts = bfcl.utils.load_dataset_entry(category)
    plain = bfcl.utils.load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)
    truth = None
    if not bfcl.utils.is_relevance_or_irrelevance(category):
        truth = bfcl.utils.load_ground_truth_entry(category)
        assert len(truth) == len(prompts), f"{category}: {len(truth)} answers for {len(prompts)} prompts"
    n = len(prompts) if limit is None else min(limit, len(prompts))
    return [
        {
            "id": prompts[i]["id"],
            "prompt_entry": prompts[i],
            "score_entry": plain[i],
            "ground_truth": None if truth is None else truth[i]["ground_truth"],
        }
        for i in range(n)
    ]


def build_messages(prompt_entry: dict) -> list[dict]:
    """Chat messages for one entry: bfcl's system prompt (tools as JSON docs) + the user turn."""
    bfcl = import_bfcl()
    first_turn = copy.deepcopy(prompt_entry["question"][0])
    return bfcl.handler_utils.system_prompt_pre_processing_chat_model(
        first_turn, prompt_entry["function"], prompt_entry["id"]
    )


def split_think(text: str) -> tuple[str, str]:
    """`(reasoning, answer)`: everything up to the last `</think>` is reasoning.

    Same rule as bfcl's Qwen prompt handler. An unclosed `<think>` stays in the answer, which then
    fails to decode: a model that never finishes thinking made no call.
    """
    if "</think>" not in text:
        return "", text
    head, _, tail = text.rpartition("</think>")
    return head.split("<think>")[-1].strip("\n"), tail.lstrip("\n")


_SAFE_ARITH_NODES = (ast.BinOp, ast.UnaryOp, ast.Constant, ast.unaryop, ast.Add, ast.Sub, ast.Mult,
                     ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)  # no shifts: 1 << 10**12 exhausts memory


def _safe_arith(node: ast.AST) -> bool:
    # One bounded power at most: (9**64)**64**... nested powers would hang the eval() as well.
    if sum(isinstance(n, ast.Pow) for n in ast.walk(node)) > 1:
        return False
    for sub in ast.walk(node):
        if not isinstance(sub, _SAFE_ARITH_NODES):
            return False
        if isinstance(sub, ast.Constant) and type(sub.value) not in (int, float):
            return False
        # 9**9**9 would hang the eval(); plausible arguments never need big powers.
        if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Pow):
            exp = sub.right
            if not (isinstance(exp, ast.Constant) and abs(exp.value) <= 64):
                return False
    return True


def is_safe_to_decode(text: str) -> bool:
    """False when bfcl's python decoder would `eval()` something other than plain arithmetic.

    bfcl's `resolve_ast_by_type` evals binary operations and lambdas found in arguments. Model
    output is untrusted, so those must be number-only arithmetic; anything else is refused (and
    scored as an undecodable answer). Text that is not Python at all is safe: it never reaches eval.
    """
    candidate = text.strip("`\n ")
    candidate = ("[" if not candidate.startswith("[") else "") + candidate
    candidate += "]" if not candidate.endswith("]") else ""
    try:
        tree = ast.parse(candidate.strip().strip("'"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda):
            return False
        if isinstance(node, ast.BinOp) and not _safe_arith(node):
            return False
    return True


PROMPT_STYLES = ("prompt", "fc")


def build_prompt(tokenizer, prompt_entry: dict, prompt_style: str = "prompt") -> str:
    """The rendered prompt of one entry.

    `prompt`: bfcl's prompt-based path (its system prompt lists the functions and asks for `[func(a=1)]`).
    `fc`: like bfcl's Qwen FC handler, the functions go to the chat template as `tools` (for our ChatML templates:
    the `<tools>` system block the model was trained with) and the model answers in `<tool_call>` blocks.
    """
    from ..generation import render_prompt_texts

    if prompt_style == "fc":
        return render_prompt_texts(tokenizer, [copy.deepcopy(prompt_entry["question"][0])], [prompt_entry["function"]])[0]
    return render_prompt_texts(tokenizer, [build_messages(prompt_entry)])[0]


def answer_text(category: str, raw_output: str, prompt_style: str = "prompt") -> str:
    """What bfcl gets as the model's `result`: think block removed, unsafe output refused.

    With `fc`, `<tool_call>` blocks are parsed (json, never eval) and rendered as bfcl's python call list, so the
    same bfcl decoder and checker score both styles; a turn without blocks is passed on as text (a non-call).
    Only the python decoder evals; Java/JavaScript answers go to bfcl's tree-sitter parsers.
    """
    _, answer = split_think(raw_output)
    if prompt_style == "fc":
        from ..data.calls import CallParseError, parse_tool_call_blocks, render_python_calls

        try:
            calls, rest = parse_tool_call_blocks(answer)
        except CallParseError:
            calls, rest = [], answer
        answer = render_python_calls(calls) if calls else rest
    if category in ("simple_java", "simple_javascript") or is_safe_to_decode(answer):
        return answer
    return REFUSED_OUTPUT


def _handler():
    bfcl = import_bfcl()
    return bfcl.eval_runner.get_handler(BFCL_SCORING_MODEL)


def score_entry(category: str, item: dict, result: str, handler=None) -> dict:
    """bfcl's verdict on one answer: `{"valid": bool, "error_type", "error", "decoded"}`."""
    bfcl = import_bfcl()
    runner, utils = bfcl.eval_runner, bfcl.utils
    handler = handler or _handler()
    if utils.is_relevance_or_irrelevance(category):
        out = runner._evaluate_single_relevance_entry(
            handler, item["id"], result, item["score_entry"], BFCL_RESULT_MODEL_DIR, category
        )
    else:
        enums = bfcl.enums
        if utils.is_java(category):
            lang, fmt = enums.Language.JAVA, enums.ReturnFormat.JAVA
        elif utils.is_js(category):
            lang, fmt = enums.Language.JAVASCRIPT, enums.ReturnFormat.JAVASCRIPT
        else:
            lang, fmt = enums.Language.PYTHON, enums.ReturnFormat.PYTHON
        out = runner._evaluate_single_ast_entry(
            handler, item["id"], result, item["ground_truth"], item["score_entry"],
            BFCL_RESULT_MODEL_DIR, category, language=lang, return_format=fmt,
        )
    verdict = {"valid": bool(out["valid"]), "error_type": out.get("error_type"), "error": out.get("error")}
    decoded = out.get("model_result_decoded", out.get("decoded_result"))
    if decoded is not None:
        verdict["decoded"] = decoded if isinstance(decoded, (list, dict, str)) else str(decoded)
    return verdict


def score_category(category: str, items: list[dict], results: list[str]) -> list[dict]:
    handler = _handler()
    return [score_entry(category, item, res, handler) for item, res in zip(items, results)]


def write_result_file(result_dir: str | Path, category: str, records: list[dict]) -> Path:
    """Write `records` (`{"id", "result", ...}`) as bfcl's own result file for `category`.

    Layout and name are bfcl's: `<result_dir>/<model>/<group>/BFCL_v4_<category>_result.json`,
    one JSON object per line, sorted by bfcl's id order. The file is replaced, not appended to.
    """
    bfcl = import_bfcl()
    group = bfcl.utils.get_directory_structure_by_category(category)
    path = Path(result_dir) / BFCL_RESULT_MODEL_DIR / group / f"{bfcl.VERSION_PREFIX}_{category}_result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=bfcl.utils.sort_key)
    with open(path, "w") as f:
        f.writelines(json.dumps(bfcl.utils.make_json_serializable(rec)) + "\n" for rec in ordered)
    return path


def run_bfcl_scorer(result_dir: str | Path, score_dir: str | Path, categories: list[str]) -> dict:
    """Run bfcl's own evaluation entry (`bfcl evaluate --partial-eval`) on our result files.

    Returns `{category: {"accuracy", "correct_count", "total_count"}}` read from bfcl's score files:
    an independent check of our in-process numbers.
    """
    bfcl = import_bfcl()
    result_dir, score_dir = Path(result_dir).resolve(), Path(score_dir).resolve()
    bfcl.eval_runner.main([BFCL_SCORING_MODEL], list(categories), result_dir, score_dir, partial_eval=True)
    scores = {}
    for category in categories:
        group = bfcl.utils.get_directory_structure_by_category(category)
        path = score_dir / BFCL_RESULT_MODEL_DIR / group / f"{bfcl.VERSION_PREFIX}_{category}_score.json"
        if path.exists():
            with open(path) as f:
                header = json.loads(f.readline())
            scores[category] = {k: header[k] for k in ("accuracy", "correct_count", "total_count")}
    return scores
