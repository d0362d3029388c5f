"""`balancetrl check` end to end: outputs, report, malformed inputs, atomicity."""

import json
import os
from argparse import ArgumentParser
from pathlib import Path

import pytest

from balancetrl.commands.check import CheckCommand
from balancetrl.data.io import AtomicJsonlWriter, atomic_write
from balancetrl.data.split import run_check

DATA = Path(__file__).parent / "data"


def cli(*argv):
    parser = ArgumentParser(prog="balancetrl")
    sub = parser.add_subparsers(dest="command")
    command = CheckCommand()
    command.register(sub)
    args = parser.parse_args(list(argv))
    return command.run(args, None)


def read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_check_xlam_cot_sample(tmp_path, capsys):
    assert cli("check", str(DATA / "xlam_cot_sample.jsonl"), "--output-dir", str(tmp_path), "--no-progress") == 0
    base, hard, rejected = (read(tmp_path / f"{n}.jsonl") for n in ("base", "hard", "rejected"))
    assert [r["id"] for r in base] == ["xlam-0"]
    assert [(r["id"], r["hard_reason"]) for r in hard] == [("xlam-1", "format_leading_space"),
                                                           ("xlam-2", "wrong_value")]
    assert [(r["id"], r["reject_reason"], r["line"]) for r in rejected] == [("xlam-3", "unclosed_cot", 4)]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["total"] == 4 and report["outcomes"] == {"base": 1, "hard": 2, "rejected": 1}
    assert report["reasons"] == {"hard": {"format_leading_space": 1, "wrong_value": 1},
                                 "rejected": {"unclosed_cot": 1}}
    assert "4 records: 1 base, 2 hard, 1 rejected" in capsys.readouterr().out
    # --fix repairs and counts the leading-space defect
    assert cli("check", str(DATA / "xlam_cot_sample.jsonl"), "--output-dir", str(tmp_path / "f"), "--fix",
               "--no-progress") == 0
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["outcomes"] == {"base": 2, "hard": 1, "rejected": 1} and report["fixed"] == {"leading_space": 1}


def test_plain_xlam_needs_allow_missing_cot(tmp_path, capsys):
    def run(*extra):
        return cli("check", str(DATA / "xlam_sample.jsonl"), "--output-dir", str(tmp_path), *extra)

    assert run() == 0
    assert json.loads((tmp_path / "report.json").read_text())["reasons"]["rejected"] == {"missing_cot": 3}
    assert "--allow-missing-cot" in capsys.readouterr().out
    assert run("--allow-missing-cot") == 0
    assert json.loads((tmp_path / "report.json").read_text())["outcomes"] == {"base": 3, "hard": 0, "rejected": 0}


def test_malformed_lines_each_land_in_rejected(tmp_path):
    good = (DATA / "xlam_cot_sample.jsonl").read_bytes().splitlines()[0]
    lines = [
        good,
        b'{"query": "broken json", ',
        b'{"query": "q", "answers": "[]"}',  # missing tools
        b'{"query": "q", "answers": "[]", "tools": "{}", "response": "x"}',  # tools not a list
        b'{"query": "caf\xe9", "answers": "[]", "tools": "[]", "response": "x"}',  # latin-1, not UTF-8
        b'["not", "an", "object"]',
        b"",
        good,
    ]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    report = run_check(src, tmp_path / "out", progress=False)
    rejected = read(tmp_path / "out" / "rejected.jsonl")
    assert [(r["line"], r["reject_reason"]) for r in rejected] == [
        (2, "invalid_json"), (3, "missing_field"), (4, "tools_not_list"), (5, "invalid_utf8"), (6, "not_an_object")]
    assert rejected[0]["raw"] == '{"query": "broken json", ' and "line 2" in rejected[0]["reject_message"]
    assert rejected[2]["tools"] == "{}"  # the original data is kept
    assert "caf\ufffd" in rejected[3]["raw"]
    # every non-blank input line is in exactly one output
    assert report["total"] == 7 == sum(report["outcomes"].values())
    assert len(read(tmp_path / "out" / "base.jsonl")) == 2


def test_empty_or_unusable_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    assert cli("check", str(empty), "--output-dir", str(out)) == 2
    assert "empty.jsonl: the file is empty" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    assert cli("check", str(blank), "--output-dir", str(out)) == 2
    assert "no records" in capsys.readouterr().err
    assert cli("check", str(tmp_path / "missing.jsonl"), "--output-dir", str(out)) == 2
    assert list(out.iterdir()) == []  # no temp files left behind either


def test_failure_midway_keeps_previous_outputs_intact(tmp_path):
    out = tmp_path / "out"
    run_check(DATA / "xlam_cot_sample.jsonl", out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def rows():
        yield from (json.loads(x) for x in (DATA / "messages_sample.jsonl").read_text().splitlines())
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        run_check(rows(), out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, no temp files


def test_bfcl_and_messages_inputs(tmp_path):
    report = run_check(DATA / "bfcl" / "BFCL_v4_sample.json", tmp_path / "b", require_cot=False, progress=False)
    assert report["outcomes"] == {"base": 3, "hard": 0, "rejected": 0}
    report = run_check(DATA / "messages_sample.jsonl", tmp_path / "m", progress=False)
    assert report["outcomes"] == {"base": 1, "hard": 1, "rejected": 0}
    assert read(tmp_path / "m" / "hard.jsonl")[0]["hard_reason"] == "missing_required"


def test_atomic_writers(tmp_path):
    target = tmp_path / "x.json"
    with atomic_write(target) as f:
        f.write("one")
    with pytest.raises(ValueError), atomic_write(target) as f:
        f.write("two")
        raise ValueError
    assert target.read_text() == "one" and os.listdir(tmp_path) == ["x.json"]
    with AtomicJsonlWriter(tmp_path / "y.jsonl") as w:
        w.write({"a": "é"})
        assert not (tmp_path / "y.jsonl").exists()  # invisible until committed
    assert json.loads((tmp_path / "y.jsonl").read_text()) == {"a": "é"}


TOOLRL = Path(__file__).resolve().parents[2] / "shared" / "data" / "toolrl_xlam_cot.jsonl"  # ../shared beside the checkout


@pytest.mark.skipif(not TOOLRL.is_file(), reason="the shared distilled-CoT set is not on this machine")
def test_distilled_cot_set_with_json_lines_blocks(tmp_path):
    """144 of its 319 rows write parallel calls as JSON lines in one <tool_call> block (once `call_parse_error`)."""
    report = run_check(TOOLRL, tmp_path, progress=False)
    assert report["outcomes"] == {"base": 313, "hard": 6, "rejected": 0}
    assert report["reasons"]["hard"] == {"unknown_parameter": 6}


def test_cot_start_end_flags(tmp_path, capsys):
    # The same sample with <r>…</r> as CoT markers splits exactly like the original with <think>…</think>.
    src = tmp_path / "r.jsonl"
    src.write_text((DATA / "xlam_cot_sample.jsonl").read_text().replace("<think>", "<r>").replace("</think>", "</r>"))
    assert cli("check", str(DATA / "xlam_cot_sample.jsonl"), "--output-dir", str(tmp_path / "think"),
               "--no-progress") == 0
    expected = json.loads((tmp_path / "think" / "report.json").read_text())["outcomes"]
    assert expected == {"base": 1, "hard": 2, "rejected": 1}
    assert cli("check", str(src), "--output-dir", str(tmp_path / "new"), "--no-progress",
               "--cot-start", "<r>", "--cot-end", "</r>") == 0
    assert json.loads((tmp_path / "new" / "report.json").read_text())["outcomes"] == expected
    # the old names (--cot-open/--cot-close) are gone, not aliased
    with pytest.raises(SystemExit):
        cli("check", str(src), "--output-dir", str(tmp_path / "old"), "--cot-open", "<r>")
    assert "unrecognized arguments: --cot-open" in capsys.readouterr().err
    # without the markers, no record of the rewritten sample has a CoT
    assert cli("check", str(src), "--output-dir", str(tmp_path / "default"), "--no-progress") == 0
    assert json.loads((tmp_path / "default" / "report.json").read_text())["reasons"]["rejected"] == {"missing_cot": 4}


def test_unchecked_split_keeps_rejects_and_empties_hard(tmp_path):
    """`run_check: false` (check=False): every parseable record is base, unparseable ones are rejected with their
    line and reason as in a checked run, and a hard.jsonl left by an earlier checked run is replaced by an empty one."""
    lines = (DATA / "xlam_cot_sample.jsonl").read_text().splitlines()
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines[:2] + ["{not json"] + lines[2:]) + "\n")
    out = tmp_path / "out"
    checked = run_check(src, out, format="xlam_cot", progress=False)
    assert checked["outcomes"]["hard"] > 0
    report = run_check(src, out, format="xlam_cot", progress=False, check=False)
    assert report["outcomes"] == {"base": len(lines), "hard": 0, "rejected": 1}
    assert report["options"] == {"format": "xlam_cot", "run_check": False}
    assert (out / "hard.jsonl").read_text() == ""
    (rejected,) = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected["line"] == 3 and rejected["reject_reason"] == "invalid_json" and rejected["reject_message"]
    base = [json.loads(x) for x in (out / "base.jsonl").read_text().splitlines()]
    assert [r["id"] for r in base] == [f"xlam-{json.loads(x)['id']}" for x in lines]
    assert sorted(p.name for p in out.iterdir()) == ["base.jsonl", "hard.jsonl", "rejected.jsonl", "report.json"]


def test_eval_records_are_normalised_like_the_training_records(tmp_path):
    """The eval set holds the checked records (CoT in reasoning_content, calls as tool_calls), as base.jsonl does."""
    from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments, load_eval_records

    src = DATA / "xlam_cot_sample.jsonl"
    args = BalanceSFTScriptArguments(dataset_path=str(src), dataset_format="xlam_cot")
    records = load_eval_records(args, src, ("<think>", "</think>"))
    run_check(src, tmp_path, format="xlam_cot", progress=False)
    base = [json.loads(x) for x in (tmp_path / "base.jsonl").read_text().splitlines()]
    assert records and records == base
    turn = records[0]["messages"][-1]
    assert turn["reasoning_content"] and turn["tool_calls"] and "<think>" not in (turn.get("content") or "")
