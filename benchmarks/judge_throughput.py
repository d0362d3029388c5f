"""Judge-panel throughput: N judgments x 3 judges against a loopback server with fixed latency.

    python -m benchmarks.judge_throughput --items 1000 --latency 0.2 --concurrency 32 64

Goal: wall time within 1.2x of the ideal ``calls * latency / concurrency`` (the time the
latency alone costs with every slot busy), and a rerun served 100 % from the disk cache.
The server runs in its own process so its threads do not share the panel's GIL; what is
left over the ideal is the client's own overhead (LiteLLM + asyncio) on this machine:
``client_cpu_ms_per_call`` is that cost, and ``concurrency * cpu_per_call`` must stay
well under ``latency`` (one core) for the ideal to be reachable at all.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from balancetrl.hdr.judges import JudgeItem, JudgePanel
from tests.judge_server import JudgeServer, Reply

KEY_ENV = "BALANCETRL_BENCH_JUDGE_KEY"
JUDGES = ["gpt-4o", "gpt-4o-mini", "gpt-4.1-mini"]  # names LiteLLM prices offline


def verdict(r) -> Reply:
    return Reply(score=0.9 if "GOOD" in r.prompt else 0.2, reason="benchmark rule")


def serve(latency: float, q) -> None:
    with JudgeServer({m: verdict for m in JUDGES}, latency=latency) as srv:
        q.put(srv.port)
        while True:
            time.sleep(3600)


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as r:
        return json.loads(r.read())


def items(n: int) -> list[JudgeItem]:
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a record up",
                                               "parameters": {"type": "object", "properties": {"id": {"type": "integer"}},
                                                              "required": ["id"]}}}]
    return [JudgeItem(sample_id=f"b{i}", tools=tools, messages=[{"role": "user", "content": f"Find record {i}."}],
                      reference=[[{"name": "lookup", "arguments": {"id": i}}]],
                      candidate={"reasoning": f"Record {i} is wanted. {'GOOD' if i % 4 else 'BAD'}",
                                 "calls": [{"name": "lookup", "arguments": {"id": i}}]})
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    os.environ[KEY_ENV] = "sk-bench-not-a-real-key"
    q = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=serve, args=(args.latency, q), daemon=True)
    proc.start()
    port = q.get(timeout=30)
    base = f"http://127.0.0.1:{port}/v1"
    work = items(args.items)
    rows = []
    try:
        # warm-up outside the timing: LiteLLM's lazy imports on the first request
        JudgePanel([{"model": "openai/gpt-4o", "api_base": base, "api_key_env": KEY_ENV}]).judge(items(1))
        for conc in args.concurrency:
            with tempfile.TemporaryDirectory() as cache:
                panel = JudgePanel([{"model": f"openai/{m}", "api_base": base, "api_key_env": KEY_ENV} for m in JUDGES],
                                   threshold=0.5, concurrency=conc, timeout=30, retries=2, cache_dir=cache)
                before = stats(port)["requests"]
                load = os.getloadavg()[0]
                t0, c0 = time.perf_counter(), time.process_time()
                res = panel.judge(work)
                cold, cpu = time.perf_counter() - t0, time.process_time() - c0
                mid = stats(port)
                t0 = time.perf_counter()
                panel.judge(work)
                warm = time.perf_counter() - t0
                after = stats(port)["requests"]
                t1, t2 = panel.history
                calls = len(work) * len(JUDGES)
                ideal = calls * args.latency / conc
                row = {"concurrency": conc, "calls": calls, "server_requests": mid["requests"] - before,
                       "server_max_inflight": mid["max_inflight"], "wall_s": round(cold, 2), "ideal_s": round(ideal, 2),
                       "ratio": round(cold / ideal, 3), "client_cpu_ms_per_call": round(1000 * cpu / calls, 2),
                       "loadavg_1m_before": round(load, 2), "abstained": t1.total.abstained,
                       "passed_items": sum(r.passed for r in res), "cost_usd": round(t1.total.cost_usd, 4),
                       "prompt_tokens": t1.total.prompt_tokens, "completion_tokens": t1.total.completion_tokens,
                       "rerun_wall_s": round(warm, 2), "rerun_server_requests": after - mid["requests"],
                       "rerun_cache_hit_rate": t2.total.cache_hits / t2.total.verdicts}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        proc.terminate()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
