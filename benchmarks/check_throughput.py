"""Throughput of `balancetrl check` on a 60k-record synthetic xlam+CoT file, single process, and per input format.

    python -m benchmarks.check_throughput [--records 60000] [--cot-words 250] [--memory-records 20000,200000]
                                          [--keep DIR] [--json benchmarks/results/check_throughput.json]
    python -m benchmarks.check_throughput --formats-only [--formats-records 20000] [--repeats 3]
                                          [--json benchmarks/results/check_throughput_formats.json]

Rows look like xlam-function-calling-60k plus a distilled response (`<think>` ~250 words, then a Python call
list, sometimes parallel), with a few percent of defects: leading-space format errors, wrong values, unclosed
CoT, broken JSON lines. Reports (1) records/CPU-s of parse+check+write inside one process (`run_check`) against
the floor measured in the same run (read each line, `json.loads`, `json.dumps`, write: what any pure-Python
checker must do), (2) the wall time of the whole command in a fresh interpreter (imports included), and (3) the
peak RSS of `balancetrl check` in a fresh interpreter at each `--memory-records` size: memory must stay flat as the
input grows (goal: the largest size within 2x of the smallest).

`--formats-records N` (4) writes the same N synthetic conversations in each format that carries a multi-turn tool
conversation — `messages`, `ms_swift`, `llamafactory_v1`, API-Bank rows and SealTool rows (the last two read with a
mapping) — and reports each one's records/CPU-s of `run_check` against `messages` (goal: every format within 1.5x of
its CPU time per record). Each conversation: a request, a turn with CoT and 1-3 calls, their results, a turn with CoT
and an answer, a second request and its calls (the answer calls of the API-Bank/SealTool rows; SealTool's carry a
distilled response: a CoT and the calls in a `<tool_call>` block).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import command_line

WORDS = ["the", "user", "wants", "to", "call", "function", "with", "argument", "value", "so", "I", "should", "check", "which", "tool", "fits", "the", "request", "and", "then", "pass", "city", "unit", "date", "amount", "because", "required", "parameters", "must", "be", "present"]
CITIES = ["Paris", "Zürich, CH", "東京", 'New "York"', "São Paulo", "Oslo"]
# xlam-style parameter types and a value generator for each
PARAM_TYPES = [
    ("str", lambda r: r.choice(CITIES)), ("int", lambda r: r.randint(-5, 500)),
    ("float", lambda r: round(r.uniform(0, 99), 2)), ("bool", lambda r: r.random() < 0.5),
    ("List[str]", lambda r: r.sample(CITIES, 2)), ("Dict[str, int]", lambda r: {"a": r.randint(0, 9)}),
]


def make_tool_pool(rng: random.Random, n: int = 40) -> list[tuple[dict, list]]:
    """`n` xlam tool definitions with 1-5 parameters (some optional) and value generators."""
    pool = []
    for i in range(n):
        params, gens = {}, []
        for j in range(rng.randint(1, 5)):
            type_str, gen = rng.choice(PARAM_TYPES)
            name = f"p{j}_{type_str[:3].lower()}"
            spec = {"description": f"parameter {j} of tool {i}, e.g. {gen(rng)!r}", "type": type_str}
            if j > 0 and rng.random() < 0.4:
                spec["type"] += ", optional"
                spec["default"] = gen(rng)
            else:
                gens.append((name, gen))
            params[name] = spec
        pool.append(({"name": f"tool_{i}", "description": f"Synthetic API number {i}.", "parameters": params}, gens))
    return pool


def _call(tool: tuple[dict, list], rng: random.Random) -> dict:
    return {"name": tool[0]["name"], "arguments": {name: gen(rng) for name, gen in tool[1]}}


def _py(calls: list[dict]) -> str:
    """BFCL/xlam Python-call list; repr() keeps it parseable by ast (True/None, quotes, unicode)."""
    return "[" + ", ".join(c["name"] + "(" + ", ".join(f"{k}={v!r}" for k, v in c["arguments"].items()) + ")"
                           for c in calls) + "]"


def make_file(path: Path, n: int, cot_words: int, seed: int = 0) -> None:
    """Each row offers 1-4 tools drawn from a pool of 40 (so tool lists vary as in xlam), calls 1-3 of them."""
    rng = random.Random(seed)
    pool = make_tool_pool(rng)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            offered = rng.sample(pool, rng.randint(1, 4))
            calls = [_call(rng.choice(offered), rng) for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3))]
            tools = json.dumps([t[0] for t in offered], ensure_ascii=False)
            answers = json.dumps(calls, ensure_ascii=False)
            cot = " ".join(rng.choice(WORDS) for _ in range(rng.randint(cot_words // 2, cot_words * 3 // 2)))
            u = rng.random()
            if 0.02 <= u < 0.05:  # the distilled answer differs from the ground truth: hard
                produced = json.loads(answers)
                produced[0]["name"] = "tool_999"
                block = _py(produced)
            else:
                block = _py(calls)
            if u < 0.02:
                block = "[ " + block[1:]  # the xlam format defect
            response = f"<think>\n{cot}\n</think>\n\n{block}" if not 0.05 <= u < 0.055 else f"<think>\n{cot}"
            if 0.055 <= u < 0.056:
                f.write('{"query": "truncated line", "tools": \n')
                continue
            f.write(json.dumps({"id": i, "query": f"request {i}: " + cot[:80], "tools": tools,
                                "answers": answers, "response": response}, ensure_ascii=False) + "\n")


def _conversations(n: int, cot_words: int, seed: int = 2):
    """`n` conversations as (tools, turns): turns are ("user", text), ("calls", cot, calls), ("results", [texts]),
    ("answer", cot, text); the last turn is a calls turn."""
    rng = random.Random(seed)
    pool = make_tool_pool(rng)

    def cot() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(cot_words // 2, cot_words * 3 // 2)))

    for i in range(n):
        offered = rng.sample(pool, rng.randint(1, 4))
        first = [_call(rng.choice(offered), rng) for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3))]
        last = [_call(rng.choice(offered), rng) for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3))]
        tools = [{"type": "function", "function": {"name": t[0]["name"], "description": t[0]["description"],
                                                   "parameters": _schema(t[0]["parameters"])}} for t in offered]
        yield tools, [("user", f"request {i}: " + cot()[:80]), ("calls", cot(), first),
                      ("results", [json.dumps({"ok": True, "n": j}) for j in range(len(first))]),
                      ("answer", cot(), "Done: " + cot()[:60]), ("user", "and then?"), ("calls", cot(), last)]


def _schema(xlam_params: dict) -> dict:
    """xlam parameters → JSON Schema (the formats compared here carry OpenAI tools)."""
    types = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "List": "array", "Dict": "object"}
    props = {k: {"type": types[v["type"].split("[")[0].split(",")[0]], "description": v["description"]}
             for k, v in xlam_params.items()}
    return {"type": "object", "properties": props,
            "required": [k for k, v in xlam_params.items() if "optional" not in v["type"]]}


def _tc(calls):
    return [{"type": "function", "function": c} for c in calls]


def _as_messages(i, tools, turns):
    out = []
    for t in turns:
        if t[0] == "user":
            out.append({"role": "user", "content": t[1]})
        elif t[0] == "calls":
            out.append({"role": "assistant", "reasoning_content": t[1], "tool_calls": _tc(t[2])})
        elif t[0] == "results":
            out += [{"role": "tool", "content": r} for r in t[1]]
        else:
            out.append({"role": "assistant", "reasoning_content": t[1], "content": t[2]})
    return {"id": str(i), "tools": json.dumps(tools), "messages": out}


def _as_ms_swift(i, tools, turns):
    out = []
    for t in turns:
        if t[0] == "user":
            out.append({"role": "user", "content": t[1]})
        elif t[0] == "calls":
            out.append({"role": "assistant", "content": f"<think>\n{t[1]}\n</think>\n"})
            out += [{"role": "tool_call", "content": json.dumps(c)} for c in t[2]]
        elif t[0] == "results":
            out += [{"role": "tool_response", "content": r} for r in t[1]]
        else:
            out.append({"role": "assistant", "content": f"<think>\n{t[1]}\n</think>\n\n{t[2]}"})
    return {"id": str(i), "tools": json.dumps(tools), "messages": out}


def _as_llamafactory_v1(i, tools, turns):
    def msg(role, *parts):
        return {"role": role, "content": [{"type": k, "value": v} for k, v in parts],
                "loss_weight": 1.0 if role == "assistant" else 0.0}

    out = []
    for t in turns:
        if t[0] == "user":
            out.append(msg("user", ("text", t[1])))
        elif t[0] == "calls":
            out.append(msg("assistant", ("reasoning", t[1]), *[("tool_call", json.dumps(c)) for c in t[2]]))
        elif t[0] == "results":
            out += [msg("tool", ("text", r)) for r in t[1]]
        else:
            out.append(msg("assistant", ("reasoning", t[1]), ("text", t[2])))
    return {"id": str(i), "tools": json.dumps(tools), "messages": out}


def _agent_turns(turns, role, content, user, agent, call_role, result_role, call):
    out = []
    for t in turns[:-1]:
        if t[0] == "user":
            out.append({role: user, content: t[1]})
        elif t[0] == "calls":
            out.append({role: agent, content: f"<think>\n{t[1]}\n</think>\n"})
            out += [{role: call_role, content: call(c)} for c in t[2]]
        elif t[0] == "results":
            out += [{role: result_role, content: r} for r in t[1]]
        else:
            out.append({role: agent, content: f"<think>\n{t[1]}\n</think>\n\n{t[2]}"})
    return out


def _as_api_bank(i, tools, turns):
    query = _agent_turns(turns, "role", "text", "user", "agent", "API", "API-response",
                         lambda c: {"api_name": c["name"], "param_dict": c["arguments"]})
    return {"id": str(i), "query": query, "tools": [t["function"] for t in tools],
            "answers": [{"api_name": c["name"], "param_dict": c["arguments"]} for c in turns[-1][2]]}


def _as_sealtool(i, tools, turns):
    query = _agent_turns(turns, "role", "content", "user", "assistant", "tool_call", "tool",
                         lambda c: json.dumps({"tool": c["name"], "parameters": c["arguments"]}))
    last = turns[-1]
    return {"qid": str(i), "query": query, "tools": json.dumps([t["function"] for t in tools]),
            "answers": [{"tool": c["name"], "parameters": c["arguments"]} for c in last[2]],
            "response": f"<think>\n{last[1]}\n</think>\n\n<tool_call>\n"
                        + "\n".join(json.dumps(c) for c in last[2]) + "\n</tool_call>"}


# the formats compared and their mappings (`None`: auto-detected)
FORMAT_WRITERS = {
    "messages": (_as_messages, None),
    "ms_swift": (_as_ms_swift, None),
    "llamafactory_v1": (_as_llamafactory_v1, None),
    "api_bank (mapping)": (_as_api_bank, {"tags": {"content_tag": "text"}, "calls": {"name": "api_name",
                           "arguments": "param_dict"}, "roles": {"agent": "assistant", "API": "tool_call",
                                                                 "API-response": "tool"}}),
    "sealtool (mapping)": (_as_sealtool, {"columns": {"id": "qid", "response": "response"},
                                          "calls": {"name": "tool", "arguments": "parameters"}}),
}


def format_throughput(root: Path, n: int, cot_words: int, repeats: int) -> dict:
    """records/CPU-s of `run_check` per format on the same `n` conversations (best of `repeats`: on a shared
    machine the fastest run is the least disturbed), and each format's CPU time per record against `messages`."""
    from balancetrl.data.mapping import parse_mapping
    from balancetrl.data.split import run_check

    conversations = list(_conversations(n, cot_words))
    rates, outcomes = {}, {}
    for name, (write, spec) in FORMAT_WRITERS.items():
        src = root / f"formats_{name.split()[0]}.jsonl"
        with open(src, "w", encoding="utf-8") as f:
            for i, (tools, turns) in enumerate(conversations):
                f.write(json.dumps(write(i, tools, turns), ensure_ascii=False) + "\n")
        mapping = parse_mapping(spec) if spec else None
        best = None
        for _ in range(repeats):
            c = time.process_time()
            report = run_check(src, root / "out_formats", progress=False, require_cot=False, mapping=mapping)
            dc = time.process_time() - c
            best = dc if best is None else min(best, dc)
        rates[name] = round(report["total"] / best)
        outcomes[name] = report["outcomes"]
        print(f"  {name:20s} {src.stat().st_size / 2**20:6.1f} MiB  {rates[name]:7,} records/CPU-s  "
              f"{report['outcomes']}")
    ratios = {name: round(rates["messages"] / rate, 2) for name, rate in rates.items()}
    print("  CPU time per record vs messages: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
          + " (goal: <= 1.5x)")
    return {"formats_records": n, "records_per_cpu_s": rates, "cpu_time_vs_messages": ratios, "outcomes": outcomes}


_PEAK_RSS = (
    "import resource, sys; from balancetrl.data.split import run_check; "
    "r = run_check(sys.argv[1], sys.argv[2], progress=False); "
    "print(r['total'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"  # KiB on Linux
)


def peak_rss(src: Path, out: Path) -> tuple[int, float]:
    """(records, peak RSS in MiB) of `run_check` on `src` in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(src), str(out)], check=True, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    total, kib = done.stdout.split()[-2:]
    return int(total), int(kib) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=60_000)
    ap.add_argument("--cot-words", type=int, default=250)
    ap.add_argument("--memory-records", default="20000,200000",
                    help="comma-separated input sizes for the peak-RSS runs ('' skips them)")
    ap.add_argument("--keep", default=None, help="write input/outputs here instead of a temp folder")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--formats-records", type=int, default=20_000,
                    help="conversations per format for the per-format comparison (0 skips it)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per format (the fastest counts)")
    ap.add_argument("--formats-only", action="store_true", help="run the per-format comparison only")
    args = ap.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-check-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.formats_only:
        print(f"per format, {args.formats_records} conversations, CoT ~{args.cot_words} words per turn:")
        results = {"command": command_line("benchmarks.check_throughput", argv),
                   "cot_words": args.cot_words, **format_throughput(root, args.formats_records, args.cot_words,
                                                                    args.repeats)}
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        return 0
    results: dict = {"records": args.records, "cot_words": args.cot_words}
    src = root / "synthetic_xlam_cot.jsonl"
    t = time.perf_counter()
    make_file(src, args.records, args.cot_words)
    print(f"input: {args.records} records, {src.stat().st_size / 2**20:.1f} MiB "
          f"(generated in {time.perf_counter() - t:.1f} s)")

    from balancetrl.data.split import run_check

    # The floor of any pure-Python checker: read each line, json.loads it, json.dumps it back.
    c = time.process_time()
    with open(src, encoding="utf-8") as f_in, open(root / "floor.jsonl", "w") as f_out:
        for line in f_in:
            try:
                f_out.write(json.dumps(json.loads(line)) + "\n")
            except json.JSONDecodeError:
                pass
    dc = time.process_time() - c
    floor = args.records / dc
    print(f"floor (loads + dumps only): CPU {dc:.2f} s = {floor:,.0f} records/CPU-s")

    t, c = time.perf_counter(), time.process_time()
    report = run_check(src, root / "out", progress=False)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    # CPU time too: on a shared 2-core machine wall time mostly measures the neighbours
    print(f"in-process run_check: {report['total']} records in {dt:.2f} s wall = {report['total'] / dt:,.0f} "
          f"records/s; CPU {dc:.2f} s = {report['total'] / dc:,.0f} records/CPU-s")
    print(f"  outcomes {report['outcomes']}, reasons {report['reasons']}, fixed {report['fixed']}")
    rate = report["total"] / dc
    print(f"  check vs floor: {floor / rate:.2f}x the floor's CPU time per record (goal: <= 2x)")
    results.update(floor_records_per_cpu_s=round(floor), check_records_per_cpu_s=round(rate),
                   check_records_per_wall_s=round(report["total"] / dt), ratio_to_floor=round(floor / rate, 2),
                   outcomes=report["outcomes"])

    # the whole command in a fresh interpreter, imports included (CheckCommand as the CLI runs it)
    code = ("import sys; from argparse import ArgumentParser; from balancetrl.commands.check import CheckCommand; "
            "p = ArgumentParser(); s = p.add_subparsers(dest='command'); c = CheckCommand(); c.register(s); "
            "sys.exit(c.run(p.parse_args(sys.argv[1:]), None))")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "check", str(src), "--output-dir", str(root / "out_cli"),
                    "--fix", "--no-progress"], check=True, cwd=Path(__file__).resolve().parents[1])
    results["whole_command_wall_s"] = round(time.perf_counter() - t, 2)
    print(f"whole command (fresh interpreter, --fix): {results['whole_command_wall_s']:.2f} s wall")

    sizes = [int(n) for n in args.memory_records.split(",") if n.strip()]
    rss = {}
    for n in sizes:
        mem_src = root / f"memory_{n}.jsonl"
        make_file(mem_src, n, args.cot_words, seed=1)
        total, mib = peak_rss(mem_src, root / f"out_memory_{n}")
        mem_src.unlink()
        rss[n] = round(mib, 1)
        print(f"peak RSS, {total:,} records: {mib:,.0f} MiB (fresh interpreter, imports included)")
    if len(rss) > 1:
        growth = rss[max(rss)] / rss[min(rss)]
        print(f"  peak RSS at {max(rss):,} / at {min(rss):,} records: {growth:.2f}x (goal: < 2x)")
        results["peak_rss_growth"] = round(growth, 2)
    results["peak_rss_mib"] = rss
    if args.formats_records:
        print(f"per format, {args.formats_records} conversations:")
        results["per_format"] = format_throughput(root, args.formats_records, args.cot_words, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
