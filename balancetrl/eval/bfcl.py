"""Thin adapter over the `bfcl-eval` package: its data, its prompts, its decoder, its checkers.

Nothing here re-implements BFCL. We prompt exactly as BFCL does for prompt-based (non-FC) models
(`system_prompt_pre_processing_chat_model` + the tokenizer's chat template, like bfcl's
`QuickTestingOSSHandler`), decode with bfcl's own `default_decode_ast_prompting` (through a
registered prompt-mode handler) and score each entry with the very per-entry functions that
`bfcl evaluate` uses. Our only additions: the CoT is split off first (as bfcl's Qwen handler does with
`<think>`, here in the run's CoT markers and read as training reads them), and outputs that bfcl's decoder
would `eval()` are refused.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import sys
import types
from pathlib import Path

from ..cot import DEFAULT_COT, UnclosedCot, split_cot

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


def split_reasoning(text: str, cot: tuple[str, str] = DEFAULT_COT) -> tuple[str, str]:
    """`(reasoning, answer)` of a raw output: its CoT blocks (in the run's `cot` markers) and the text outside them,
    read as training segments it (`balancetrl.cot`), so the answer scored is the text trained as the call.

    An unclosed block leaves the whole text as the answer, which then fails to decode: a model that never finishes
    thinking made no call.
    """
    try:
        split = split_cot(text, *cot)
    except UnclosedCot:
        return "", text
    return split.reasoning or "", split.rest.lstrip("\n")


_SAFE_ARITH_NODES = (ast.BinOp, ast.UnaryOp, ast.Constant, ast.unaryop, ast.Add, ast.Sub, ast.Mult,
                     ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)  # no shifts: 1 << 10**12 exhausts memory
# bfcl's checker calls `repr` on decoded values, which raises past 4,300 decimal digits (and our result writing
# too); plausible arguments are far below these bounds.
_MAX_DIGITS = 1000  # of an int literal, and of what one arithmetic expression may evaluate to
_MAX_EXPONENT = 64
_MAX_POW_BASE = 10**12
# bfcl's decoder recurses per nesting level, and how deep Python can go depends on the caller's stack: refuse
# what no call list needs rather than find out inside bfcl.
_MAX_DEPTH = 100
_JSON_KEY_TYPES = (str, int, float, bool, type(None))


def _int_digits(value: int) -> int:
    # an upper bound from the bit length: never converts to decimal, which itself fails past 4,300 digits
    return int(abs(value).bit_length() * 0.30103) + 1


def _number(node: ast.AST) -> int | float | None:
    """The value of a numeric literal, with an optional sign; None for anything else."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign, node = (-sign if isinstance(node.op, ast.USub) else sign), node.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return sign * node.value
    return None


def _digits_bound(node: ast.AST) -> float | None:
    """An upper bound on the decimal digits of the arithmetic expression `node` evaluates to; None when `node` is
    not number-only arithmetic or its power is not a small literal exponent on a bounded literal base."""
    if isinstance(node, ast.Constant):
        if type(node.value) is float:
            return 1.0
        return float(_int_digits(node.value)) if type(node.value) is int else None
    if isinstance(node, ast.UnaryOp):
        return _digits_bound(node.operand) if isinstance(node.op, (ast.USub, ast.UAdd)) else None
    if not isinstance(node, ast.BinOp) or not isinstance(node.op, _SAFE_ARITH_NODES):
        return None
    if isinstance(node.op, ast.Pow):
        # 9**9**9 or (9**64)**64 would hang the eval(); a 70-digit base **64 breaks bfcl's repr
        base, exp = _number(node.left), _number(node.right)
        if base is None or exp is None or abs(exp) > _MAX_EXPONENT or abs(base) > _MAX_POW_BASE:
            return None
        return 1.0 + _int_digits(int(abs(base))) * max(abs(exp), 1)
    left, right = _digits_bound(node.left), _digits_bound(node.right)
    if left is None or right is None:
        return None
    if isinstance(node.op, ast.Mult):
        return left + right
    return max(left, right) + 1  # + - / // %: never more than one digit beyond the larger operand


def _too_deep(tree: ast.AST) -> bool:
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return False


def is_safe_to_decode(text: str) -> bool:
    """False when bfcl's python decoder would `eval()` something other than small number-only arithmetic.

    bfcl's `resolve_ast_by_type` evals binary operations and lambdas found in arguments. Model output is
    untrusted, so those must be number-only arithmetic with a bounded result (a power: a literal exponent of at
    most 64 on a literal base of at most 10**12); anything else is refused (and scored as an undecodable
    answer). Only text that Python rejects with a plain `SyntaxError` is safe unparsed: it never reaches eval.
    Any other failure (`RecursionError`, `MemoryError`, ...) depends on the stack depth or memory of the moment,
    so the same text might parse inside bfcl: refused. So are int literals past 1,000 digits (hex ones parse,
    then break bfcl's `repr`), nesting past 100 levels, and values bfcl could decode but not write as JSON.
    """
    candidate = text.strip("`\n ")
    candidate = ("[" if not candidate.startswith("[") else "") + candidate
    candidate += "]" if not candidate.endswith("]") else ""
    try:
        tree = ast.parse(candidate.strip().strip("'"), mode="eval")
    except SyntaxError:
        return True
    except Exception:  # noqa: BLE001 - every other failure is refused, see the docstring
        return False
    if _too_deep(tree):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda):
            return False
        if isinstance(node, ast.Constant) and type(node.value) is int and _int_digits(node.value) > _MAX_DIGITS:
            return False
        # bfcl writes decoded values with json.dumps (`bfcl evaluate` dies on them): no bytes or complex values,
        # no dict keys but plain ones ({(0, 0): 'x'} decodes to a tuple key)
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, complex)):
            return False
        if isinstance(node, ast.Dict) and not all(
            isinstance(k, ast.Name) or (isinstance(k, ast.Constant) and isinstance(k.value, _JSON_KEY_TYPES))
            for k in node.keys
        ):
            return False
        if isinstance(node, ast.BinOp):
            bound = _digits_bound(node)
            if bound is None or bound > _MAX_DIGITS:
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


def answer_text(category: str, raw_output: str, prompt_style: str = "prompt", cot: tuple[str, str] = DEFAULT_COT) -> str:
    """What bfcl gets as the model's `result`: CoT removed, unsafe output refused.

    With `fc`, the output is parsed by `parse_assistant_output` (json/ast, never eval), the parser that reads training
    data and HDR answers, and its calls are rendered as bfcl's python call list, so the same bfcl decoder and checker
    score both styles; a turn without calls is passed on as its text (a non-call), malformed output as it is.
    Only the python decoder evals; Java/JavaScript answers go to bfcl's tree-sitter parsers.
    """
    _, answer = split_reasoning(raw_output, cot)
    if prompt_style == "fc":
        # the one parser of training data and HDR answers (generation re-exports it): scored as it is trained
        from ..data.calls import CallParseError, render_python_calls
        from ..generation import parse_assistant_output

        try:
            _, calls, content = parse_assistant_output(raw_output, *cot)
            answer = render_python_calls(calls) if calls else content
        except (CallParseError, RecursionError):  # RecursionError: repr of a deeply nested argument
            pass  # the text goes on as is: the guard below decides whether bfcl may decode it
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
        verdict["decoded"] = _json_safe(decoded if isinstance(decoded, (list, dict, str)) else str(decoded))
    return verdict


def _json_safe(value):
    # bfcl decodes `{(0, 0): 'x'}` to a dict with a tuple key, which no JSON writer takes
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError, RecursionError):
        try:
            return str(value)
        except (ValueError, RecursionError):
            return f"<a decoded {type(value).__name__} that cannot be written out>"


def score_answers(category: str, items: list[dict], answers: list[str]) -> tuple[list[str], list[dict]]:
    """`(answers, verdicts)`: bfcl's verdict on each answer.

    An answer whose scoring raises inside bfcl's checker (which `bfcl evaluate` would die on as well) is replaced
    by `REFUSED_OUTPUT` and scored as that, so one output never loses the other samples and the result files hold
    only what bfcl's own scorer can read.
    """
    handler = _handler()
    answers, verdicts = list(answers), []
    for k, (item, answer) in enumerate(zip(items, answers)):
        try:
            verdicts.append(score_entry(category, item, answer, handler))
        except Exception as e:  # noqa: BLE001 - any checker failure on model output is that sample's problem
            answers[k] = REFUSED_OUTPUT
            verdict = score_entry(category, item, REFUSED_OUTPUT, handler)
            verdicts.append({**verdict, "scorer_error": f"{type(e).__name__}: {str(e)[:200]}"})
    return answers, verdicts


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
