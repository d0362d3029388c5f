"""BFCL evaluation: our scores must equal bfcl-eval's own scorer on the same result files."""

import argparse
import json

import pytest

pytest.importorskip("bfcl_eval")

from balancetrl.eval import bfcl

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama with a byte-level BPE trained here on BFCL prompt text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = []
    for cat in ("simple_python", "multiple", "live_simple", "irrelevance"):
        for item in bfcl.load_category(cat, 30):
            corpus += [m["content"] for m in bfcl.build_messages(item["prompt_entry"])]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=1000, special_tokens=SPECIALS,
                                    initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML
    )
    import torch

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---- think block and unsafe output -------------------------------------------------------------


def test_split_reasoning():
    assert bfcl.split_reasoning("<think>\nplan\n</think>\n\n[f(a=1)]") == ("plan", "[f(a=1)]")
    assert bfcl.split_reasoning("[f(a=1)]") == ("", "[f(a=1)]")
    # Unclosed: no call was made, the text stays and fails to decode.
    assert bfcl.split_reasoning("<think>never ends") == ("", "<think>never ends")
    # the run's markers, not a fixed <think>
    assert bfcl.split_reasoning("<r>plan</r>\n[f(a=1)]", ("<r>", "</r>")) == ("plan", "[f(a=1)]")
    assert bfcl.split_reasoning("<r>plan</r>\n[f(a=1)]") == ("", "<r>plan</r>\n[f(a=1)]")


def test_unsafe_expressions_are_refused_not_evaluated():
    assert bfcl.is_safe_to_decode("[f(a=1+2, b=-3.5*2)]")
    assert bfcl.is_safe_to_decode("I cannot help with that.")
    assert not bfcl.is_safe_to_decode("[f(a=1+__import__('os').getpid())]")
    assert not bfcl.is_safe_to_decode("[f(a=9**9**9)]")
    assert not bfcl.is_safe_to_decode("[f(a=1 << 10**12)]")
    assert not bfcl.is_safe_to_decode("[f(a=((9**64)**64)**64)]")
    assert bfcl.is_safe_to_decode("[f(a=2**10)]")
    assert not bfcl.is_safe_to_decode("[f(a='x'*10)]")
    assert not bfcl.is_safe_to_decode("f(key=lambda: 0)")
    assert bfcl.answer_text("simple_python", "[f(a=1+open('x').read())]") == bfcl.REFUSED_OUTPUT
    # A refused answer scores as an undecodable one: wrong for AST, right for irrelevance.
    item = bfcl.load_category("simple_python", 1)[0]
    assert bfcl.score_entry("simple_python", item, bfcl.REFUSED_OUTPUT)["error_type"] == "ast_decoder:decoder_failed"
    irr = bfcl.load_category("irrelevance", 1)[0]
    assert bfcl.score_entry("irrelevance", irr, bfcl.REFUSED_OUTPUT)["valid"]


def test_think_then_call_is_scored_on_the_call():
    item = bfcl.load_category("simple_python", 1)[0]
    call = _render_calls(item["ground_truth"])
    assert bfcl.score_entry("simple_python", item, bfcl.answer_text("simple_python", f"<think>area</think>\n{call}"))["valid"]
    assert not bfcl.score_entry("simple_python", item, f"<think>area</think>\n{call}")["valid"]
    # a model trained with other CoT markers is read with them
    custom = f"<r>area</r>\n{call}"
    assert bfcl.score_entry("simple_python", item, bfcl.answer_text("simple_python", custom, cot=("<r>", "</r>")))["valid"]
    assert not bfcl.score_entry("simple_python", item, bfcl.answer_text("simple_python", custom))["valid"]


def test_the_run_reads_every_answer_with_its_cot_markers(tmp_path, monkeypatch):
    """`evaluate_bfcl(cot=...)` and `balancetrl eval --cot-start/--cot-end` reach the answers that are scored."""
    from balancetrl.eval import runner
    from balancetrl.generation import Completion
    from conftest import build_tokenizer

    call = _render_calls(bfcl.load_category("simple_python", 1)[0]["ground_truth"])

    class Engine:  # stands in for TransformersGeneration: every prompt answered with <r>…</r> and the right call
        def __init__(self, *args, **kwargs):
            self.progress = None

        def complete(self, prompt_ids, **kwargs):
            return [[Completion(f"<r>area</r>\n{call}", len(ids), 4, 0.0)] for ids in prompt_ids]

    monkeypatch.setattr(runner, "TransformersGeneration", Engine)
    for cot, correct in ((("<r>", "</r>"), 1), (("<think>", "</think>"), 0)):
        out = tmp_path / cot[0].strip("<>")
        report = runner.evaluate_bfcl("m", ["simple_python"], output_dir=out, limit=1, progress=False, model=object(),
                                      tokenizer=build_tokenizer(), cot=cot)
        assert report["categories"][0]["correct"] == correct
    sample = json.loads((tmp_path / "r" / "samples" / "simple_python.jsonl").read_text())
    assert (sample["reasoning_content"], sample["result"]) == ("area", call)

    class Called(Exception):
        pass

    def evaluate_bfcl(model_spec, categories, **kwargs):
        raise Called(kwargs)  # stop the command here: only the arguments matter

    monkeypatch.setattr(runner, "evaluate_bfcl", evaluate_bfcl)
    with pytest.raises(Called) as called:
        _run_cli(["eval", "--model", "m", "--cot-start", "<r>", "--cot-end", "</r>"])
    assert called.value.args[0]["cot"] == ("<r>", "</r>")


def test_fc_style_renders_tools_and_scores_tool_call_blocks():
    from conftest import build_tokenizer  # ChatML + TRL's qwen3_training template, as balancetrl trains with

    item = bfcl.load_category("simple_python", 1)[0]
    (truth,) = item["ground_truth"]
    name, options = next(iter(truth.items()))
    args = {k: _pick(v) for k, v in options.items() if _pick(v) is not None}
    block = "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"
    good = bfcl.answer_text("simple_python", f"<think>area of a triangle</think>\n\n{block}", "fc")
    assert good.startswith(f"[{name}(") and bfcl.score_entry("simple_python", item, good)["valid"]
    wrong = block.replace(json.dumps(args), json.dumps({**args, "base": -1}))
    assert not bfcl.score_entry("simple_python", item, bfcl.answer_text("simple_python", wrong, "fc"))["valid"]
    # no block: the text goes on as a non-call; a broken block is not decoded
    assert bfcl.answer_text("simple_python", "<think>x</think>I cannot help.", "fc") == "I cannot help."
    assert not bfcl.score_entry("simple_python", item, bfcl.answer_text("simple_python", "<tool_call>{", "fc"))["valid"]
    prompt = bfcl.build_prompt(build_tokenizer(), item["prompt_entry"], "fc")
    assert "<tools>" in prompt and json.dumps(item["prompt_entry"]["function"][0]["name"]) in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_fc_scoring_parses_output_as_training_and_hdr_do():
    """fc answers go through parse_assistant_output: what the HDR gate refuses is not scored as a call either."""
    from balancetrl.data.calls import CallParseError, parse_assistant_output, render_python_calls

    item = bfcl.load_category("simple_python", 1)[0]
    (truth,) = item["ground_truth"]
    name, options = next(iter(truth.items()))
    args = {k: _pick(v) for k, v in options.items() if _pick(v) is not None}
    one = json.dumps({"name": name, "parameters": args})
    # several calls one per line in one block and the `parameters` key, as the training data writes them
    text = f"<think>two calls</think>\n<tool_call>\n{one}\n{one}\n</tool_call>"
    _, calls, _ = parse_assistant_output(text)
    assert len(calls) == 2
    assert bfcl.answer_text("simple_python", text, "fc") == render_python_calls(calls)
    # text before the CoT: the training parser refuses it, so it is not a call for the scorer either
    bad = f"Sure. <think>x</think>\n<tool_call>\n{one}\n</tool_call>"
    with pytest.raises(CallParseError):
        parse_assistant_output(bad)
    assert not bfcl.score_entry("simple_python", item, bfcl.answer_text("simple_python", bad, "fc"))["valid"]


# ---- agreement with bfcl's own scorer on known answers -----------------------------------------

def _pick(options):
    """First acceptable value of a bfcl possible-answer option list ("" marks 'may be omitted')."""
    for opt in options:
        if opt != "":
            return _resolve(opt)
    return None


def _resolve(value):
    # Nested dict parameters list their options per key, like the top level.
    if isinstance(value, dict):
        picked = {k: _pick(v) if isinstance(v, list) else v for k, v in value.items()}
        return {k: v for k, v in picked.items() if v is not None}
    return value


def _render_calls(ground_truth):
    calls = []
    for call in ground_truth:
        (name, params), = call.items()
        args = [f"{k}={_pick(v)!r}" for k, v in params.items() if _pick(v) is not None]
        calls.append(f"{name}({', '.join(args)})")
    return "[" + ", ".join(calls) + "]"


def _known_answers(category, items):
    """Correct answers for even positions, three kinds of wrong ones for odd positions."""
    answers, intended = [], []
    for k, item in enumerate(items):
        good = k % 2 == 0
        if category in ("irrelevance", "live_irrelevance"):
            name = item["prompt_entry"]["function"][0]["name"]
            answers.append("I cannot answer that with the given functions." if good else f"[{name}()]")
        elif category == "live_relevance":
            name = item["prompt_entry"]["function"][0]["name"]
            answers.append(f"[{name}()]" if good else "No function fits.")
        elif good:
            answers.append(_render_calls(item["ground_truth"]))
        else:
            wrong = ["[not_a_function(x=1)]", "Sorry, I do not know.", "[]"][(k // 2) % 3]
            answers.append(wrong)
        intended.append(good)
    return answers, intended


KNOWN_CATEGORIES = [
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance", "live_simple",
    "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance", "live_relevance",
]


def test_known_answers_agree_with_bfcl_scorer(tmp_path):
    result_dir, ours = tmp_path / "result", {}
    for cat in KNOWN_CATEGORIES:
        items = bfcl.load_category(cat, 8)
        answers, intended = _known_answers(cat, items)
        _, verdicts = bfcl.score_answers(cat, items, answers)
        valid = [v["valid"] for v in verdicts]
        # Planted answers come out exactly as planted: bfcl's possible answers rendered as calls pass.
        assert valid == intended, (cat, [v for v in verdicts if not v["valid"]])
        ours[cat] = (sum(valid), len(valid))
        bfcl.write_result_file(result_dir, cat, [{"id": it["id"], "result": a} for it, a in zip(items, answers)])

    theirs = bfcl.run_bfcl_scorer(result_dir, tmp_path / "score", KNOWN_CATEGORIES)
    assert set(theirs) == set(KNOWN_CATEGORIES)
    for cat, (correct, total) in ours.items():
        assert (theirs[cat]["correct_count"], theirs[cat]["total_count"]) == (correct, total), cat
        assert theirs[cat]["accuracy"] == pytest.approx(correct / total)
        assert 0 < correct < total, cat  # non-trivial: agreement on a mix of right and wrong


# ---- the command end to end on a tiny random model ---------------------------------------------


def _run_cli(argv):
    from trl.cli.commands.base import CommandContext

    from balancetrl.commands.eval import EvalCommand

    cmd = EvalCommand()
    parser = argparse.ArgumentParser(prog="balancetrl")
    cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return cmd.run(args, CommandContext(argv=argv))


def test_eval_command_tiny_model_quick(tiny_model_dir, tmp_path, capsys):
    """Fast variant: two categories, one sample each; bfcl's scorer run on the written files."""
    out = tmp_path / "out"
    rc = _run_cli([
        "eval", "--model", str(tiny_model_dir), "--categories", "simple_python", "irrelevance",
        "--limit", "1", "--max-new-tokens", "4", "--output-dir", str(out), "--no-progress",
    ])
    assert rc == 0
    assert "| irrelevance |" in capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    assert {r["category"]: r["total"] for r in report["categories"]} == {"simple_python": 1, "irrelevance": 1}
    theirs = bfcl.run_bfcl_scorer(out / "bfcl_result", tmp_path / "score", ["simple_python", "irrelevance"])
    for row in report["categories"]:
        assert theirs[row["category"]]["correct_count"] == row["correct"]

    # --resume: the first run journals its one batch, the second replays it (generates nothing), same verdicts
    for replayed in (0, 1):
        assert _run_cli([
            "eval", "--model", str(tiny_model_dir), "--categories", "simple_python", "irrelevance", "--limit", "1",
            "--max-new-tokens", "4", "--output-dir", str(tmp_path / "resumed"), "--no-progress", "--resume",
        ]) == 0
        again = json.loads((tmp_path / "resumed" / "results.json").read_text())
        assert (again["journal"]["replayed_batches"], again["journal"]["generated_batches"]) == (replayed, 1 - replayed)
        assert [(r["category"], r["correct"]) for r in again["categories"]] == [
            (r["category"], r["correct"]) for r in report["categories"]]


@pytest.mark.slow
def test_eval_command_tiny_model_end_to_end(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    cats = ["simple_python", "parallel", "irrelevance", "live_multiple"]
    rc = _run_cli([
        "eval", "--model", str(tiny_model_dir), "--categories", *cats, "--limit", "3",
        "--max-new-tokens", "12", "--batch-size", "4", "--output-dir", str(out), "--no-progress",
        "--check-with-bfcl",
    ])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| simple_python |" in printed and "overall (micro)" in printed

    report = json.loads((out / "results.json").read_text())
    assert [r["category"] for r in report["categories"]] == cats
    assert all(r["total"] == 3 for r in report["categories"])
    assert report["bfcl_scorer"]["agree"] is True
    assert (out / "results.md").read_text().count("|") > 20

    # Independently re-score the written files with bfcl's entry point.
    theirs = bfcl.run_bfcl_scorer(out / "bfcl_result", tmp_path / "score2", cats)
    for row in report["categories"]:
        assert theirs[row["category"]]["correct_count"] == row["correct"]
        assert theirs[row["category"]]["accuracy"] == pytest.approx(row["accuracy"])

    samples = [json.loads(line) for line in (out / "samples" / "simple_python.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and all("raw_output" in s and "valid" in s for s in samples)
    assert all(0 < s["output_token_count"] <= 12 for s in samples)
    assert samples[0]["prompt"].startswith("<|im_start|>system\nYou are an expert in composing functions.")


def test_unknown_category_is_rejected():
    with pytest.raises(ValueError, match="agentic"):
        bfcl.resolve_categories(["web_search_base"])
    assert bfcl.resolve_categories(["multi_turn", "simple_python"]) == ["simple_python", *bfcl.MULTI_TURN_CATEGORIES]
    with pytest.raises(Exception, match="Invalid test category"):
        bfcl.resolve_categories(["no_such_category"])


def test_vllm_backend_missing_gives_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError("No module named 'vllm'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from balancetrl.generation import OfflineVLLM

    with pytest.raises(ImportError, match=r"balancetrl\[vllm\]"):
        OfflineVLLM("some/dir", None)


def test_backend_auto_is_vllm_where_it_can_run_the_evaluation(tiny_model_dir, monkeypatch):
    import importlib.util

    from balancetrl.eval.runner import choose_backend

    installed = {"vllm": True}
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if installed["vllm"] else None) if name == "vllm"
                        else real_find_spec(name, *a))
    model = str(tiny_model_dir)
    assert choose_backend("auto", model) == ("vllm", "installed, the fastest engine here")
    assert choose_backend("transformers", model) == ("transformers", "asked for")
    assert choose_backend("auto", model, loaded=True)[0] == "transformers"
    assert choose_backend("auto", model, resume=True) == ("transformers",
                                                          "resume journals transformers-backend batches")
    assert choose_backend("auto", "smollm2-135m-instruct") == (
        "transformers", "the model is a GGUF file, which the vLLM backend does not read")
    installed["vllm"] = False
    assert choose_backend("auto", model) == ("transformers", "vLLM is not installed")
    assert choose_backend("vllm", model) == ("vllm", "asked for")  # an explicit choice fails later, with its reason


def test_vllm_backend_gets_the_requested_dtype(tiny_model_dir, monkeypatch):
    """--dtype reaches vllm.LLM (it was dropped: a bf16 request silently ran in the checkpoint's dtype); on CPU the
    engine gets prefix caching, its hit counters, an explicit KV cache (not 92% of the machine's RAM) and runs in
    this process (vLLM's own startup error surfaces here)."""
    import os
    import sys
    import types

    from balancetrl.eval import runner
    from balancetrl.generation import CompletionBackend, GenerationBackend
    from balancetrl.generation.vllm_backend import CPU_KV_CACHE_GIB

    seen = {}

    class LLM:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    platforms = types.SimpleNamespace(current_platform=types.SimpleNamespace(is_cpu=lambda: True))
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, platforms=platforms))
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    from conftest import build_tokenizer

    engine = runner._offline_vllm(str(tiny_model_dir), build_tokenizer(), "bfloat16")
    assert isinstance(engine, CompletionBackend) and not isinstance(engine, GenerationBackend)  # scoring, no HDR
    assert seen == {"model": str(tiny_model_dir), "tokenizer": str(tiny_model_dir), "dtype": "bfloat16",
                    "enable_prefix_caching": True, "disable_log_stats": False}
    assert CPU_KV_CACHE_GIB == 4 and os.environ["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"

    seen.clear()
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # the user's setting wins
    runner._offline_vllm(str(tiny_model_dir), build_tokenizer(), "float32", prefix_caching=False)
    assert seen == {"model": str(tiny_model_dir), "tokenizer": str(tiny_model_dir), "dtype": "float32",
                    "enable_prefix_caching": False, "disable_log_stats": False}


def test_vllm_prefix_cache_counts_read_vllms_counters():
    import types

    from balancetrl.generation.vllm_backend import prefix_cache_counts

    def counter(name, value):
        return types.SimpleNamespace(name=name, value=value)

    llm = types.SimpleNamespace(get_metrics=lambda: [
        counter("vllm:prefix_cache_queries", 400), counter("vllm:prefix_cache_hits", 300),
        counter("vllm:external_prefix_cache_hits", 7), counter("vllm:num_requests_running", 2),
    ])
    assert prefix_cache_counts(llm) == {"queries": 400, "hits": 300, "hit_rate": 0.75}
    empty = types.SimpleNamespace(get_metrics=lambda: [])
    assert prefix_cache_counts(empty) == {"queries": 0, "hits": 0, "hit_rate": None}


def test_vllm_import_failure_of_cuda_torchvision_explains(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "vllm":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from balancetrl.generation import OfflineVLLM

    with pytest.raises(ImportError, match=r"^`import vllm` failed: operator torchvision::nms does not exist\. With "
                       r"torch's CPU wheel this is a CUDA build of torchvision, torchaudio or torchcodec"):
        OfflineVLLM("some/dir", None)


def test_eval_command_multi_turn_tiny_model(tiny_model_dir, tmp_path, capsys):
    """`balancetrl eval --categories multi_turn_base --limit 2` end to end: bfcl's loop, our model call (both entries
    in flight, their steps batched: `--batch-size` 8), the report."""
    out = tmp_path / "out"
    argv = ["eval", "--model", str(tiny_model_dir), "--categories", "multi_turn_base", "--limit", "2",
            "--max-new-tokens", "4", "--output-dir", str(out), "--no-progress"]
    with pytest.raises(ValueError, match="does not render `tools`"):  # the fixture's template drops tools
        _run_cli(argv)
    assert _run_cli(argv + ["--chat-template", "qwen3_training", "--check-with-bfcl"]) == 0
    assert "| Multi-Turn Overall | Base | Miss Func | Miss Param | Long Context |" in capsys.readouterr().out

    report = json.loads((out / "results.json").read_text())
    assert [(r["category"], r["correct"], r["total"]) for r in report["categories"]] == [("multi_turn_base", 0, 2)]
    base = {"accuracy": 0.0, "correct": 0, "total": 2, "categories": ["multi_turn_base"]}
    assert report["table2"]["multi_turn"] == {
        "base": base, "miss_func": None, "miss_param": None, "long_context": None, "overall": base,
    }
    assert report["table2"]["single_turn"] == {"non_live": None, "live": None, "overall": None}
    assert report["bfcl_scorer"]["agree"] is True
    assert report["bfcl_scorer"]["categories"]["multi_turn_base"]["total_count"] == 2
    assert "| 0.00% (0/2) | 0.00% (0/2) | – | – | – | – | – | – |" in (out / "results.md").read_text()

    # the CLI's default backend is auto, and this venv has no vLLM (the tested set's transformers is newer than
    # vllm-cpu allows): the report says which engine ran and why
    assert (report["backend"], report["backend_requested"], report["backend_reason"]) == (
        "transformers", "auto", "vLLM is not installed")
    entry = json.loads((out / "entries" / "multi_turn_base" / "multi_turn_base_1.json").read_text())
    assert entry["id"] == "multi_turn_base_1" and entry["valid"] is False
    assert entry["turns"][0]["query"][0]["role"] == "user"
    step = entry["turns"][0]["steps"][0]
    assert 0 < step["completion_tokens"] <= 4 and step["prompt_tokens"] > 500 and isinstance(step["raw_output"], str)
    results = (out / "bfcl_result").rglob("BFCL_v4_multi_turn_base_result.json")
    assert [len(p.read_text().splitlines()) for p in results] == [2]

    # prefix reuse (on by default): counted over every step's prompt, the same record as vLLM's
    counts = report["transformers"]["prefix_cache"]
    steps = [s for p in (out / "entries" / "multi_turn_base").glob("*.json")
             for t in json.loads(p.read_text())["turns"] for s in t["steps"]]
    assert counts["multi_turn"]["queries"] == counts["queries"] == sum(s["prompt_tokens"] for s in steps)
    assert counts["enabled"] is True and 0 < counts["hits"] < counts["queries"]
    assert set(counts) == {"enabled", "queries", "hits", "hit_rate", "multi_turn"}


@pytest.mark.slow
def test_eval_command_multi_turn_same_outputs_without_prefix_caching(tiny_model_dir, tmp_path, capsys):
    """`--no-prefix-caching` turns the transformers backend's reuse off: every step prefilled in full, the same step
    outputs and verdicts (2 entries in flight, their steps batched)."""
    runs = {}
    for flag in ([], ["--no-prefix-caching"]):
        out = tmp_path / ("off" if flag else "on")
        argv = ["eval", "--model", str(tiny_model_dir), "--categories", "multi_turn_base", "--limit", "2",
                "--max-new-tokens", "8", "--output-dir", str(out), "--no-progress", "--chat-template", "qwen3_training"]
        assert _run_cli(argv + flag) == 0
        entries = [json.loads(p.read_text()) for p in sorted((out / "entries" / "multi_turn_base").glob("*.json"))]
        runs[bool(flag)] = ([(e["valid"], [s["raw_output"] for t in e["turns"] for s in t["steps"]]) for e in entries],
                            json.loads((out / "results.json").read_text())["transformers"]["prefix_cache"])
    (outputs_on, on), (outputs_off, off) = runs[False], runs[True]
    assert outputs_on == outputs_off and sum(len(steps) for _, steps in outputs_on) > 2
    assert off["enabled"] is False and off["hits"] == 0 and off["queries"] == on["queries"]
    assert on["hits"] > on["queries"] / 2
    assert "transformers prefix cache (off), multi-turn: 0/" in capsys.readouterr().err
