"""The generation journal: a killed greedy run resumes with the same output, and nothing replays onto other weights."""

import copy
import json

import pytest
import torch

from balancetrl.generation import GenerationJournal, TransformersGeneration, render_prompts, weights_fingerprint
from balancetrl.models import load_model
from conftest import build_tiny_model

PROMPTS = [[{"role": "user", "content": f"what is the weather in city {i}" + " paris" * i}] for i in range(5)]


class Killed(RuntimeError):
    pass


def _kill_after(backend, batches: int) -> list[int]:
    """Make `backend` raise when it starts generating batch `batches + 1` (a kill mid-run); returns the call log."""
    calls, generate = [], backend._generate_batch

    def counted(*args, **kwargs):
        if len(calls) == batches:
            raise Killed
        calls.append(len(args[1]))
        return generate(*args, **kwargs)

    backend._generate_batch = counted
    return calls


def _prompt_ids(tokenizer):
    return render_prompts(tokenizer, PROMPTS, [None] * len(PROMPTS))


def test_a_killed_run_resumes_at_its_batch_with_the_same_output(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer)
    ids = _prompt_ids(tokenizer)
    kwargs = {"max_new_tokens": 8}
    reference = TransformersGeneration(model, tokenizer, batch_size=2, sort_by_length=True).complete(ids, **kwargs)

    path, fp = tmp_path / "journal.jsonl", weights_fingerprint(model)
    first = TransformersGeneration(model, tokenizer, batch_size=2, sort_by_length=True,
                                   journal=GenerationJournal(path, fp))
    calls = _kill_after(first, 2)
    with pytest.raises(Killed):
        first.complete(ids, **kwargs)
    assert calls == [2, 2] and len(path.read_text().splitlines()) == 3  # header + the two finished batches

    journal = GenerationJournal(path, fp)
    again = TransformersGeneration(model, tokenizer, batch_size=2, sort_by_length=True, journal=journal)
    calls = _kill_after(again, 99)
    resumed = again.complete(ids, **kwargs)
    assert calls == [1]  # only the last batch (5 prompts in batches of 2) is generated
    assert [[c.text for c in row] for row in resumed] == [[c.text for c in row] for row in reference]
    assert [[c.completion_tokens for c in row] for row in resumed] == [
        [c.completion_tokens for c in row] for row in reference]
    assert journal.summary()["replayed_batches"] == 2 and journal.summary()["generated_batches"] == 1
    assert journal.summary()["replayed_seconds"] > 0

    # A third run replays everything and generates nothing.
    third = TransformersGeneration(model, tokenizer, batch_size=2, sort_by_length=True,
                                   journal=GenerationJournal(path, fp))
    calls = _kill_after(third, 0)  # any generation would raise
    assert third.complete(ids, **kwargs) == resumed and calls == []

    # A generation setting the model carries is part of the key: a repetition penalty replays nothing.
    model.generation_config.repetition_penalty = 1.3
    penalised = TransformersGeneration(model, tokenizer, batch_size=2, sort_by_length=True,
                                       journal=GenerationJournal(path, fp))
    calls = _kill_after(penalised, 99)
    penalised.complete(ids, **kwargs)
    assert calls == [2, 2, 1]
    model.generation_config.repetition_penalty = 1.0

    # Another batch size forms other batches: nothing of this journal applies (keys are the batches' prompts).
    other = TransformersGeneration(model, tokenizer, batch_size=3, sort_by_length=True,
                                   journal=GenerationJournal(path, fp))
    calls = _kill_after(other, 99)
    other.complete(ids, **kwargs)
    assert calls == [3, 2]


def test_a_torn_last_line_is_dropped_and_the_journal_goes_on(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer)
    path, fp = tmp_path / "journal.jsonl", weights_fingerprint(model)
    ids = _prompt_ids(tokenizer)
    backend = TransformersGeneration(model, tokenizer, batch_size=2, journal=GenerationJournal(path, fp))
    with pytest.raises(Killed):
        _kill_after(backend, 1)
        backend.complete(ids, max_new_tokens=4)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"key": "abc", "seconds": 1.0, "rows": [[{"te')  # killed while writing a batch

    journal = GenerationJournal(path, fp)
    assert len(journal.batches) == 1 and path.read_bytes() == whole
    resumed = TransformersGeneration(model, tokenizer, batch_size=2, journal=journal).complete(ids, max_new_tokens=4)
    assert journal.replayed["batches"] == 1 and journal.written == 2 and len(resumed) == 5
    assert [json.loads(line) for line in path.read_text().splitlines()][0]["fingerprint"] == fp

    # An empty file (killed before its header) starts a journal; a line broken in the middle is an error.
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert GenerationJournal(tmp_path / "empty.jsonl", fp).batches == {}
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        GenerationJournal(path, fp)


def test_other_weights_are_refused_and_sampling_is_not_journaled(tmp_path, tokenizer):
    model = build_tiny_model(tokenizer)
    fp = weights_fingerprint(model)
    assert weights_fingerprint(copy.deepcopy(model)) == fp
    assert weights_fingerprint(build_tiny_model(tokenizer, seed=1)) != fp
    stepped = copy.deepcopy(model)
    with torch.no_grad():
        next(stepped.parameters())[0, 0] += 1e-3
    assert weights_fingerprint(stepped) != fp
    assert weights_fingerprint(copy.deepcopy(model).to(torch.bfloat16)) != fp
    # What save_pretrained writes: a saved and reloaded model keeps its fingerprint, and a module the model keeps out
    # of its checkpoints (the SSB λ the trainer attaches) is left out of it too.
    model.save_pretrained(tmp_path / "saved")
    assert weights_fingerprint(load_model(str(tmp_path / "saved"), dtype="float32")) == fp
    attached = copy.deepcopy(model)
    attached.add_module("extra", torch.nn.Linear(2, 2))
    assert weights_fingerprint(attached) != fp
    attached._keys_to_ignore_on_save = {"extra.weight", "extra.bias"}
    assert weights_fingerprint(attached) == fp

    path = tmp_path / "journal.jsonl"
    GenerationJournal(path, fp)
    with pytest.raises(ValueError, match="other weights.*Delete it"):
        GenerationJournal(path, weights_fingerprint(stepped))

    backend = TransformersGeneration(model, tokenizer, journal=GenerationJournal(path, fp))
    with pytest.raises(ValueError, match="greedy batches only"):
        backend.complete(_prompt_ids(tokenizer), temperature=0.7, max_new_tokens=4, seed=0)
    assert len(path.read_text().splitlines()) == 1  # refused before any batch


def test_eval_resume_replays_the_finished_batches_and_scores_the_same(tmp_path, tokenizer, monkeypatch):
    pytest.importorskip("bfcl_eval")
    from balancetrl.eval import runner
    from balancetrl.eval.runner import evaluate_bfcl

    model = build_tiny_model(tokenizer)
    kwargs = {"categories": ["simple_python"], "limit": 5, "batch_size": 2, "max_new_tokens": 6, "progress": False,
              "model": model, "tokenizer": tokenizer}
    clean = evaluate_bfcl("tiny", output_dir=tmp_path / "clean", **kwargs)
    assert "journal" not in clean and not (tmp_path / "clean" / runner.JOURNAL_FILE).exists()

    generated = []
    original = TransformersGeneration._generate_batch

    def killed_after_two(self, *args, **kw):
        if len(generated) == 2:
            raise Killed
        generated.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(TransformersGeneration, "_generate_batch", killed_after_two)
    with pytest.raises(Killed):
        evaluate_bfcl("tiny", output_dir=tmp_path / "resumed", resume=True, **kwargs)
    generated.clear()
    monkeypatch.setattr(TransformersGeneration, "_generate_batch", original)
    resumed = evaluate_bfcl("tiny", output_dir=tmp_path / "resumed", resume=True, **kwargs)

    assert resumed["journal"]["replayed_batches"] == 2 and resumed["journal"]["generated_batches"] == 1
    assert resumed["categories"][0]["total"] == 5

    def outputs(folder):
        rows = (tmp_path / folder / "samples" / "simple_python.jsonl").read_text().splitlines()
        return [{k: r[k] for k in ("id", "raw_output", "result", "valid", "output_token_count")}
                for r in map(json.loads, rows)]

    assert outputs("resumed") == outputs("clean")
    assert resumed["categories"][0]["correct"] == clean["categories"][0]["correct"]

    with pytest.raises(ValueError, match="vLLM backend generates every prompt in one call"):
        evaluate_bfcl("tiny", output_dir=tmp_path / "v", resume=True, backend="vllm", **kwargs)
