"""A loopback OpenAI-compatible chat-completions server for judge tests and benchmarks.

Real HTTP on 127.0.0.1 so LiteLLM runs its whole client path (serialisation, timeouts,
HTTP errors, usage -> cost), with nothing mocked. Threaded because latency is simulated
with ``time.sleep``: every in-flight request needs its own thread to overlap.

Scripting is per model name: a *script* is a callable ``(Request) -> Reply``. ``Request``
tells it the prompt, a hash of it and how many earlier requests carried the same
(model, prompt) -- so "fail the first attempt, answer the second" is one line.

    with JudgeServer({"gpt-4o": lambda r: Reply(score=0.9)}, latency=0.2) as srv:
        srv.api_base   # "http://127.0.0.1:PORT/v1"
        srv.log        # [LoggedRequest(model, prompt_hash, attempt, t, auth), ...]
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Request:
    model: str
    prompt: str  # all message contents joined: what the judge was shown
    prompt_hash: str
    attempt: int  # 0 for the first request with this (model, prompt), 1 for the next, ...
    authorization: str | None
    body: dict


@dataclass
class Reply:
    """What the server does with one request. Defaults: a valid verdict at once."""

    score: float | str | None = 1.0
    reason: str = "ok"
    content: str | None = None  # raw assistant text; overrides score/reason (non-JSON, fenced, ...)
    status: int = 200
    error_body: str | None = None  # body for status != 200
    delay: float | None = None  # seconds before answering; None -> the server's latency
    raw_body: str | None = None  # whole HTTP body verbatim (malformed JSON response)
    prompt_tokens: int | None = None  # None -> a word count of the prompt
    completion_tokens: int = 20
    headers: dict | None = None  # extra response headers (e.g. Retry-After on a 429)

    def assistant_text(self) -> str:
        if self.content is not None:
            return self.content
        return json.dumps({"score": self.score, "reason": self.reason})


Script = Callable[[Request], Reply]


@dataclass
class LoggedRequest:
    model: str
    prompt_hash: str
    attempt: int
    t: float
    authorization: str | None
    status: int


def prompt_of(body: dict) -> str:
    parts = []
    for m in body.get("messages", []):
        c = m.get("content")
        if isinstance(c, list):  # content parts
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        parts.append(f"{m.get('role')}: {c}")
    return "\n".join(parts)


def _strip_provider(model: str) -> str:
    # LiteLLM sends the bare name ("gpt-4o") for "openai/gpt-4o"; scripts may use either.
    return model.split("/", 1)[1] if "/" in model else model


class JudgeServer:
    def __init__(self, scripts: dict[str, Script] | None = None, latency: float = 0.0, default: Script | None = None):
        self.scripts = dict(scripts or {})
        self.default = default
        self.latency = latency
        self.log: list[LoggedRequest] = []
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0  # the most requests handled at once: checks a client's concurrency limit
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> JudgeServer:
        server = self

        class Handler(_Handler):
            owner = server

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            # The default backlog (5) resets connections when a client opens dozens at once.
            request_queue_size = 1024

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- counting helpers for tests ---------------------------------------------------
    def count(self, model: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.log if model is None or r.model == _strip_provider(model))

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()
            self.max_inflight = self.inflight

    # -- request handling (called from handler threads) -----------------------------------
    def _script_for(self, model: str) -> Script:
        s = self.scripts.get(model) or self.scripts.get(_strip_provider(model)) or self.default
        return s or (lambda r: Reply())

    def _register(self, body: dict, auth: str | None) -> Request:
        model = _strip_provider(str(body.get("model", "")))
        prompt = prompt_of(body)
        h = hashlib.sha256(prompt.encode()).hexdigest()[:16]
        with self._lock:
            attempt = self._seen.get((model, h), 0)
            self._seen[(model, h)] = attempt + 1
        return Request(model, prompt, h, attempt, auth, body)


class _Handler(BaseHTTPRequestHandler):
    owner: JudgeServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections as real APIs allow
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms on Linux) -- a stall real APIs do not have, so turn it off.
    disable_nagle_algorithm = True

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: str, ctype: str = "application/json", headers: dict | None = None) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer

    def do_GET(self):
        # Counters for a server running in another process (the benchmark), where .log is out of reach.
        if self.path.rstrip("/") != "/_stats":
            return self._send(404, "{}")
        srv = self.owner
        with srv._lock:
            stats = {"requests": len(srv.log), "max_inflight": srv.max_inflight}
        self._send(200, json.dumps(stats))

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("chat/completions"):
            return self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
        try:
            body = json.loads(raw)
        except ValueError:
            return self._send(400, json.dumps({"error": {"message": "bad json"}}))
        srv = self.owner
        req = srv._register(body, self.headers.get("Authorization"))
        reply = srv._script_for(req.model)(req)
        with srv._lock:
            srv.log.append(LoggedRequest(req.model, req.prompt_hash, req.attempt, time.time(), req.authorization, reply.status))
            srv.inflight += 1
            srv.max_inflight = max(srv.max_inflight, srv.inflight)
        try:
            time.sleep(srv.latency if reply.delay is None else reply.delay)
        finally:
            with srv._lock:
                srv.inflight -= 1
        if reply.status != 200:
            msg = reply.error_body or json.dumps({"error": {"message": "injected failure", "type": "server_error"}})
            return self._send(reply.status, msg, headers=reply.headers)
        if reply.raw_body is not None:
            return self._send(200, reply.raw_body)
        ptoks = reply.prompt_tokens if reply.prompt_tokens is not None else len(req.prompt.split())
        out = {
            "id": f"chatcmpl-{req.prompt_hash}-{req.attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.assistant_text()},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": ptoks,
                "completion_tokens": reply.completion_tokens,
                "total_tokens": ptoks + reply.completion_tokens,
            },
        }
        self._send(200, json.dumps(out))


def closed_port_base() -> str:
    """An api_base on which nothing listens: a judge that is down for the whole run."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound then closed: connections are refused
    return f"http://127.0.0.1:{port}/v1"


try:  # a pytest fixture for tests that prefer it; the benchmark imports this file without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:

    @pytest.fixture
    def loopback_judges():
        """Factory fixture: ``srv = loopback_judges({"gpt-4o": script}, latency=0.1)``; all stop at teardown."""
        started: list[JudgeServer] = []

        def make(scripts: dict[str, Script] | None = None, latency: float = 0.0, default: Script | None = None):
            started.append(JudgeServer(scripts, latency=latency, default=default).start())
            return started[-1]

        yield make
        for srv in started:
            srv.stop()


__all__ = ["JudgeServer", "LoggedRequest", "Reply", "Request", "Script", "closed_port_base", "loopback_judges", "prompt_of"]
