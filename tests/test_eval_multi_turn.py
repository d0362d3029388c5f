"""BFCL multi-turn through bfcl's own driver and checker, with our model call, parser and execution guard."""

import ast
import importlib
import inspect
import json

import pytest

pytest.importorskip("bfcl_eval")

from balancetrl.data.calls import render_tool_call_block
from balancetrl.eval import multi_turn as mt
from balancetrl.eval.guard import RejectedCall, executable_calls
from balancetrl.generation import Completion


def _keyword_call(source: str, classes: list[str]) -> dict:
    """A ground-truth call string (`sort('f.txt')`, positional arguments allowed) as a `{"name", "arguments"}` call,
    positional arguments named from the environment method's signature."""
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    node = ast.parse(source, mode="eval").body
    name = node.func.id
    for cls_name in classes:
        cls = getattr(importlib.import_module(CLASS_FILE_PATH_MAPPING[cls_name]), cls_name)
        if hasattr(cls, name):
            params = [p for p in inspect.signature(getattr(cls, name)).parameters if p != "self"]
            break
    arguments = {params[i]: ast.literal_eval(a) for i, a in enumerate(node.args)}
    arguments.update({k.arg: ast.literal_eval(k.value) for k in node.keywords})
    return {"name": name, "arguments": arguments}


class Scripted:
    """Stand-in model: at the first step of turn t it answers `turns[t]` (calls as `<tool_call>` blocks, or a raw
    string), then plain text, which ends the turn (bfcl's loop stops on a step without calls)."""

    def __init__(self, turns):
        self.turns = turns

    def __call__(self, messages, tools):
        if messages[-1]["role"] == "tool":
            return Completion("Done.", 10, 2, 0.0)
        answer = self.turns[sum(m["role"] == "user" for m in messages) - 1]
        if isinstance(answer, str):
            return Completion(answer, 10, 5, 0.0)
        return Completion(render_tool_call_block(answer) if answer else "Which one do you mean?", 10, 5, 0.0)


def _truth(item):
    return [[_keyword_call(s, item["entry"]["involved_classes"]) for s in turn] for turn in item["ground_truth"]]


# ---- ground truth through our loop: bfcl's checker says valid --------------------------------------------------


@pytest.mark.parametrize("category", mt.MULTI_TURN_CATEGORIES)
def test_ground_truth_replay_is_valid(category):
    items = mt.load_entries(category, 40)
    outcomes = [mt.run_entry(Scripted(_truth(item)), item, category) for item in items]
    assert [o["id"] for o in outcomes if not o["valid"]] == []
    assert len(outcomes) == 40
    # every ground-truth call went through the guard and was executed
    executed = sum(len(s["executed"]) for o in outcomes for turn in o["turns"] for s in turn)
    assert executed == sum(len(turn) for item in items for turn in item["ground_truth"])


@pytest.mark.slow
def test_ground_truth_replay_is_valid_on_all_800_entries():
    for category in mt.MULTI_TURN_CATEGORIES:
        items = mt.load_entries(category)
        assert len(items) == 200
        invalid = [i["id"] for i in items if not mt.run_entry(Scripted(_truth(i)), i, category)["valid"]]
        assert invalid == [], category


def test_broken_trajectories_fail_with_bfcls_reason():
    (item,) = mt.load_entries("multi_turn_base", 1)
    truth = _truth(item)  # turn 0: cd(document), mkdir(temp), mv(final_report.pdf -> temp)

    wrong_argument = json.loads(json.dumps(truth))
    wrong_argument[0][1]["arguments"]["dir_name"] = "tmp"
    missing_call = json.loads(json.dumps(truth))
    del missing_call[0][2]
    extra_call = json.loads(json.dumps(truth))
    extra_call[1].append({"name": "touch", "arguments": {"file_name": "extra.txt"}})

    outcomes = {name: mt.run_entry(Scripted(t), item, "multi_turn_base")
                for name, t in [("wrong", wrong_argument), ("missing", missing_call), ("extra", extra_call)]}
    assert {k: (o["valid"], o["error_type"]) for k, o in outcomes.items()} == {
        "wrong": (False, "multi_turn:instance_state_mismatch"),
        "missing": (False, "multi_turn:instance_state_mismatch"),
        "extra": (False, "multi_turn:instance_state_mismatch"),
    }
    assert outcomes["wrong"]["error"] == "Model instance for GorillaFileSystem does not match the state with ground truth instance."
    # the wrong argument was executed as given: bfcl's tool result went back to the model
    assert outcomes["wrong"]["turns"][0][0]["executed"][1] == "mkdir(dir_name='tmp')"


# ---- the execution guard ------------------------------------------------------------------------------------------


class Printed(str):
    def __repr__(self):
        return "__import__('os')"


class PrintedDict(dict):
    __repr__ = Printed.__repr__


def test_guard_accepts_literals_and_rejects_everything_else():
    docs = [{"name": "cd", "parameters": {"type": "dict", "properties": {"folder": {"type": "string"}}}}]
    assert executable_calls([{"name": "cd", "arguments": {"folder": "a'b\"c"}}], docs) == ["cd(folder='a\\'b\"c')"]
    cases = {
        "__import__": {"name": "__import__", "arguments": {}},
        "os.system": {"name": "os.system", "arguments": {}},
        "name injection": {"name": "cd(folder='x') or cd", "arguments": {}},
        "arg injection": {"name": "cd", "arguments": {"folder=open('m','w') or 'x', y": 1}},
        "unknown arg": {"name": "cd", "arguments": {"path": "x"}},
        "keyword arg": {"name": "cd", "arguments": {"lambda": "x"}},
        "nan": {"name": "cd", "arguments": {"folder": float("nan")}},
        "object": {"name": "cd", "arguments": {"folder": object()}},
        # a subclass prints itself as it likes: only the built-in types' repr is known to be a literal
        "str subclass": {"name": "cd", "arguments": {"folder": Printed("x")}},
        "dict subclass": {"name": "cd", "arguments": {"folder": PrintedDict()}},
        "str subclass name": {"name": Printed("cd"), "arguments": {}},
    }
    reasons = {}
    for label, call in cases.items():
        with pytest.raises(RejectedCall) as info:
            executable_calls([{"name": "cd", "arguments": {}}, call], docs)
        reasons[label] = info.value.reason
    assert reasons == {
        "__import__": "unknown_function", "os.system": "unknown_function", "name injection": "unknown_function",
        "arg injection": "bad_argument_name", "unknown arg": "unknown_argument", "keyword arg": "bad_argument_name",
        "nan": "non_literal_value", "object": "non_literal_value", "str subclass": "non_literal_value",
        "dict subclass": "non_literal_value", "str subclass name": "unknown_function",
    }
    # what the guard would otherwise have written for them
    assert f"{Printed('x')!r} {PrintedDict()!r}" == "__import__('os') __import__('os')"


def test_injected_outputs_are_rejected_before_execution(tmp_path):
    (item,) = mt.load_entries("multi_turn_base", 1)
    marker = tmp_path / "pwned"
    create = f"open({str(marker)!r}, 'w').close()"

    # The hazard is real: bfcl's executor runs an argument name as code.
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (
        execute_multi_turn_func_call,
    )

    with mt.fresh_environments():
        execute_multi_turn_func_call([f"cd(folder={create} or 'x')"], item["entry"]["initial_config"],
                                     item["entry"]["involved_classes"], "hazard", item["id"])
    assert marker.exists()
    marker.unlink()

    def block(name, arguments):
        return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"

    injected = {
        "__import__ name": block("__import__", {"name": "os"}),
        "attribute name": block("os.system", {"command": f"touch {marker}"}),
        "call as name": block(f"cd(folder={create} or 'x') or cd", {}),
        "argument name": block("cd", {f"folder={create} or 'x', y": 1}),
        "python attribute": f"[os.system(command='touch {marker}')]",
        "call in value": f"[cd(folder={create})]",
        "f-string in value": f"[cd(folder=f'{{{create}}}')]",
        "non-identifier kwarg via json": block("mkdir", {"dir_name) or " + create + " or (x": "d"}),
    }
    outcomes = {}
    for label, text in injected.items():
        outcome = mt.run_entry(Scripted([text] * len(item["ground_truth"])), item, "multi_turn_base")
        step = outcome["turns"][0][0]
        outcomes[label] = (step["rejected"] or step["parse_error"] or "").split(":")[0], step["executed"]
        assert not marker.exists(), label
    assert outcomes == {
        "__import__ name": ("unknown_function", []),
        "attribute name": ("unknown_function", []),
        "call as name": ("unknown_function", []),
        "argument name": ("bad_argument_name", []),
        "python attribute": ("unknown_function", []),
        "call in value": ("call_parse_error", []),
        "f-string in value": ("call_parse_error", []),
        "non-identifier kwarg via json": ("bad_argument_name", []),
    }
    # A string that looks like code is only data: executed as a literal (its parentheses escaped for bfcl's
    # rewrite), nothing runs.
    text = block("cd", {"folder": f"{create}"})
    step = mt.run_entry(Scripted([text] * 4), item, "multi_turn_base")["turns"][0][0]
    assert step["executed"] == [f"cd(folder=\"open\\x28'{marker}', 'w').close\\x28)\")"] and not marker.exists()
    assert ast.literal_eval(step["executed"][0].removeprefix("cd(folder=")[:-1]) == create


def test_what_the_guard_passes_the_recheck_reads_back_unchanged():
    # decode_execute re-checks the guard's own output by parsing it: both must apply the same limits, or a step
    # passes the guard and then dies in the re-check (neither rejected nor executed, its tool_calls unanswered).
    from balancetrl.data.calls import MAX_INT_BITS, CallParseError, parse_python_calls

    docs = [{"name": "f", "parameters": {"type": "dict", "properties": {"a": {}}}}]
    at_limit = 2**MAX_INT_BITS - 1
    nested = "deep"
    for _ in range(32):
        nested = [nested]
    for value in [at_limit, -at_limit, [{"n": at_limit}], nested, 1e300, "a\\(b", {"k(x)": ["ls (y)"]}, "\x00\ud800"]:
        (source,) = executable_calls([{"name": "f", "arguments": {"a": value}}], docs)
        assert parse_python_calls(source) == [{"name": "f", "arguments": {"a": value}}]
        assert executable_calls(parse_python_calls(source), docs) == [source]
    # one bit more: refused by the guard, for the limit the parser applies
    for value in [2**MAX_INT_BITS, -(2**MAX_INT_BITS), [{"n": 2**MAX_INT_BITS}]]:
        with pytest.raises(RejectedCall, match=f"f.a: an integer of {MAX_INT_BITS + 1} bits, over the limit of "
                                               f"{MAX_INT_BITS}") as info:
            executable_calls([{"name": "f", "arguments": {"a": value}}], docs)
        assert info.value.reason == "value_too_large"
        with pytest.raises(CallParseError, match="an integer too large to write as JSON"):
            parse_python_calls(f"f(a={value!r})")


def test_an_integer_past_the_limit_is_a_rejected_step():
    # ~4,100 digits: JSON reads and writes it (Python's limit is 4,300), the Python-call re-check does not
    (item,) = mt.load_entries("multi_turn_base", 1)
    big = int("9" * 4100)
    seen = []

    def model(messages, tools):
        seen.append(messages)
        return Scripted([[{"name": "cd", "arguments": {"folder": big}}]] * 4)(messages, tools)

    outcome = mt.run_entry(model, item, "multi_turn_base")
    step = outcome["turns"][0][0]
    assert (step["rejected"], step["executed"], step["results"]) == (
        f"value_too_large: cd.folder: an integer of {big.bit_length()} bits, over the limit of 13300", [], [])
    assert len(outcome["turns"][0]) == 1  # the rejected step ends the turn
    # the assistant's step went into the conversation as text: no tool_calls left without tool replies
    turn_1_prompt = seen[1]
    assert turn_1_prompt[1] == {"role": "assistant", "content": step["raw_output"]}
    assert [m["role"] for m in turn_1_prompt] == ["user", "assistant", "user"]
    assert mt.summarize_steps(outcome["turns"])["rejected_steps"] == 4


# `word(` anywhere in the text: bfcl's executor (multi_turn_utils._process_method_calls) would turn it into
# `<instance>.word(` inside the string literal
PAREN_STRINGS = ["run ls(now)", "cd (x) && pwd()", "a\\(b", "it's ls('x')", "mv(\n)"]


def test_values_reach_the_function_exactly_as_the_model_sent_them():
    (item,) = mt.load_entries("multi_turn_base", 1)
    calls = [{"name": "echo", "arguments": {"content": text}} for text in PAREN_STRINGS]
    outcome = mt.run_entry(Scripted([calls] * 4), item, "multi_turn_base")
    step = outcome["turns"][0][0]
    assert step["rejected"] is None and len(step["executed"]) == len(PAREN_STRINGS)
    # bfcl's GorillaFileSystem.echo returns what it received
    assert [json.loads(result) for result in step["results"]] == [{"terminal_output": t} for t in PAREN_STRINGS]
    assert [ast.literal_eval(s.removeprefix("echo(content=")[:-1]) for s in step["executed"]] == PAREN_STRINGS


def test_bfcls_rewrite_touches_only_the_function_name():
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import _process_method_calls

    docs = [{"name": "echo", "parameters": {"type": "dict", "properties": {"content": {}, "extra": {}}}}]
    mapping = {name: "fs" for name in ["echo", "ls", "cd", "pwd", "mv"]}
    value = {"ls(x)": PAREN_STRINGS, "cd (": [{"pwd()": "mv("}]}
    (source,) = executable_calls([{"name": "echo", "arguments": {"content": PAREN_STRINGS[0], "extra": value}}], docs)
    assert _process_method_calls(source, mapping) == "fs." + source
    assert source == ("echo(content='run ls\\x28now)',extra={'ls\\x28x)': ['run ls\\x28now)', 'cd \\x28x) && pwd\\x28)', "
                      "'a\\\\\\x28b', \"it's ls\\x28'x')\", 'mv\\x28\\n)'], 'cd \\x28': [{'pwd\\x28)': 'mv\\x28'}]})")


# ---- environment isolation ----------------------------------------------------------------------------------------


def test_two_models_do_not_share_environment_state():
    (item,) = mt.load_entries("multi_turn_base", 1)
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import (
        execute_multi_turn_func_call,
    )

    cfg, classes = item["entry"]["initial_config"], item["entry"]["involved_classes"]
    # bfcl alone: the same model name and entry id share one file system across runs
    with mt.fresh_environments():
        execute_multi_turn_func_call(["mkdir(dir_name='made_by_a')"], cfg, classes, "same", item["id"])
        (listing,), _ = execute_multi_turn_func_call(["ls()"], cfg, classes, "same", item["id"])
    assert "made_by_a" in listing

    a = Scripted([[{"name": "mkdir", "arguments": {"dir_name": "made_by_a"}}, {"name": "ls", "arguments": {}}]] * 4)
    b = Scripted([[{"name": "ls", "arguments": {}}]] * 4)
    # the same run name on purpose: isolation must not depend on names
    ran_a = mt.run_entry(a, item, "multi_turn_base", run_name="same")
    ran_b = mt.run_entry(b, item, "multi_turn_base", run_name="same")
    assert "made_by_a" in ran_a["turns"][0][0]["results"][1]
    assert json.loads(ran_a["turns"][0][0]["results"][1]) == {"current_directory_content": ["document", "archive", "made_by_a"]}
    assert json.loads(ran_b["turns"][0][0]["results"][0]) == {"current_directory_content": ["document", "archive"]}
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    assert [n for n in vars(multi_turn_utils) if n.endswith("_instance")] == []  # nothing left behind


# ---- several entries at once: run_entries ------------------------------------------------------------------------


class Routed:
    """A batch step model over per-entry `Scripted` models (routed by the entry's first user message), recording
    each batch as the list of entry ids it held."""

    def __init__(self, items, fail_at_batch=None):
        self.by_question = {item["entry"]["question"][0][0]["content"]: (item["id"], Scripted(_truth(item)))
                            for item in items}
        self.batches, self.fail_at_batch = [], fail_at_batch

    def __call__(self, requests):
        if self.fail_at_batch is not None and len(self.batches) == self.fail_at_batch:
            raise RuntimeError("engine failed")
        routed = [self.by_question[next(m for m in messages if m["role"] == "user")["content"]]
                  for messages, _ in requests]
        self.batches.append([entry_id for entry_id, _ in routed])
        return [model(messages, tools) for (_, model), (messages, tools) in zip(routed, requests)]


def _instances():
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    return [n for n in vars(multi_turn_utils) if n.endswith("_instance")]


def test_run_entries_batches_steps_in_lockstep_and_matches_one_at_a_time():
    import sys
    import threading

    items = mt.load_entries("multi_turn_base", 7)
    stdout, threads = sys.stdout, threading.active_count()
    alone = [mt.run_entry(Scripted(_truth(item)), item, "multi_turn_base") for item in items]

    model, done = Routed(items), []
    together = mt.run_entries(model, items, "multi_turn_base", width=3, on_done=lambda i, o: done.append(i))
    key = [(o["id"], o["valid"], o["result"], [[s["executed"] for s in t] for t in o["turns"]]) for o in together]
    assert key == [(o["id"], o["valid"], o["result"], [[s["executed"] for s in t] for t in o["turns"]]) for o in alone]
    assert all(o["valid"] for o in together) and sorted(done) == list(range(7))

    # every step went through a batch; never more than `width` entries in one, and the first three share the first
    steps = sum(len(turn) for o in alone for turn in o["turns"])
    assert sum(len(b) for b in model.batches) == steps
    assert max(len(b) for b in model.batches) == 3 and len(model.batches) < steps
    assert model.batches[0] == [item["id"] for item in items[:3]]
    # membership depends on the entries only: a second run forms the same batches
    again = Routed(items)
    mt.run_entries(again, items, "multi_turn_base", width=3)
    assert again.batches == model.batches
    assert sys.stdout is stdout and threading.active_count() == threads and _instances() == []


def test_run_entries_stops_every_entry_on_a_model_error():
    import threading

    items = mt.load_entries("multi_turn_base", 4)
    threads = threading.active_count()
    with pytest.raises(RuntimeError, match="engine failed"):
        mt.run_entries(Routed(items, fail_at_batch=2), items, "multi_turn_base", width=4)
    assert threading.active_count() == threads and _instances() == []

    def short(requests):
        return []

    with pytest.raises(RuntimeError, match="answered 0 of 2 step requests"):
        mt.run_entries(short, items[:2], "multi_turn_base", width=2)
    assert threading.active_count() == threads and _instances() == []
    with pytest.raises(ValueError, match="width must be >= 1"):
        mt.run_entries(short, items, "multi_turn_base", width=0)


def test_fresh_environments_of_a_run_keep_other_runs_instances():
    (item,) = mt.load_entries("multi_turn_base", 1)
    from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_utils import execute_multi_turn_func_call

    cfg, classes = item["entry"]["initial_config"], item["entry"]["involved_classes"]
    with mt.fresh_environments():
        execute_multi_turn_func_call(["ls()"], cfg, classes, "other-run", item["id"])
        with mt.fresh_environments("mine"):
            execute_multi_turn_func_call(["ls()"], cfg, classes, "mine", item["id"])
            assert sorted({n.split("_multi_turn_")[0] for n in _instances()}) == ["mine", "other_run"]
        assert {n.split("_multi_turn_")[0] for n in _instances()} == {"other_run"}
    assert _instances() == []
