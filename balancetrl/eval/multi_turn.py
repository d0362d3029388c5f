"""BFCL multi-turn categories, driven by bfcl's own multi-turn loop with our model call inside each step.

bfcl ships everything but the model: the entries and their function docs, the execution environments
(``eval_checker/multi_turn_eval/func_source_code``), the FC driver (``BaseHandler.inference_multi_turn_FC``: turns,
held-out functions added in Miss Func, tool results fed back, the 20-step limit) and the checker
(``_evaluate_single_multi_turn_entry`` → ``multi_turn_checker``: state and execution-response comparison against the
ground-truth trajectory). ``LocalFCHandler`` fills in the FC hooks of that driver:

- the model call: the conversation and the offered functions rendered through the chat template (``tools``), one
  greedy completion from the shared generation layer;
- the output parsed by ``parse_assistant_output`` (the same parser training uses) into reasoning + calls;
- every call checked by ``guard.executable_calls`` against the entry's functions (those offered and those Miss Func
  holds out: bfcl's executor runs any method of the entry's classes, and one bfcl entry's ground truth calls a
  held-out function before it is offered) before bfcl's executor may ``eval`` it; a rejected step ends the turn, as
  an undecodable output does in bfcl;
- the calls and their results appended to the conversation as an assistant ``tool_calls`` message and ``tool``
  messages.

bfcl caches environment instances in its executor module's globals, keyed by model name and entry id. Every run
gets a unique name and every entry's instances are dropped once it is scored (``fresh_environments``), so two
models scored in one process never see each other's file systems, balances or tickets.

``run_entries`` drives several entries at once. bfcl's driver is a synchronous loop per entry, so each entry runs in
its own thread (the loop is bfcl's, not rewritten) and their model calls are answered together, in lockstep rounds:
a round starts once every entry in flight waits for the model, and is one batched completion of all their prompts.
A batch's members then depend only on the entries' own outputs, never on thread timing, so a run is reproducible
(left padding in a batch can flip a greedy token, hence the fixed membership). Threads run Python only between
rounds (bfcl's executor and checker, milliseconds); the model runs in the calling thread.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..cot import DEFAULT_COT
from ..data.calls import CallParseError, parse_python_calls, to_tool_calls
from ..generation import (
    Completion,
    CompletionBackend,
    parse_assistant_output,
    render_prompt_texts,
    tokenize_prompt_texts,
)
from . import bfcl as bfcl_adapter
from .bfcl import MULTI_TURN_CATEGORIES
from .guard import RejectedCall, executable_calls

# `model(messages, tools) -> Completion`: one assistant step of a conversation.
StepModel = Callable[[list[dict], list[dict]], Completion]
# `model([(messages, tools), ...]) -> [Completion, ...]`: one step of several conversations, in one batch.
BatchStepModel = Callable[[list[tuple[list[dict], list[dict]]]], list[Completion]]


def check_template_renders_tools(tokenizer, chat_template: str | None = None) -> None:
    """Multi-turn is FC style: the functions reach the model only through the chat template's ``tools``. A template
    that drops them would score a model that never saw a function: refuse it up front."""
    probe = {"name": "balancetrl_probe_function", "description": "probe", "parameters": {"type": "object",
                                                                                         "properties": {}}}
    text = render_prompt_texts(tokenizer, [[{"role": "user", "content": "hi"}]], [[probe]], chat_template)[0]
    if probe["name"] not in text:
        raise ValueError(
            "the chat template does not render `tools`, so the model would never see the functions of a multi-turn "
            "entry; use a tool-calling template (balancetrl eval --chat-template qwen3, qwen3_training or llama3_training)"
        )


class ChatStepModel:
    """The model call of one round of steps (a ``BatchStepModel``): each conversation rendered through the chat
    template, one greedy completion each from a single call of an engine of the generation layer
    (a ``CompletionBackend``: ``TransformersGeneration`` / ``OfflineVLLM``), which batches them."""

    def __init__(self, engine: CompletionBackend, tokenizer, *, max_new_tokens: int = 512,
                 chat_template: str | None = None):
        self.engine, self.tokenizer = engine, tokenizer
        self.max_new_tokens, self.chat_template = max_new_tokens, chat_template

    def __call__(self, requests: list[tuple[list[dict], list[dict]]]) -> list[Completion]:
        texts = render_prompt_texts(self.tokenizer, [messages for messages, _ in requests],
                                    [tools or None for _, tools in requests], self.chat_template)
        ids = tokenize_prompt_texts(self.tokenizer, texts)
        return [row[0] for row in self.engine.complete(ids, max_new_tokens=self.max_new_tokens)]


def _executor_globals() -> dict:
    from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils

    return vars(multi_turn_utils)


@contextlib.contextmanager
def fresh_environments(run_name: str | None = None):
    """Drop bfcl's cached environment instances (``<model>_<entry>_<Class>_instance`` globals of its executor)
    before and after the block: nothing survives from an earlier run, nothing leaks into a later one. With
    ``run_name``, only that run's instances (its own and its checker's ``<model>_eval_…``), so entries running at
    the same time under other names keep theirs."""
    # bfcl's own instance naming: the model name with [-./:] replaced (multi_turn_utils.execute_multi_turn_func_call)
    prefix = None if run_name is None else re.sub(r"[-./:]", "_", f"{run_name}_")

    def clear():
        namespace = _executor_globals()
        for name in [n for n in namespace if n.endswith("_instance") and (prefix is None or n.startswith(prefix))]:
            del namespace[name]

    clear()
    try:
        yield
    finally:
        clear()


@dataclass
class StepLog:
    raw_output: str
    reasoning: str | None = None
    calls: list[dict] | None = None  # parsed calls (before the guard)
    content: str = ""
    parse_error: str | None = None
    rejected: str | None = None  # guard reason: nothing of this step was executed
    executed: list[str] = field(default_factory=list)  # as bfcl ran them: a value's `(` written `\x28` (eval.guard)
    results: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency: float = 0.0


def _handler_class():
    bfcl_adapter.import_bfcl()
    from bfcl_eval.model_handler.base_handler import BaseHandler

    class LocalFCHandler(BaseHandler):
        """bfcl's FC handler contract, answered by a local model. Step outputs (``model_responses``) are the
        guarded calls as a Python call list (bfcl's own decoder reads them back, e.g. in ``--check-with-bfcl``),
        or ``""`` for a step without executable calls; the raw text lives in the step logs."""

        def __init__(self, model: StepModel, run_name: str, cot: tuple[str, str]):
            super().__init__(model_name=run_name, temperature=0.0, registry_name=run_name, is_fc_model=True)
            self.model = model
            self.cot = cot  # the markers the model was trained with: each step is read as training reads it
            self.turns: list[list[StepLog]] = []
            self.functions: list[dict] = []  # the guard's allow-list

        # -- conversation --
        def _pre_query_processing_FC(self, inference_data, test_entry):
            self.functions = entry_functions(test_entry)
            return {"message": []}

        def _compile_tools(self, inference_data, test_entry):
            inference_data["tools"] = list(test_entry["function"])
            return inference_data

        def add_first_turn_message_FC(self, inference_data, first_turn_message):
            self.turns.append([])
            inference_data["message"].extend(first_turn_message)
            return inference_data

        def _add_next_turn_user_message_FC(self, inference_data, user_message):
            self.turns.append([])
            inference_data["message"].extend(user_message)
            return inference_data

        # -- one step --
        def _query_FC(self, inference_data):
            completion = self.model(copy.deepcopy(inference_data["message"]), inference_data["tools"])
            return completion, completion.latency

        def _parse_query_response_FC(self, completion: Completion):
            log = StepLog(completion.text, prompt_tokens=completion.prompt_tokens,
                          completion_tokens=completion.completion_tokens, latency=completion.latency)
            self.turns[-1].append(log)
            try:
                log.reasoning, log.calls, log.content = parse_assistant_output(completion.text, *self.cot)
            except CallParseError as e:
                log.parse_error = f"{e.reason}: {e.message}"
            executable = []
            if log.calls:
                try:
                    executable = executable_calls(log.calls, self.functions)
                except RejectedCall as e:
                    log.rejected = f"{e.reason}: {e}"
            if executable:
                message = {"role": "assistant", "content": log.content, "tool_calls": to_tool_calls(log.calls)}
            else:
                message = {"role": "assistant", "content": completion.text}
            return {
                "model_responses": "[" + ", ".join(executable) + "]" if executable else "",
                "reasoning_content": log.reasoning or "",
                "message": message,
                "input_token": completion.prompt_tokens,
                "output_token": completion.completion_tokens,
            }

        def decode_execute(self, result, has_tool_call_tag=False):
            # `result` is what _parse_query_response_FC wrote: "" or guarded calls. Re-checked all the same: this is
            # the last stop before bfcl's eval(), and the checker calls it on stored results too.
            if not result:
                return []
            return executable_calls(parse_python_calls(result), self.functions)

        def _add_assistant_message_FC(self, inference_data, model_response_data):
            inference_data["message"].append(model_response_data["message"])
            return inference_data

        def _add_execution_results_FC(self, inference_data, execution_results, model_response_data):
            log = self.turns[-1][-1]
            log.executed = self.decode_execute(model_response_data["model_responses"])
            log.results = list(execution_results)
            for call, result in zip(model_response_data["message"]["tool_calls"], execution_results):
                inference_data["message"].append({"role": "tool", "name": call["function"]["name"], "content": result})
            return inference_data

    return LocalFCHandler


def entry_functions(entry: dict) -> list[dict]:
    """Function docs of an entry: those offered from the start and those Miss Func adds later."""
    held_out = [doc for docs in entry.get("missed_function", {}).values() for doc in docs]
    return list(entry["function"]) + held_out


def load_entries(category: str, limit: int | None = None) -> list[dict]:
    """First ``limit`` entries of a multi-turn category: ``{"id", "entry", "ground_truth"}`` (bfcl's loaders: the
    function docs populated, held-out functions moved to ``missed_function``)."""
    if category not in MULTI_TURN_CATEGORIES:
        raise ValueError(f"{category!r} is not a multi-turn category ({', '.join(MULTI_TURN_CATEGORIES)})")
    bfcl = bfcl_adapter.import_bfcl()
    entries = bfcl.utils.load_dataset_entry(category)
    truth = bfcl.utils.load_ground_truth_entry(category)
    assert len(truth) == len(entries), f"{category}: {len(truth)} answers for {len(entries)} entries"
    n = len(entries) if limit is None else min(limit, len(entries))
    return [{"id": entries[i]["id"], "entry": entries[i], "ground_truth": truth[i]["ground_truth"]} for i in range(n)]


def run_entry(model: StepModel, item: dict, category: str, run_name: str | None = None, *, quiet: bool = True,
              cot: tuple[str, str] = DEFAULT_COT) -> dict:
    """Drive one entry through bfcl's FC loop with ``model`` and score it with bfcl's checker; ``cot`` are the CoT
    markers the model's outputs are read with.

    Returns ``{"id", "valid", "error_type", "error", "result", "turns"}``: ``result`` is bfcl's result-file value
    (per turn, per step), ``turns`` the step logs (raw output, parsed and executed calls, tool results). ``quiet``
    swallows bfcl's per-step prints; ``run_entries`` does that once for all its threads instead (``sys.stdout`` is
    one for the process: nested swaps from threads would restore each other's).
    """
    bfcl = bfcl_adapter.import_bfcl()
    run_name = run_name or f"balancetrl_{uuid.uuid4().hex}"
    handler = _handler_class()(model, run_name, cot)
    with fresh_environments(run_name):
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            result, _ = handler.inference_multi_turn_FC(
                copy.deepcopy(item["entry"]), include_input_log=False, exclude_state_log=True
            )
        # The checker re-decodes `result` with this handler (the guard again) and replays it in fresh instances.
        verdict = bfcl.eval_runner._evaluate_single_multi_turn_entry(
            handler, item["id"], result, item["ground_truth"], copy.deepcopy(item["entry"]), run_name, category
        )
    error = verdict.get("error") or {}
    return {
        "id": item["id"],
        "valid": bool(verdict["valid"]),
        "error_type": error.get("error_type"),
        "error": error.get("error_message"),
        "result": result,
        "turns": [[step.__dict__ for step in turn] for turn in handler.turns],
    }


def _import_environments(items: list[dict]) -> None:
    """bfcl, its handler and the environment modules of ``items`` (bfcl's executor imports them on first use)."""
    import importlib

    _handler_class()
    from bfcl_eval.constants.executable_backend_config import CLASS_FILE_PATH_MAPPING

    for name in sorted({c for item in items for c in item["entry"]["involved_classes"]}):
        importlib.import_module(CLASS_FILE_PATH_MAPPING[name])


class _Aborted(Exception):
    """Raised in an entry's thread when the run stops (another entry or the model failed)."""


class _Lockstep:
    """The rendezvous of ``run_entries``: entry threads post a step request and wait for its reply."""

    def __init__(self):
        self.cond = threading.Condition()
        self.requests: dict[int, tuple[list[dict], list[dict]]] = {}
        self.replies: dict[int, Completion] = {}
        self.finished: set[int] = set()
        self.aborted = False

    def step_model(self, index: int) -> StepModel:
        def call(messages: list[dict], tools: list[dict]) -> Completion:
            with self.cond:
                self.requests[index] = (messages, tools)
                self.cond.notify_all()
                self.cond.wait_for(lambda: index in self.replies or self.aborted)
                if self.aborted:
                    raise _Aborted()
                return self.replies.pop(index)

        return call


def run_entries(
    model: BatchStepModel,
    items: list[dict],
    category: str,
    *,
    width: int = 8,
    on_done: Callable[[int, dict], None] | None = None,
    cot: tuple[str, str] = DEFAULT_COT,
) -> list[dict]:
    """``run_entry`` over ``items``, up to ``width`` entries in flight, their steps batched in lockstep rounds (module
    docstring). Returns the outcomes in ``items`` order; ``on_done(index, outcome)`` is called (in this thread) as
    each entry finishes. An error in an entry or in ``model`` stops every entry and is raised here."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    _import_environments(items)  # first imports here, not raced by the entry threads
    gate = _Lockstep()
    outcomes: list[dict | None] = [None] * len(items)
    errors: dict[int, BaseException] = {}
    live: dict[int, threading.Thread] = {}
    next_index = 0

    def work(i: int) -> None:
        try:
            outcomes[i] = run_entry(gate.step_model(i), items[i], category, quiet=False, cot=cot)
        except BaseException as e:  # handed to the calling thread, which raises it
            errors[i] = e
        finally:
            with gate.cond:
                gate.finished.add(i)
                gate.cond.notify_all()

    def settled() -> bool:
        return all(i in gate.requests or i in gate.finished for i in live)

    with contextlib.redirect_stdout(io.StringIO()):  # bfcl prints every step, from every thread
        try:
            while True:
                while len(live) < width and next_index < len(items):
                    live[next_index] = threading.Thread(target=work, args=(next_index,), daemon=True)
                    live[next_index].start()
                    next_index += 1
                if not live:
                    break
                with gate.cond:
                    gate.cond.wait_for(settled)
                    done = sorted(i for i in live if i in gate.finished)
                for i in done:
                    live.pop(i).join()
                    if i in errors:
                        raise errors[i]
                    if on_done is not None:
                        on_done(i, outcomes[i])
                if done and next_index < len(items):
                    continue  # start the next entries first: they join this round
                with gate.cond:
                    batch = sorted(gate.requests)
                    requests = [gate.requests.pop(i) for i in batch]
                if not batch:
                    continue
                completions = model(requests)
                if len(completions) != len(requests):
                    raise RuntimeError(f"the model answered {len(completions)} of {len(requests)} step requests")
                with gate.cond:
                    gate.replies.update(zip(batch, completions))
                    gate.cond.notify_all()
        finally:
            if live:  # stopped by an error: wake every waiting entry with _Aborted and let it clean up
                with gate.cond:
                    gate.aborted = True
                    gate.cond.notify_all()
                for thread in live.values():
                    thread.join()
    return outcomes


def summarize_steps(turns: list[list[dict]]) -> dict[str, Any]:
    steps = [step for turn in turns for step in turn]
    return {
        "steps": len(steps),
        "rejected_steps": sum(step["rejected"] is not None for step in steps),
        "executed_calls": sum(len(step["executed"]) for step in steps),
        "latency": sum(step["latency"] for step in steps),
    }
