import json
from pathlib import Path

import pytest

from balancetrl.data.formats import (
    detect_format,
    from_xlam,
    load_records,
    to_canonical_tool,
)
from balancetrl.data.io import InputError

DATA = Path(__file__).parent / "data"


def _records(path, **kw):
    return [r for r in load_records(path, **kw)]


def test_xlam_rows_to_canonical_records():
    rows = _records(DATA / "xlam_sample.jsonl")
    assert [r.error for r in rows] == [None] * 3
    rec = rows[0].data
    assert rec["id"] == "xlam-0"
    assert rec["messages"][0] == {"role": "user", "content": "Where can I find live giveaways for beta access and games?"}
    assert rec["messages"][1]["tool_calls"] == [
        {"type": "function", "function": {"name": "live_giveaways_by_type", "arguments": {"type": "beta"}}},
        {"type": "function", "function": {"name": "live_giveaways_by_type", "arguments": {"type": "game"}}}]
    assert rec["reference"] == [[{"name": "live_giveaways_by_type", "arguments": {"type": "beta"}},
                                 {"name": "live_giveaways_by_type", "arguments": {"type": "game"}}]]
    # xlam's flat parameter specs become JSON Schema; "default" or ", optional" makes a parameter optional
    weather = rows[1].data["tools"][0]["function"]
    assert weather["parameters"] == {
        "type": "object",
        "properties": {"city": {"description": "City name, e.g. 'Paris, FR'.", "type": "string"},
                       "unit": {"description": "c or f", "type": "string", "default": "c"},
                       "days": {"description": "forecast days", "type": "array", "default": [1]}},
        "required": ["city"]}
    assert rows[1].data["messages"][0]["content"] == 'Wetter in Zürich, "bitte" in Fahrenheit?'
    assert rows[2].data["tools"][0]["function"]["parameters"]["properties"]["a"]["type"] == "integer"


def test_xlam_cot_keeps_raw_response_for_the_checker():
    rows = _records(DATA / "xlam_cot_sample.jsonl")
    assert len(rows) == 4 and not any(r.error for r in rows)
    assistant = rows[1].data["messages"][1]
    assert assistant["role"] == "assistant" and assistant["content"].startswith("<think>")
    assert rows[1].data["reference"] == [[{"name": "get_weather", "arguments": {"city": "Zürich, CH", "unit": "f"}}]]


def test_messages_format_multi_turn_and_aliases():
    rows = _records(DATA / "messages_sample.jsonl")
    conv = rows[0].data
    assert [m["role"] for m in conv["messages"]] == ["system", "user", "assistant", "tool", "tool", "assistant",
                                                      "user", "assistant"]
    # OpenAI-style JSON-string arguments are decoded; ids are kept
    assert conv["messages"][2]["tool_calls"][0] == {"type": "function",
                                                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    assert len(conv["reference"]) == 3
    conv2 = rows[1].data
    assert conv2["messages"][1]["reasoning_content"] == "Book it."  # "thinking" alias
    assert conv2["tools"][1]["function"]["name"] == "book_table"  # tools given as a JSON string
    assert "reference" not in conv2


def test_bfcl_questions_with_possible_answers():
    rows = _records(DATA / "bfcl" / "BFCL_v4_sample.json")  # answers found in possible_answer/ next to it
    by_id = {r.data["id"]: r.data for r in rows}
    tri = by_id["simple_python_0"]
    params = tri["tools"][0]["function"]["parameters"]
    assert params["type"] == "object" and params["properties"]["base"]["type"] == "integer"
    assert tri["messages"][-1]["tool_calls"][0]["function"] == {
        "name": "calculate_triangle_area", "arguments": {"base": 10, "height": 5, "unit": "units"}}
    assert tri["reference"][0][0]["alternatives"]["unit"] == ["units", ""]
    assert [c["function"]["arguments"]["artist"] for c in by_id["parallel_0"]["messages"][-1]["tool_calls"]] == [
        "Taylor Swift", "Maroon 5"]
    mix = by_id["simple_python_dict"]
    assert mix["messages"][-1]["tool_calls"][0]["function"]["arguments"] == {
        "ratio": {"red": 0.5, "blue": 0.5}, "tags": ["warm", "bright"]}
    assert mix["tools"][0]["function"]["parameters"]["properties"]["ratio"]["properties"]["red"]["type"] == "number"
    # rows without an answers file: prompt-only records (what HDR/eval generate from)
    questions = [json.loads(x) for x in (DATA / "bfcl" / "BFCL_v4_sample.json").read_text().splitlines()]
    bare = [r.data for r in load_records(questions, format="bfcl")]
    assert [m["role"] for m in bare[0]["messages"]] == ["user"] and "reference" not in bare[0]


def test_detect_format_and_ambiguity(tmp_path):
    assert detect_format({"query": "q", "answers": "[]", "tools": "[]"}) == "xlam"
    assert detect_format({"query": "q", "answers": "[]", "tools": "[]", "response": "x"}) == "xlam_cot"
    assert detect_format({"messages": []}) == "messages"
    assert detect_format({"question": [], "function": []}) == "bfcl"
    assert detect_format({"prompt": "x"}) is None
    p = tmp_path / "odd.jsonl"
    p.write_text('{"prompt": "x", "completion": "y"}\n')
    with pytest.raises(InputError, match="line 1: cannot detect the format"):
        list(load_records(p))


def test_conversion_errors_become_reasoned_rows(tmp_path):
    p = tmp_path / "bad.jsonl"
    lines = [
        {"query": "q", "answers": "[]", "tools": "{\"name\": \"f\"}"},  # tools not a list
        {"query": "q", "answers": "[]"},  # missing field
        {"query": "q", "answers": "[{broken", "tools": "[]"},
        {"query": "q", "answers": "[]", "tools": "not json"},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = list(load_records(p, format="xlam"))
    assert [r.error for r in rows] == ["tools_not_list", "missing_field", "invalid_answers_json", "invalid_tools_json"]
    assert rows[1].message.startswith("line 2:") and "tools" in rows[1].message
    assert rows[0].data == lines[0]  # the original row is kept for rejected.jsonl


def test_in_memory_rows_and_datasets_objects():
    rows = [json.loads(line) for line in (DATA / "xlam_sample.jsonl").read_text().splitlines()]
    assert [r.data["id"] for r in load_records(rows)] == ["xlam-0", "xlam-1", "xlam-2"]
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(rows)
    assert [r.data["reference"] for r in load_records(ds)] == [r.data["reference"] for r in load_records(rows)]
    with pytest.raises(InputError, match="split"):
        list(load_records(datasets.DatasetDict({"train": ds})))


def test_saved_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [json.loads(line) for line in (DATA / "xlam_sample.jsonl").read_text().splitlines()]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    assert [r.data for r in load_records(tmp_path / "ds")] == [r.data for r in load_records(rows)]
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not a saved `datasets` dataset"):
        list(load_records(tmp_path / "plain"))


def test_parquet_and_json_array(tmp_path):
    rows = [json.loads(line) for line in (DATA / "xlam_sample.jsonl").read_text().splitlines()]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    assert [r.data["id"] for r in load_records(tmp_path / "a.json")] == ["xlam-0", "xlam-1", "xlam-2"]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert [r.data for r in load_records(tmp_path / "a.parquet")] == [r.data for r in load_records(rows)]


def test_to_canonical_tool_variants():
    openai = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    assert to_canonical_tool(openai) == openai
    assert to_canonical_tool({"name": "g"})["function"]["parameters"] == {"type": "object", "properties": {},
                                                                           "required": []}
    xl = to_canonical_tool({"name": "h", "parameters": {"x": {"type": "Optional[Dict[str, int]]"},
                                                        "y": {"type": "Union[int, str]"}}})
    props = xl["function"]["parameters"]
    assert props["properties"]["x"] == {"type": "object"} and "type" not in props["properties"]["y"]
    assert props["required"] == ["y"]
    assert from_xlam({"query": "q", "tools": [], "answers": []}, 5)["id"] == "xlam-5"
