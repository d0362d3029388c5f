"""Hostile inputs (issue 11): no single record or model output stops a run or runs code.

Each test feeds the exact input of the issue and asserts the outcome it names: the marker file is never created,
counts add up, training finishes its steps, eval writes every sample, a bad setting fails before the model loads.
"""

import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from balancetrl.cli import main as cli_main
from balancetrl.data.io import InputError, read_records
from balancetrl.data.split import run_check

ROOT = Path(__file__).resolve().parent.parent

# The reproducer: passes the old guard (ast.parse hit RecursionError there) and runs when bfcl, deeper in
# its own stack or under a higher recursion limit, parses and eval()s it.
MARKER_OUTPUT = "[f(a=__import__('os').system('touch MARKER')+1), g(b=" + "-" * 3000 + "1)]"
SEVENTY_DIGITS = "1234567890" * 7


def _tool(name, **props):
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {k: {"type": t} for k, t in props.items()}, "required": list(props)}}}


def _record(content=None, tools=None, **assistant):
    msg = {"role": "assistant", **assistant}
    if content is not None:
        msg["content"] = content
    return {"tools": tools or [_tool("f", a="string")],
            "messages": [{"role": "user", "content": "do f"}, msg]}


# ---- 1. the eval guard ---------------------------------------------------------------------------------------


def _at_depth(n, fn):
    return fn() if n == 0 else _at_depth(n - 1, fn)


@pytest.mark.parametrize("text", [
    MARKER_OUTPUT,
    MARKER_OUTPUT.replace("-" * 3000, "-" * 5000),
    "[f(a=2**'x')]",                      # used to raise TypeError inside the guard
    f"[f(a={SEVENTY_DIGITS}**64)]",       # 4,480 digits: bfcl's checker repr() raises
    "[f(a=0x" + "f" * 5000 + ")]",        # parses to an int no JSON writer can print
    "[f(a=(" * 60 + "1" + "))]" * 60,     # nested deeper than any call list needs
    "[f(a=9**9**9)]", "[f(a=(9**64)**64)]", "[f(a=2**1e9)]", "[f(a=2**True)]",
    "[f(a=" + "9" * 999 + " * " + "9" * 999 + ")]",  # each literal fine, the product ~2,000 digits
    "[f(a={(0, 0): 'x'})]", "[f(a=b'x')]", "[f(a=1j)]",  # bfcl decodes them, then cannot write its score file
])
def test_eval_guard_refuses(text):
    from balancetrl.eval import bfcl

    assert not bfcl.is_safe_to_decode(text)
    # the verdict does not depend on how deep the caller's stack is
    assert not _at_depth(700, lambda: bfcl.is_safe_to_decode(text))
    assert bfcl.answer_text("simple_python", text) == bfcl.REFUSED_OUTPUT


@pytest.mark.parametrize("text", [
    "[f(a=2**10, b=-3.5*2, c=10**12 % 7)]", "[f(a=1e12**2)]", "I cannot help.", "[f(a={'k': 1, 2: None})]",
    "[f(a=" + "[" * 300 + "]" * 300 + ")]",  # "too many nested parentheses": a SyntaxError at any depth
    "[f(a=" + "1" * 5000 + ")]",  # Python refuses the literal with a plain SyntaxError: bfcl never gets to eval
])
def test_eval_guard_keeps_plain_arithmetic_and_non_python(text):
    from balancetrl.eval import bfcl

    assert bfcl.is_safe_to_decode(text)


def test_fc_answers_with_hostile_json_are_scored_not_raised():
    pytest.importorskip("bfcl_eval")
    from balancetrl.eval import bfcl

    item = bfcl.load_category("simple_python", 1)[0]
    for args in ["1" * 5000, "[" * 5000 + "]" * 5000, "[" * 900 + "]" * 900]:
        block = '<tool_call>{"name": "calculate_triangle_area", "arguments": {"base": ' + args + "}}</tool_call>"
        answer = bfcl.answer_text("simple_python", block, "fc")
        assert not bfcl.score_answers("simple_python", [item], [answer])[1][0]["valid"]


def _scripted(model, tokenizer, answers_by_question: dict[str, str]):
    """The real tiny model, made to answer each BFCL question with the given text (greedy `generate` replaced)."""
    import torch

    def generate(self, input_ids, attention_mask=None, max_new_tokens=None, pad_token_id=None, **_):
        rows = []
        for ids in input_ids:
            prompt = tokenizer.decode(ids, skip_special_tokens=True)
            (text,) = [t for q, t in answers_by_question.items() if q in prompt]
            rows.append(tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
        width = max(map(len, rows))
        new = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
        for r, row in enumerate(rows):
            new[r, : len(row)] = torch.tensor(row)
        return torch.cat([input_ids, new], dim=1)

    model.generate = types.MethodType(generate, model)
    return model


RESCORE = """
import json, sys
sys.setrecursionlimit(100_000)  # a re-scoring process deeper in its stack or with a higher limit than the guard's
from balancetrl.eval import bfcl
print(json.dumps(bfcl.run_bfcl_scorer(sys.argv[1], sys.argv[2], sys.argv[3].split(","))))
"""


def test_eval_writes_every_sample_and_rescoring_never_runs_model_output(tmp_path, tokenizer):
    pytest.importorskip("bfcl_eval")
    from balancetrl.eval import bfcl
    from balancetrl.eval.runner import evaluate_bfcl
    from conftest import build_tiny_model

    items = bfcl.load_category("simple_python", 6)
    outputs = [
        "[calculate_triangle_area(base=10, height=5)]",  # item 0's right answer: scoring still works
        MARKER_OUTPUT, "[f(a=2**'x')]", f"[f(a={SEVENTY_DIGITS}**64)]", "[f(a={(0, 0): 'x'})]",
        "<think>plan</think>[f(a=0x" + "f" * 5000 + ")]",
    ]
    script = {it["prompt_entry"]["question"][0][-1]["content"]: out for it, out in zip(items, outputs)}
    model = _scripted(build_tiny_model(tokenizer), tokenizer, script)
    out = tmp_path / "eval"
    report = evaluate_bfcl("scripted", ["simple_python"], output_dir=out, limit=6, batch_size=4,
                           max_new_tokens=8, progress=False, model=model, tokenizer=tokenizer)

    assert report["categories"][0]["total"] == 6 and report["categories"][0]["correct"] == 1
    samples = {s["id"]: s for s in map(json.loads, (out / "samples" / "simple_python.jsonl").read_text().splitlines())}
    assert len(samples) == 6
    by_output = {s["raw_output"]: s for s in samples.values()}
    for refused in outputs[1:]:
        assert by_output[refused]["result"] == bfcl.REFUSED_OUTPUT and by_output[refused]["decodable"] is False
    assert by_output[outputs[0]]["valid"] is True and by_output[outputs[0]]["decodable"] is True

    # Nothing written for re-scoring holds refused output, and bfcl's own scorer (in a fresh process, under a
    # high recursion limit) re-scores the files to the same count without running anything.
    result_text = "".join(p.read_text() for p in (out / "bfcl_result").rglob("*.json"))
    assert "__import__" not in result_text and "ffff" not in result_text and SEVENTY_DIGITS not in result_text
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", RESCORE, str(out / "bfcl_result"), str(tmp_path / "score"),
                          "simple_python"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["simple_python"]["correct_count"] == 1
    assert not (tmp_path / "MARKER").exists()

    # Control: the same re-scoring does run the reproducer when it is written verbatim (what the old guard let
    # through), so the assertion above can fail.
    control = tmp_path / "control"
    bfcl.write_result_file(control, "simple_python",
                           [{"id": items[1]["id"], "result": MARKER_OUTPUT.replace("MARKER", "CONTROL")}])
    run = subprocess.run([sys.executable, "-c", RESCORE, str(control), str(tmp_path / "score2"), "simple_python"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert (tmp_path / "CONTROL").exists()


def test_a_checker_failure_makes_that_sample_undecodable(monkeypatch):
    pytest.importorskip("bfcl_eval")
    from balancetrl.eval import bfcl

    items = bfcl.load_category("simple_python", 2)
    real = bfcl.score_entry

    def flaky(category, item, result, handler=None):
        if result == "[boom()]":
            raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
        return real(category, item, result, handler)

    monkeypatch.setattr(bfcl, "score_entry", flaky)
    answers, verdicts = bfcl.score_answers("simple_python", items, ["[boom()]", "[calculate_triangle_area(base=10)]"])
    assert answers == [bfcl.REFUSED_OUTPUT, "[calculate_triangle_area(base=10)]"]
    assert verdicts[0]["error_type"] == "ast_decoder:decoder_failed" and "4300" in verdicts[0]["scorer_error"]
    assert len(verdicts) == 2


# ---- 2. one record or output never ends the run -----------------------------------------------------------------


def test_check_rejects_each_hostile_record_and_goes_on(tmp_path, capsys):
    good = _record(reasoning_content="f it is", tool_calls=[{"type": "function", "function": {
        "name": "f", "arguments": {"a": "x"}}}])
    lines = [
        json.dumps(good),                                                               # 1 base
        '{"messages": ' + "[" * 1000 + "]" * 1000 + "}",                                # 2 RecursionError in json
        '{"messages": [], "n": ' + "1" * 5000 + "}",                                    # 3 int > 4,300 digits
        json.dumps(_record("<think>r</think>[f(a=0x" + "f" * 5000 + ")]")),             # 4 hex: only json.dumps fails
        json.dumps(_record("<think>r</think>[f(a={(0, 0): 'x'})]")),                    # 5 tuple key
        json.dumps(_record("<think>r</think>[f(a={[0]: 'x'})]")),                       # 6 list key
        json.dumps(_record("[f(a='x')]", reasoning_content=["not", "a", "string"])),    # 7 reasoning as a list
        json.dumps(_record("<think>r</think>[f(a='x')]", tools=[{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}},
                                        "required": [["a"]]}}}])),                      # 8 required holds a list
        json.dumps(_record("<think>r</think>[f(a=" + "-" * 3000 + "1)]")),             # 9 too deep for ast.parse
        json.dumps(good),                                                               # 10 base
    ]
    src = tmp_path / "hostile.jsonl"
    src.write_text("\n".join(lines) + "\n")
    assert cli_main(["check", str(src), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["total"] == 10 and sum(report["outcomes"].values()) == 10
    assert report["outcomes"] == {"base": 2, "hard": 0, "rejected": 8}
    rejected = {r["line"]: r for r in map(json.loads, (tmp_path / "out" / "rejected.jsonl").read_text().splitlines())}
    reasons = {line: r["reject_reason"] for line, r in rejected.items()}
    assert reasons == {2: "invalid_json", 3: "invalid_json", 4: "call_parse_error", 5: "call_parse_error",
                       6: "call_parse_error", 7: "malformed_record", 8: "invalid_tool_schema", 9: "call_parse_error"}
    messages = {line: r["reject_message"] for line, r in rejected.items()}
    assert messages[2] == "line 2: unusable JSON (nested too deeply)" and "4300" in messages[3]
    assert "too large" in messages[4] and "dict key" in messages[5] == messages[6]
    assert "reasoning_content must be a string, got list" in messages[7] and "nested too deeply" in messages[9]
    assert len((tmp_path / "out" / "base.jsonl").read_text().splitlines()) == 2
    assert "10 records: 2 base, 0 hard, 8 rejected" in capsys.readouterr().out


def test_a_record_json_cannot_hold_is_rejected_not_fatal(tmp_path):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": str(i), "tools": json.dumps([_tool("f", a="string")]),
             "messages": [{"role": "user", "content": "do f", "sent": datetime.datetime(2026, 1, i + 1)},
                          {"role": "assistant", "content": "<think>r</think>[f(a='x')]"}]} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    report = run_check(tmp_path / "t.parquet", tmp_path / "out", progress=False)
    assert report["outcomes"] == {"base": 0, "hard": 0, "rejected": 3}
    rejected = [json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [1, 2, 3]
    assert {r["reject_reason"] for r in rejected} == {"unwritable_record"}
    assert "datetime is not JSON serializable" in rejected[0]["reject_message"]


def test_hdr_gate_turns_a_broken_answer_into_a_verdict_and_the_round_goes_on():
    from balancetrl.hdr.rounds import gate, hard_sample, run_round

    ref = [{"name": "f", "arguments": {"a": "x"}}]
    record = {"id": "r1", "tools": [_tool("f", a="string")], "reference": [ref],
              "messages": [{"role": "user", "content": "do f"},
                           {"role": "assistant", "reasoning_content": "r",
                            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": "y"}}}]}]}
    sample = hard_sample(record)
    cot = ("<think>", "</think>")
    hostile = ["<think>r</think>[f(a={(0, 0): 'x'})]", "<think>r</think>[f(a=" + "(" * 3000 + "1" + ")" * 3000 + ")]",
               '<think>r</think><tool_call>{"name": "f", "arguments": {"a": ' + "1" * 5000 + "}}</tool_call>",
               "<think>r</think>[f(a=0x" + "f" * 5000 + ")]"]
    assert [gate(sample, t, 0, True, cot).gate for t in hostile] == ["parse:call_parse_error"] * 4

    class Backend:  # the model's answers for this round: hostile ones first, then a right one
        def generate(self, prompts, tools, num_generations, **_):
            return [hostile[:num_generations - 1] + ["<think>r</think>[f(a='x')]"] for _ in prompts]

    result = run_round([sample], Backend(), None, round_index=1, num_generations=5, temperature=0.7,
                       max_new_tokens=8, seed=0)
    assert [c.gate for c in result.candidates] == ["parse:call_parse_error"] * 4 + ["passed"]
    assert len(result.accepted) == 1 and result.still_hard == []
    assert result.accepted[0]["messages"][-1]["tool_calls"][0]["function"]["arguments"] == {"a": "x"}


# ---- 4. clean data trains; 6. hub_token stays out of what the run writes ------------------------------------------

HUB_TOKEN = "hf_testTOKENthatMustNotBeWritten123"


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """`balance_sft.main` in-process on data whose every record passes both checks (zero hard rows), with an
    `hdr:` section and a `hub_token` as a recipe would give them."""
    from balancetrl.hdr.hdr_config import HDRConfig
    from balancetrl.scripts.balance_sft import main, make_parser
    from conftest import build_tiny_model, build_tokenizer, make_conversations

    tmp = tmp_path_factory.mktemp("clean")
    tok = build_tokenizer()
    build_tiny_model(tok).save_pretrained(tmp / "tiny")
    tok.save_pretrained(tmp / "tiny")
    data = tmp / "clean.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in make_conversations()[:3] * 2))
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"""
model_name_or_path: {tmp / 'tiny'}
dataset_path: {data}
chat_template: keep
output_dir: {tmp / 'out'}
use_cpu: true
max_steps: 2
per_device_train_batch_size: 2
max_length: 256
logging_steps: 1
save_strategy: "no"
report_to: none
hub_token: {HUB_TOKEN}
hdr:
  max_rounds: 1
""")
    script_args, training_args, model_args, _, hdr, _, _ = make_parser().parse_recipe(["--config", str(recipe)])
    assert isinstance(hdr, HDRConfig) and training_args.hub_token == HUB_TOKEN
    summary = main(script_args, training_args, model_args, hdr)
    return tmp / "out", summary


def test_data_with_zero_hard_rows_trains(clean_run):
    out, summary = clean_run
    report = json.loads((out / "data" / "report.json").read_text())
    assert report["outcomes"] == {"base": 6, "hard": 0, "rejected": 0}
    assert (out / "data" / "hard.jsonl").stat().st_size == 0
    assert summary["global_steps"] == 2
    assert (out / "model.safetensors").is_file()


def test_recipe_hard_set_replaces_the_checks_hard_records(tmp_path, monkeypatch):
    """`hdr.hard_set` in a recipe is honoured by the training script (not silently replaced by the check's)."""
    from balancetrl.hdr import callback as callback_module
    from balancetrl.scripts import preflight
    from balancetrl.scripts.balance_sft import main, make_parser
    from conftest import make_conversations

    data = tmp_path / "clean.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in make_conversations()[:3]))
    hard = tmp_path / "my_hard.jsonl"
    mine = make_conversations()[1:3]
    hard.write_text("".join(json.dumps(c) + "\n" for c in mine))

    class Built(Exception):
        pass

    seen = {}

    def capture(self, config=None, hard_set=None):
        seen["hard_set"] = hard_set
        raise Built

    monkeypatch.setattr(callback_module.HDRCallback, "__init__", capture)
    recipe = tmp_path / "recipe.yaml"
    base = f"model_name_or_path: smollm2-135m-instruct\ndataset_path: {data}\noutput_dir: {tmp_path / 'out'}\n" \
           f"use_cpu: true\nmax_hard_samples: 1\nhdr:\n  max_rounds: 1\n  hard_set: "
    monkeypatch.setattr(preflight, "check_model_spec", lambda spec: True)
    recipe.write_text(base + str(hard) + "\n")
    with pytest.raises(Built):
        main(*_parsed(make_parser(), recipe))
    assert seen["hard_set"] == mine[:1]  # the file's records, max_hard_samples applied
    recipe.write_text(base + str(tmp_path / "missing.jsonl") + "\n")
    with pytest.raises(preflight.PreflightError, match="hdr.hard_set"):
        main(*_parsed(make_parser(), recipe))


def _parsed(parser, recipe):
    script_args, training_args, model_args, mixture, hdr, _, _ = parser.parse_recipe(["--config", str(recipe)])
    return script_args, training_args, model_args, hdr, mixture


def test_hub_token_is_in_nothing_the_run_writes(clean_run):
    out, _ = clean_run
    written = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in written)
    assert [p for p in written if HUB_TOKEN.encode() in p.read_bytes()] == []


# ---- 5. bad settings fail before the model loads, naming the key ---------------------------------------------


@pytest.mark.parametrize("extra, message", [
    ("learning_rate: -1.0e-5", "learning_rate must be a finite number >= 0"),
    ("learning_rate: .nan", "learning_rate must be a number, got nan"),
    ("per_device_train_batch_size: 0", "per_device_train_batch_size must be an integer >= 1"),
    ("chat_template: chatml", "chat_template must be one of qwen3_training, qwen3, llama3_training, keep"),
    ("num_train_epochs: -3", "num_train_epochs must be > 0"),
    ("max_length: -1", "max_length must be an integer >= 1"),
    ("hdr:\n  judges: [openai/gpt-4o]\n  judge_threshold: 1.5", "hdr.judge_threshold must be a number in [0, 1]"),
    ("hdr:\n  judges: [openai/gpt-4o]\n  judge_concurrency: 0", "hdr.judge_concurrency must be an integer >= 1"),
    ("hdr:\n  judges: [openai/gpt-4o, anthropic/claude]\n  min_votes: 3", "hdr.min_votes must be an integer in [1, 2]"),
    ('hdr:\n  max_rounds: "three"', "hdr.max_rounds must be an integer, got 'three'"),
])
def test_bad_setting_is_refused_by_the_parser(tmp_path, extra, message):
    from balancetrl.scripts.balance_sft import make_parser
    from balancetrl.scripts.recipe import RecipeError

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"dataset_path: x.jsonl\noutput_dir: {tmp_path / 'o'}\nuse_cpu: true\n{extra}\n")
    with pytest.raises(RecipeError, match="^" + str(recipe).replace(".", r"\.") + "|invalid `hdr`") as e:
        make_parser().parse_recipe(["--config", str(recipe)])
    assert message in str(e.value)


def test_bad_settings_are_refused_by_the_python_api():
    from balancetrl.hdr.hdr_config import HDRConfig
    from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments
    from balancetrl.trainer.balance_sft_config import BalanceSFTConfig

    common = dict(output_dir="o", use_cpu=True, report_to="none")
    for kwargs, message in [({"learning_rate": math.nan}, "learning_rate"),
                            ({"num_train_epochs": -3}, "num_train_epochs"),
                            ({"per_device_train_batch_size": 0}, "per_device_train_batch_size"),
                            ({"max_length": -1}, "max_length")]:
        with pytest.raises(ValueError, match=message):
            BalanceSFTConfig(**common, **kwargs)
    with pytest.raises(ValueError, match="hdr.max_rounds must be an integer"):
        HDRConfig(max_rounds="three")
    with pytest.raises(ValueError, match="hdr.judge_threshold"):
        HDRConfig(judge_threshold=-0.1)
    with pytest.raises(ValueError, match="hdr.min_votes=2 needs judges"):
        HDRConfig(min_votes=2)
    with pytest.raises(ValueError, match="chat_template must be one of"):
        BalanceSFTScriptArguments(chat_template="chatml")


def test_bad_setting_fails_in_the_launcher_in_seconds(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"dataset_path: x.jsonl\noutput_dir: {tmp_path / 'o'}\nuse_cpu: true\nnum_train_epochs: -3\n")
    assert cli_main(["balance-sft", "--config", str(recipe)]) == 2
    assert "num_train_epochs must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # a --hdr.KEY value that is not YAML: named, with the fix, no traceback
    assert cli_main(["balance-sft", "--config", str(recipe), "--hdr.judges", "[openai/gpt-4o"]) == 2
    err = capsys.readouterr().err
    assert "--hdr.judges: '[openai/gpt-4o' is not a YAML value" in err and "quote it" in err


# ---- 6. small ones ------------------------------------------------------------------------------------------------


def _good_line():
    return json.dumps(_record(reasoning_content="r", tool_calls=[{"type": "function", "function": {
        "name": "f", "arguments": {"a": "x"}}}]))


def test_utf8_bom_does_not_reject_the_first_record(tmp_path):
    src = tmp_path / "bom.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + (_good_line() + "\n").encode() * 2)
    report = run_check(src, tmp_path / "out", progress=False)
    assert report["outcomes"] == {"base": 2, "hard": 0, "rejected": 0}
    bom_json = tmp_path / "bom.json"
    bom_json.write_bytes(b"\xef\xbb\xbf[" + _good_line().encode() + b"]")
    assert [r.error for r in read_records(bom_json)] == [None]


def test_pretty_printed_json_object_and_data_wrapper_are_documents(tmp_path):
    record = json.loads(_good_line())
    pretty = tmp_path / "one.json"
    pretty.write_text(json.dumps(record, indent=2))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [record, record, record]}, indent=2))
    one_line_wrapped = tmp_path / "wrapped1.json"
    one_line_wrapped.write_text(json.dumps({"data": [record, record]}))
    jsonl_named_json = tmp_path / "lines.json"  # BFCL's convention stays JSON lines
    jsonl_named_json.write_text((json.dumps(record) + "\n") * 2 + "{broken\n")
    for path, n in [(pretty, 1), (wrapped, 3), (one_line_wrapped, 2)]:
        rows = list(read_records(path))
        assert len(rows) == n and all(r.error is None and r.data == record for r in rows), path
    assert [r.error for r in read_records(jsonl_named_json)] == [None, None, "invalid_json"]
    broken_first = tmp_path / "broken_first.json"
    broken_first.write_text("{broken\n" + json.dumps(record) + "\n")
    assert [r.error for r in read_records(broken_first)] == ["invalid_json", None]
    report = run_check(wrapped, tmp_path / "out", progress=False)
    assert report["outcomes"]["base"] == 3


def test_a_parquet_file_that_is_not_parquet_is_named(tmp_path, capsys):
    fake = tmp_path / "data.parquet"
    fake.write_text(_good_line() + "\n")
    with pytest.raises(InputError, match=r"data\.parquet: not a Parquet file .*use \.jsonl or \.json"):
        list(read_records(fake))
    assert cli_main(["check", str(fake), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "not a Parquet file" in capsys.readouterr().err


def test_bfcl_answer_row_without_id_is_named(tmp_path):
    from balancetrl.data.formats import load_records

    question = {"id": "simple_0", "question": [[{"role": "user", "content": "area?"}]],
                "function": [{"name": "area", "parameters": {"type": "dict", "properties": {"b": {"type": "integer"}},
                                                               "required": ["b"]}}]}
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "q.json").write_text(json.dumps(question) + "\n")
    (tmp_path / "possible_answer" / "q.json").write_text(json.dumps({"ground_truth": [{"area": {"b": [1]}}]}) + "\n")
    with pytest.raises(InputError, match=r"line 1: a possible-answer row needs a string 'id'"):
        list(load_records(tmp_path / "q.json", format="bfcl"))
