"""`check` memory stays flat as the input grows: no record leaves garbage that only the cyclic GC could free
(a recursive closure in the Answer Check made one reference cycle per record while `run_check` had the GC off:
1.1 GB peak RSS on 200k rows). Peak RSS itself is measured by benchmarks/check_throughput.py."""

import gc
import json

from balancetrl.data.checks import check_record
from balancetrl.data.formats import load_records
from balancetrl.data.split import run_check


def _rows(n: int) -> list[dict]:
    tools = json.dumps([{"name": "f", "description": "d", "parameters": {"a": {"type": "int"}}},
                        {"name": "g", "description": "d", "parameters": {"b": {"type": "str"}}}])
    rows = []
    for i in range(n):
        calls = [{"name": "f", "arguments": {"a": i}}, {"name": "g", "arguments": {"b": str(i)}}]
        produced = f"[g(b='{i}'), f(a={i if i % 3 else i + 1})]"  # parallel calls, reordered; every third is hard
        rows.append({"id": i, "query": f"q{i}", "tools": tools, "answers": json.dumps(calls),
                     "response": f"<think>two calls</think>{produced}"})
    return rows


def _cyclic_garbage(fn) -> int:
    gc.collect()
    gc.disable()
    try:
        fn()
        return gc.collect()
    finally:
        gc.enable()


def test_checking_a_record_leaves_no_reference_cycle():
    records = [r.data for r in load_records(_rows(30))]
    outcomes = [check_record(r).outcome for r in records]
    assert outcomes.count("hard") == 10 and outcomes.count("base") == 20
    assert _cyclic_garbage(lambda: [check_record(r) for r in records * 20]) == 0


def test_run_check_garbage_does_not_grow_with_the_input(tmp_path):
    def run(n):
        path = tmp_path / f"in_{n}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _rows(n)))
        return _cyclic_garbage(lambda: run_check(path, tmp_path / f"out_{n}", progress=False))

    run(20)  # warm-up: first-use caches and imports leave garbage once
    small, large = run(50), run(1000)
    assert large == small  # one-off objects only (progress bar, writers), nothing per record
    assert gc.isenabled()
