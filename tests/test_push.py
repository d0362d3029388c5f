"""The model card's BalanceSFT content and the upload path, against a loopback Hub (HF_ENDPOINT on 127.0.0.1)."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from balancetrl.artifacts.model_card import build_model_card
from balancetrl.artifacts.run_summary import write_summary
from balancetrl.cli import main

SUMMARY = {
    "base_model": "Qwen/Qwen2.5-Coder-7B-Instruct", "dataset": "data/xlam.jsonl",
    "ssb_settings": {"ssb": True, "ssb_lambda_init": 0.7, "ssb_lambda_mode": "learnable", "ssb_lambda_lr": 0.001,
                     "ssb_lambda_min": 0.05, "ssb_lambda_max": 0.95, "cot_start": "<think>", "cot_end": "</think>"},
    "final_lambda": 0.6512, "final_train_loss": 0.8123, "final_eval_loss": None, "global_steps": 12,
    "data": {"base": 350, "hard": 38, "rejected": 12, "train": 350, "hdr_hard": 38},
    "hdr": {"rounds": [{"round": 1, "hard_before": 38, "generated": 114, "gate_rejected": 60, "judged": 54,
                        "accepted": 21, "hard_remaining": 17}],
            "initial_hard": 38, "hard_remaining": 17, "accepted_total": 21, "judge_cost_usd": 0.42},
    "train_seconds": 1.0, "training": {},
}


class FakeHub(BaseHTTPRequestHandler):
    """The three Hub calls `HfApi.create_repo` + `upload_folder` make, recorded."""

    calls: list = []
    files: dict = {}

    def log_message(self, *args):
        pass

    def _reply(self, payload, status=200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.calls.append(("POST", self.path, self.headers.get("authorization")))
        if self.path == "/api/repos/create":
            req = json.loads(data)
            return self._reply({"url": f"http://{self.headers['host']}/{req['organization']}/{req['name']}"
                                if req.get("organization") else f"http://{self.headers['host']}/{req['name']}"})
        if self.path == "/api/validate-yaml":  # the Hub checks README.md's metadata before the commit
            return self._reply({"errors": [], "warnings": []})
        if "/preupload/" in self.path:
            files = json.loads(data)["files"]
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                          for f in files]})
        if "/commit/" in self.path:
            for line in data.decode().splitlines():
                op = json.loads(line)
                if op["key"] == "file":
                    FakeHub.files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            repo = self.path.split("/api/models/")[1].split("/commit/")[0]
            return self._reply({"commitUrl": f"http://{self.headers['host']}/{repo}/commit/{'a' * 40}", "commitOid": "a" * 40, "pullRequestUrl": None})
        self._reply({"error": f"unexpected {self.path}"}, 404)

    def do_GET(self):
        self.calls.append(("GET", self.path, None))
        self._reply({"error": f"unexpected {self.path}"}, 404)


@pytest.fixture
def hub(monkeypatch):
    FakeHub.calls, FakeHub.files = [], {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    # conftest sets HF_HUB_OFFLINE (no hub downloads); huggingface_hub read it at import. The only endpoint this
    # test can reach is the loopback server above.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield FakeHub
    server.shutdown()


def test_card_records_balancesft_run(tmp_path):
    text = str(build_model_card(tmp_path / "run", SUMMARY, hub_model_id="me/run"))
    assert "base_model: Qwen/Qwen2.5-Coder-7B-Instruct" in text and "balance-sft" in text  # TRL's card metadata
    assert "## BalanceSFT" in text and "| **final λ** | 0.6512 |" in text and "| `ssb_lambda_init` | 0.7 |" in text
    assert "| 350 | 38 | 12 | 350 | 38 |" in text  # base, hard, rejected, trained on, given to HDR
    assert "| 1 | 38 | 114 | 60 | 54 | 21 | 17 |" in text and "21 of 38 hard samples accepted" in text
    assert "@inproceedings{hao2026balancesft" in text and "pages     = {18094--18112}" in text
    assert "fine-tuned version of [Qwen/Qwen2.5-Coder-7B-Instruct](https://huggingface.co/Qwen/Qwen2.5-Coder-7B-Instruct)" in text
    assert 'model_id = "me/run"' in text and "arxiv" not in text.lower() and "FunReason" not in text
    assert text.index("## BalanceSFT") < text.index("## Citations")


def test_push_uploads_model_and_card_to_the_endpoint(tmp_path, hub, tokenizer):
    from conftest import build_tiny_model

    run = tmp_path / "run"
    build_tiny_model(tokenizer).save_pretrained(run)
    tokenizer.save_pretrained(run)
    write_summary(run, SUMMARY)
    (run / "checkpoint-5").mkdir()
    (run / "checkpoint-5" / "optimizer.pt").write_bytes(b"state")
    # a dummy credential for the loopback server, not a key
    assert main(["push", str(run), "--hub-model-id", "me/tiny-balance", "--token", "loopback-dummy"]) == 0
    posts = [p for m, p, _ in hub.calls if m == "POST"]
    assert posts[0] == "/api/repos/create" and "/api/validate-yaml" in posts and any(p.startswith("/api/models/me/tiny-balance/commit/") for p in posts)
    assert all(auth == "Bearer loopback-dummy" for m, _, auth in hub.calls if m == "POST")
    assert {"model.safetensors", "config.json", "README.md", "balance_sft_summary.json"} <= set(hub.files)
    assert not any(p.startswith("checkpoint-") for p in hub.files)  # training state stays local
    card = hub.files["README.md"].decode()
    assert "me/tiny-balance" in card and "| **final λ** | 0.6512 |" in card


def test_push_refuses_a_folder_that_is_not_a_run(tmp_path, hub, capsys):
    assert main(["push", str(tmp_path), "--hub-model-id", "me/x", "--token", "loopback-dummy"]) == 2
    assert "balance_sft_summary.json" in capsys.readouterr().err and not hub.calls
