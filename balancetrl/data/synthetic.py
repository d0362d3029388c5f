"""Deterministic synthetic function-calling records in the canonical format (docs/data.md, `data/record.py`).

Written for this project so that the CPU demo, the tests and the checks have data with a
known ground truth and no hub download. Kinds follow BFCL's split: ``simple`` (one tool, one
call), ``multiple`` (choose among 2-4 tools), ``parallel`` (2-3 calls in one turn),
``irrelevance`` (no fitting tool: plain-text refusal) and ``multi_turn`` (call → tool result →
final answer). A seeded fraction of records is deliberately *hard* (the shipped call is wrong
w.r.t. ``reference``) or *rejected* (structurally broken). Nothing inside a record says so —
the Base Quality / Answer Checks must find it; `generate_labeled` returns the truth beside it.

Regenerate the shipped demo files bit-identically with ``python -m balancetrl.data.synthetic --demo``.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
from pathlib import Path

from balancetrl.data.synthetic_catalog import TOOLS, TOOLS_BY_NAME, UNIT_PAIRS, ToolSpec

KINDS = {"simple": 0.35, "multiple": 0.25, "parallel": 0.20, "irrelevance": 0.12, "multi_turn": 0.08}
HARD_REASONS = ("wrong_value", "missing_required", "wrong_function")
REJECT_REASONS = ("unclosed_think", "empty_query", "non_json_arguments", "no_assistant_turn")
DEMO_DIR = Path(__file__).parent / "demo"
DEMO_FILES = {"train": (400, 1234, 0.10, 0.03), "eval": (100, 4321, 0.0, 0.0)}  # n, seed, hard, reject


# ---------------------------------------------------------------- arguments and their wording
def _draw(pool, rng):
    return pool(rng) if callable(pool) else rng.choice(pool)


def sample_args(spec: ToolSpec, rng: random.Random, optional_p: float = 0.4) -> dict:
    """Required params always, each optional one with probability ``optional_p``."""
    names = list(spec.required) + [p for p in spec.params if p not in spec.required and rng.random() < optional_p]
    args: dict = {}
    if spec.name == "convert_units":  # the two units must be convertible into each other
        args["from_unit"], args["to_unit"] = rng.choice(UNIT_PAIRS)
    for p in spec.params:  # schema order, so the JSON of a call reads naturally
        if p not in names or p in args:
            continue
        for _ in range(20):  # origin != destination, from != to currency, ...
            value = _draw(spec.slots[p], rng)
            clash = any(spec.slots[q] is spec.slots[p] and args[q] == value for q in args)
            if not clash:
                break
        args[p] = value
    return {p: args[p] for p in spec.params if p in args}


def _say(value) -> str:
    if isinstance(value, list):
        words = [_say(v) for v in value]
        return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return str(value)


def _fmt(template: str, values: dict) -> str:
    return template.format(**{k: _say(v) for k, v in values.items()})


def write_query(spec: ToolSpec, args: dict, rng: random.Random) -> str:
    parts = [_fmt(rng.choice(spec.queries), args)]
    parts += [_fmt(rng.choice(spec.optional[p]), args) for p in spec.optional if p in args]
    return " ".join(parts)


def _call(name: str, args: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


# ---------------------------------------------------------------- chain of thought
def _arg_sentence(name: str, args: dict, rng: random.Random, lead: str = "") -> str:
    pairs = [f"{k} = {json.dumps(v)}" for k, v in args.items()]
    if not pairs:  # only after a missing_required corruption
        return f"{lead}I call {name} without arguments."
    listed = pairs[0] if len(pairs) == 1 else ", ".join(pairs[:-1]) + " and " + pairs[-1]
    body = rng.choice([f"I call {name} with {listed}.", f"the arguments for {name} are {listed}.",
                       f"from the query, {name} gets {listed}."])
    return lead + body if lead else body[0].upper() + body[1:]


def intent_of(calls: list[dict]) -> str:
    """What the user asked for, phrased from the *correct* calls (a hard record's CoT still knows the request)."""
    parts = [_fmt(TOOLS_BY_NAME[c["function"]["name"]].intent, c["function"]["arguments"]) for c in calls]
    return parts[0] + "".join(f", and also to {p}" for p in parts[1:])


def write_reasoning(intent: str, shipped: list[dict], offered: list[str], rng: random.Random) -> str:
    """2-6 plain sentences: the request, the tool choice, the argument values, a wrap-up."""
    s = [rng.choice([f"The user wants to {intent}.", f"The request is to {intent}.", f"The user is asking me to {intent}."])]
    names = [c["function"]["name"] for c in shipped]
    others = [t for t in offered if t not in names]
    if len(shipped) > 1:
        s.append(f"There are {len(shipped)} separate requests here, so I will make {len(shipped)} calls in parallel.")
    elif others:
        verb = "is" if len(others) == 1 else "are"
        s.append(rng.choice([f"Of the available tools, {names[0]} fits; {', '.join(others)} would not help.",
                             f"{names[0]} matches this request, while {', '.join(others)} {verb} unrelated."]))
    else:
        s.append(rng.choice([f"The {names[0]} tool does exactly this.", f"{names[0]} is the right function here."]))
    ordinals = ["First, ", "Second, ", "Third, "]
    for i, call in enumerate(shipped):
        s.append(_arg_sentence(call["function"]["name"], call["function"]["arguments"], rng,
                               ordinals[i] if len(shipped) > 1 else ""))
    if len(shipped) == 1:
        spec = TOOLS_BY_NAME.get(names[0])
        args = shipped[0]["function"]["arguments"]
        used = [p for p in args if spec and p not in spec.required]
        if used:
            s.append(f"The user also specified {' and '.join(used)}, so I include {'them' if len(used) > 1 else 'it'}.")
        elif spec and len(spec.params) > len(spec.required) and rng.random() < 0.5:
            s.append("No optional parameters were mentioned, so I leave them out.")
    return " ".join(s)


# ---------------------------------------------------------------- one record per kind
def _tools(specs: list[ToolSpec], rng: random.Random) -> list[dict]:
    specs = list(specs)
    rng.shuffle(specs)
    return [s.schema() for s in specs]


def _distractors(exclude: list[ToolSpec], k: int, rng: random.Random) -> list[ToolSpec]:
    return rng.sample([t for t in TOOLS if t not in exclude], k)


def _calling_record(kind: str, rng: random.Random) -> dict:
    if kind == "parallel":
        first = rng.choice(TOOLS)
        if rng.random() < 0.5:  # same function, different arguments ("weather in Paris and Oslo")
            specs = [first] * rng.choice([2, 2, 3])
        else:
            specs = [first] + _distractors([first], rng.choice([1, 2]), rng)
        offered = list(dict.fromkeys(specs)) + _distractors(specs, rng.choice([0, 1]), rng)
    else:
        specs = [rng.choice(TOOLS)]
        extra = rng.randint(1, 3) if kind == "multiple" else 0
        offered = specs + _distractors(specs, extra, rng)
    calls, queries = [], []
    for spec in specs:
        for _ in range(20):  # parallel calls of one function must differ
            args = sample_args(spec, rng)
            if _call(spec.name, args) not in calls:
                break
        calls.append(_call(spec.name, args))
        queries.append(write_query(spec, args, rng))
    joiners = [" Also, ", " And ", " Then "]
    query = queries[0] + "".join(rng.choice(joiners) + q[0].lower() + q[1:] for q in queries[1:])
    return {"specs": specs, "offered": offered, "calls": calls, "query": query}


def _refusal(rng: random.Random) -> dict:
    target = rng.choice(TOOLS)
    offered = _distractors([target], rng.randint(1, 3), rng)
    args = sample_args(target, rng)
    intent = _fmt(target.intent, args)
    names = ", ".join(t.name for t in offered)
    reasoning = " ".join([
        f"The user wants to {intent}.",
        f"The available tools are {names}, and none of them can do that.",
        rng.choice(["Calling one of them with made-up arguments would be wrong, so I will not call a tool.",
                    "I should not force a call that does not fit, so I will answer in plain text."]),
    ])
    covers = "; ".join(t.description.rstrip(".").lower() for t in offered)
    content = f"Sorry, I can't {intent} with the tools I have. They only cover: {covers}."
    return {"offered": offered, "query": write_query(target, args, rng), "reasoning": reasoning, "content": content}


def _record(rid: str, kind: str, rng: random.Random) -> dict:
    if kind == "irrelevance":
        r = _refusal(rng)
        return {"id": rid, "tools": _tools(r["offered"], rng),
                "messages": [{"role": "user", "content": r["query"]},
                             {"role": "assistant", "reasoning_content": r["reasoning"], "content": r["content"]}],
                "reference": [[]]}
    if kind == "multi_turn":
        spec = rng.choice([t for t in TOOLS if t.result])
        c = _calling_record("multiple" if rng.random() < 0.5 else "simple", rng)
        args = sample_args(spec, rng)
        c.update(specs=[spec], calls=[_call(spec.name, args)], query=write_query(spec, args, rng),
                 offered=[spec] + [t for t in c["offered"][1:] if t is not spec])
    else:
        c = _calling_record(kind, rng)
    turn = {"role": "assistant",
            "reasoning_content": write_reasoning(intent_of(c["calls"]), c["calls"], [t.name for t in c["offered"]], rng),
            "tool_calls": c["calls"]}
    record = {"id": rid, "tools": _tools(c["offered"], rng),
              "messages": [{"role": "user", "content": c["query"]}, turn],
              "reference": [[copy.deepcopy(call["function"]) for call in c["calls"]]]}
    if kind == "multi_turn":
        result = spec.result(args, rng)
        record["messages"] += [
            {"role": "tool", "name": spec.name, "content": json.dumps(result)},
            {"role": "assistant", "reasoning_content": rng.choice([
                f"The {spec.name} call returned {json.dumps(result)}. I can now answer the user directly.",
                f"I have the result from {spec.name}. No further call is needed, so I summarise it."]),
             "content": _fmt(spec.answer, {**args, **result})}]
        record["reference"].append([])
    return record


# ---------------------------------------------------------------- hard and rejected variants
def make_hard(record: dict, rng: random.Random) -> str:
    """Make the first assistant call wrong (reference untouched); CoT rewritten to match. Returns the reason."""
    turn = record["messages"][1]
    calls = turn["tool_calls"]
    intent = intent_of(calls)
    i = rng.randrange(len(calls))
    fn = calls[i]["function"]
    spec = TOOLS_BY_NAME[fn["name"]]
    offered = [t["function"]["name"] for t in record["tools"]]
    reasons = ["wrong_value", "missing_required"] + (["wrong_function"] if len(offered) > 1 else [])
    reason = rng.choice(reasons)
    if reason == "wrong_function":
        called = {c["function"]["name"] for c in calls}
        choices = [n for n in offered if n not in called] or [n for n in offered if n != fn["name"]]
        other = TOOLS_BY_NAME[rng.choice(choices)]
        calls[i] = _call(other.name, sample_args(other, rng, optional_p=0.0))
    elif reason == "missing_required":
        del fn["arguments"][rng.choice(spec.required)]
    else:
        p = rng.choice(list(fn["arguments"]))
        old = fn["arguments"][p]
        pool = spec.slots[p] or spec.params[p].get("enum")
        for _ in range(50):
            new = (not old) if isinstance(old, bool) else _draw(pool, rng)
            if new != old:
                break
        fn["arguments"][p] = new if new != old else (old + 1 if isinstance(old, (int, float)) else str(old) + "x")
    turn["reasoning_content"] = write_reasoning(intent, calls, offered, rng)
    return reason


def make_reject(record: dict, rng: random.Random) -> str:
    """Break the record so a Base Quality Check must drop it. Returns the reason."""
    reason = rng.choice(REJECT_REASONS)
    msgs = record["messages"]
    if reason == "unclosed_think":  # a truncated generation: opening tag leaked into the CoT
        text = msgs[1]["reasoning_content"]
        msgs[1]["reasoning_content"] = "<think>\n" + text[: max(20, len(text) // 2)]
    elif reason == "empty_query":
        msgs[0]["content"] = rng.choice(["", "   "])
    elif reason == "non_json_arguments":
        calls = msgs[1].get("tool_calls")
        if not calls:  # a refusal has no call: give it one with broken arguments
            calls = msgs[1]["tool_calls"] = [_call(record["tools"][0]["function"]["name"], {})]
            msgs[1].pop("content", None)
        args = calls[0]["function"]["arguments"]
        calls[0]["function"]["arguments"] = rng.choice([
            json.dumps(args)[:-1] + ",",  # truncated JSON
            ", ".join(f"{k}={v!r}" for k, v in args.items()) or "city=",  # python kwargs, not JSON
        ])
    else:
        record["messages"] = [m for m in msgs if m["role"] != "assistant"][:1]
    return reason


# ---------------------------------------------------------------- public entry points
def _counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    raw = {k: n * f for k, f in fractions.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: counts[k] - raw[k])[: n - sum(counts.values())]:
        counts[k] += 1  # largest remainder, so proportions are exact up to rounding
    return counts


def approx_tokens(record: dict) -> int:
    """Rough SmolLM2 token count of the record rendered with the Qwen3 tool template.

    No tokenizer here (the generator must stay dependency-free and fast). A least-squares fit on
    300 records against the real GGUF tokenizer gave: ~86 tokens of template boilerplate, schemas
    at 3.3 characters per token, prose at 4.0, call JSON at 1.6 (digits split one per token),
    ~21 per message; residual std ~20 tokens.
    """
    tools = sum(len(json.dumps(t)) for t in record["tools"])
    prose = sum(len(m.get("content") or "") + len(m.get("reasoning_content") or "") for m in record["messages"])
    calls = sum(len(json.dumps(c["function"])) for m in record["messages"] for c in m.get("tool_calls") or [])
    return int(86 + tools / 3.27 + prose / 3.99 + calls / 1.59 + 21 * len(record["messages"]))


def generate_labeled(n: int, seed: int, hard_fraction: float = 0.10, reject_fraction: float = 0.03,
                     id_prefix: str = "syn", max_tokens: int = 450) -> tuple[list[dict], dict[str, dict]]:
    """Records plus the truth about them: ``{id: {"kind", "status": base|hard|rejected, "reason"}}``.

    ``max_tokens`` bounds `approx_tokens` of each record (before a hard/reject edit), so that
    prompt + answer stays under ~512 SmolLM2 tokens with the tool schemas included.
    """
    rng = random.Random(seed)
    kinds = [k for k, c in _counts(n, KINDS).items() for _ in range(c)]
    rng.shuffle(kinds)
    n_hard, n_reject = round(n * hard_fraction), round(n * reject_fraction)
    callers = [i for i, k in enumerate(kinds) if k != "irrelevance"]
    if n_hard > len(callers) or n_hard + n_reject > n:
        raise ValueError("hard_fraction/reject_fraction too large for n")
    hard = set(rng.sample(callers, n_hard))
    reject = set(rng.sample([i for i in range(n) if i not in hard], n_reject))
    records, labels = [], {}
    for i, kind in enumerate(kinds):
        rid = f"{id_prefix}-{seed}-{i:05d}"
        rec_rng = random.Random(f"{seed}/{i}")  # per record: changing one record's code path spares the rest
        for _ in range(50):  # redraw (same stream, so still deterministic) until it fits the token budget
            record = _record(rid, kind, rec_rng)
            if approx_tokens(record) <= max_tokens:
                break
        status, reason = "base", None
        if i in hard:
            status, reason = "hard", make_hard(record, rec_rng)
        elif i in reject:
            status, reason = "rejected", make_reject(record, rec_rng)
        records.append(record)
        labels[rid] = {"kind": kind, "status": status, "reason": reason}
    return records, labels


def generate_records(n: int, seed: int, hard_fraction: float = 0.10, reject_fraction: float = 0.03,
                     max_tokens: int = 450) -> list[dict]:
    """``n`` canonical records, identical for identical arguments (see `generate_labeled`)."""
    return generate_labeled(n, seed, hard_fraction, reject_fraction, max_tokens=max_tokens)[0]


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")


def write_demo(directory: str | Path = DEMO_DIR) -> list[Path]:
    """(Re)write demo/{train,eval}.jsonl and their ``*.labels.jsonl`` truth files."""
    written = []
    for split, (n, seed, hard, reject) in DEMO_FILES.items():
        records, labels = generate_labeled(n, seed, hard, reject)
        for name, rows in ((f"{split}.jsonl", records), (f"{split}.labels.jsonl", [{"id": k, **v} for k, v in labels.items()])):
            write_jsonl(rows, Path(directory) / name)
            written.append(Path(directory) / name)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", action="store_true", help="rewrite the shipped demo files")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hard-fraction", type=float, default=0.10)
    ap.add_argument("--reject-fraction", type=float, default=0.03)
    ap.add_argument("--out", help="records .jsonl; the labels go next to it as <stem>.labels.jsonl")
    a = ap.parse_args(argv)
    if a.demo:
        for p in write_demo():
            print(p)
        return
    if not a.out:
        ap.error("--out is required unless --demo")
    records, labels = generate_labeled(a.n, a.seed, a.hard_fraction, a.reject_fraction)
    out = Path(a.out)
    write_jsonl(records, out)
    write_jsonl([{"id": k, **v} for k, v in labels.items()], out.with_name(out.stem + ".labels.jsonl"))
    print(out)


if __name__ == "__main__":
    main()
