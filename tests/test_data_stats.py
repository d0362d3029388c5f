import json
import math
from argparse import ArgumentParser
from pathlib import Path

import pytest

from balancetrl.commands.stats import StatsCommand
from balancetrl.data.token_stats import format_table, summarize, token_stats, turn_texts

DATA = Path(__file__).parent / "data"


def _record(cot, calls=None, content=None):
    assistant = {"role": "assistant"}
    if cot is not None:
        assistant["reasoning_content"] = cot
    if calls is not None:
        assistant["tool_calls"] = [{"type": "function", "function": c} for c in calls]
    if content is not None:
        assistant["content"] = content
    return {"tools": [], "messages": [{"role": "user", "content": "q"}, assistant]}


def test_summary_statistics():
    s = summarize([1, 2, 3, 4, 100])
    assert (s.n, s.total, s.mean, s.median) == (5, 110, 22.0, 3)
    assert s.p90 == pytest.approx(4 + 0.6 * 96)  # linear interpolation, numpy's default
    assert summarize([1, 2]).median == 1.5
    assert math.isnan(summarize([]).mean)


def test_token_counts_per_turn(word_tokenizer):
    records = [
        # 5-word CoT; call block <tool_call> {"name": "f", "arguments": {"a": 1}} </tool_call> = 7 words
        _record("one two three four five", [{"name": "f", "arguments": {"a": 1}}]),
        # raw text with CoT markers and a parallel call list in Python syntax
        {"tools": [], "messages": [{"role": "user", "content": "q"}, {
            "role": "assistant", "content": '<think>a b c</think>[g(x="é ü"), h()]'}]},
        # text answer without CoT: 4 result tokens, no CoT entry
        _record(None, content="I cannot do that."),
        # unparsable turn: skipped, not guessed
        {"tools": [], "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>x"}]},
    ]
    stats = token_stats(records, word_tokenizer, batch_size=2)
    g_block = '<tool_call>\n{"name": "g", "arguments": {"x": "é ü"}}\n</tool_call>\n' \
              '<tool_call>\n{"name": "h", "arguments": {}}\n</tool_call>'
    assert next(turn_texts(records[1])) == ("a b c", g_block)
    assert stats.cot == [5, 3]
    assert stats.call == [7, len(g_block.split()), 4]
    assert (stats.records, stats.turns, stats.skipped_turns) == (4, 3, 1)
    assert stats.alpha == pytest.approx(8 / (8 + 7 + 14 + 4))
    table = format_table(stats, "toy")
    assert "| toy | 4.00 | 4.00 | 4.80 | 8.33 | 7.00 |" in table and "alpha = |C| / (|C| + |F|) = 0.2424" in table


def test_multi_turn_counts_every_assistant_turn(word_tokenizer):
    conv = json.loads((DATA / "messages_sample.jsonl").read_text(encoding="utf-8").splitlines()[0])
    turns = list(turn_texts(conv))
    assert [t[0] for t in turns] == ["Two cities: two parallel calls.", "Summarise.",
                                     "Booking with a nested options dict."]
    assert turns[1][1] == "Paris 18°C, Tokyo 25°C."
    stats = token_stats([conv], word_tokenizer)
    assert stats.cot == [5, 1, 6] and stats.turns == 3


def _stats_cli(tmp_path, tokenizer, *argv):
    parser = ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmd = StatsCommand()
    cmd.register(sub)
    return cmd.run(parser.parse_args(["stats", *argv]), None, tokenizer=tokenizer)


def test_stats_command_prints_table_and_json(tmp_path, word_tokenizer, capsys):
    out = tmp_path / "s.json"
    assert _stats_cli(tmp_path, word_tokenizer, str(DATA / "xlam_cot_sample.jsonl"), "--tokenizer", "unused",
                      "--json", str(out)) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| Dataset | CoT mean | CoT median | CoT p90 | Call mean")
    numbers = json.loads(out.read_text())
    # 4 records, the unclosed CoT one is skipped; CoTs: 10, 5 and 2 words
    assert numbers["records"] == 4 and numbers["skipped_turns"] == 1
    assert numbers["cot"]["total"] == 10 + 5 + 2 and numbers["cot"]["n"] == 3


def test_stats_command_bad_tokenizer_is_a_clear_error(tmp_path, capsys):
    parser = ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmd = StatsCommand()
    cmd.register(sub)
    args = parser.parse_args(["stats", str(DATA / "xlam_sample.jsonl"), "--tokenizer", str(tmp_path / "nope")])
    assert cmd.run(args, None) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
def test_stats_with_smollm2_gguf_tokenizer(capsys):
    pytest.importorskip("gguf")
    from balancetrl.models import smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(str(e))
    parser = ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    cmd = StatsCommand()
    cmd.register(sub)
    assert cmd.run(parser.parse_args(["stats", str(DATA / "messages_sample.jsonl"), "--tokenizer", str(path)]),
                   None) == 0
    out = capsys.readouterr().out
    assert "| messages_sample.jsonl |" in out and "alpha = " in out
