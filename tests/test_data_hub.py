"""Data named the TRL way: `dataset_name` (a local `datasets` folder, a local data file) and the `datasets:` mixture,
loaded by `datasets` / `trl.get_dataset`, converted and checked like a local file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trl import DatasetMixtureConfig

from balancetrl.data.hub import check_arrow_rows, load_mixture, load_named_dataset
from balancetrl.data.io import InputError, read_records
from balancetrl.data.split import run_check
from balancetrl.scripts import preflight
from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments, data_source

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "xlam_cot_sample.jsonl"  # 4 rows: 1 base, 2 hard, 1 rejected
OUTCOMES = {"base": 1, "hard": 2, "rejected": 1}


def _second_source(tmp_path) -> Path:
    """The sample again with other ids: a second source of the same features."""
    path = tmp_path / "second.jsonl"
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    path.write_text("".join(json.dumps({**r, "id": 100 + r["id"]}) + "\n" for r in rows))
    return path


def _saved_folder(tmp_path) -> Path:
    import datasets

    folder = tmp_path / "saved"
    datasets.load_dataset("json", data_files={"train": str(SAMPLE)})["train"].save_to_disk(str(folder))
    return folder


def _hub_folder(tmp_path) -> Path:
    """A folder laid out like a Hub dataset repository (data files named by split)."""
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "train.jsonl").write_text(SAMPLE.read_text())
    (folder / "test.jsonl").write_text(SAMPLE.read_text().splitlines()[0] + "\n")
    return folder


def _args(**kw):
    return BalanceSFTScriptArguments(**kw)


def test_dataset_name_local_file_and_folders_check_like_the_file(tmp_path):
    expected = run_check(SAMPLE, tmp_path / "from_path", progress=False)["outcomes"]
    assert expected == OUTCOMES
    for name in (SAMPLE, _saved_folder(tmp_path), _hub_folder(tmp_path)):
        rows = data_source(_args(dataset_name=str(name)), split="train")
        assert len(rows) == 4
        report = run_check(rows, tmp_path / name.name, progress=False, label=str(name))
        assert report["outcomes"] == OUTCOMES and report["input"] == str(name)
        base = json.loads((tmp_path / name.name / "base.jsonl").read_text())
        assert base == json.loads((tmp_path / "from_path" / "base.jsonl").read_text())
    # the test split of a folder, and an unknown split named with the ones there are
    assert len(data_source(_args(dataset_name=str(tmp_path / "repo")), split="test")) == 1
    with pytest.raises(InputError, match=r"dataset_train_split='validation': no such split \(splits: train\)"):
        data_source(_args(dataset_name=str(SAMPLE), dataset_train_split="validation"), split="validation")
    with pytest.raises(InputError, match="cannot be loaded"):
        load_named_dataset(str(tmp_path / "nothing-here"))


def test_mixture_with_fractions_goes_through_trl(tmp_path):
    second = _second_source(tmp_path)
    mixture = DatasetMixtureConfig(datasets=[{"path": str(SAMPLE), "fraction": 0.75},
                                             {"path": "json", "data_files": str(second), "fraction": 0.25}])
    train = data_source(_args(), mixture, split="train")
    # TRL's rule: the largest total that oversamples no source (4 / 0.75), then the first round(f * total) rows
    assert [r.data["id"] for r in read_records(train)] == [0, 1, 2, 3, 100]
    report = run_check(train, tmp_path / "out", progress=False)
    assert report["outcomes"] == {"base": 2, "hard": 2, "rejected": 1}
    # test_split_size gives the mixture a test split
    split = load_mixture(DatasetMixtureConfig(datasets=[{"path": str(SAMPLE)}], test_split_size=0.25))
    assert (len(split["train"]), len(split["test"])) == (3, 1)
    with pytest.raises(InputError, match="`fraction` must be set for either all datasets"):
        load_mixture(DatasetMixtureConfig(datasets=[{"path": str(SAMPLE), "fraction": 0.5}, {"path": str(second)}]))


def test_objects_that_arrow_would_merge_are_refused(tmp_path):
    import datasets

    # tools as objects: Arrow gives every tool the union of all tools' parameter names
    rows = [json.loads(line) for line in (ROOT / "tests" / "data" / "messages_sample.jsonl").read_text().splitlines()]
    dataset = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "x"}],
                                           "tools": [t for t in rows[0]["tools"]]}])
    with pytest.raises(InputError, match=r"column path 'tools\[\]\.function\.parameters.*JSON strings"):
        check_arrow_rows(dataset, "data")
    # the same as JSON strings passes
    check_arrow_rows(datasets.Dataset.from_list([{"tools": json.dumps(rows[0]["tools"])}]), "data")


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
BOOK = {"type": "function", "function": {"name": "book_table", "parameters": {
    "type": "object", "properties": {"restaurant": {"type": "string"}, "guests": {"type": "integer"}},
    "required": ["restaurant", "guests"]}}}


def _tool_rows() -> list[dict]:
    """Two conversations whose tools (objects, the TRL/OpenAI convention) and call arguments have different keys."""
    def row(i, tool, args):
        return {"id": f"t{i}", "tools": [tool], "messages": [
            {"role": "user", "content": f"request {i}"},
            {"role": "assistant", "reasoning_content": "r", "tool_calls": [
                {"type": "function", "function": {"name": tool["function"]["name"], "arguments": args}}]}]}
    return [row(1, WEATHER, {"city": "Paris"}), row(2, BOOK, {"restaurant": "Nobu", "guests": 2})]


def test_dataset_name_json_lines_keep_their_keys(tmp_path):
    import datasets

    folder = tmp_path / "tools_repo"
    folder.mkdir()
    rows = _tool_rows()
    # a blank line and a broken line: skipped and rejected as in a .jsonl file, the rest goes on
    (folder / "train.jsonl").write_text(json.dumps(rows[0]) + "\n\n" + '{"id": "broken", \n' + json.dumps(rows[1]) + "\n")
    (folder / "test.json").write_text(json.dumps([rows[1], rows[0]], indent=2))  # a JSON document: an array
    # what Arrow does with these rows: one struct type, each row gets the other's parameter and argument names
    import pyarrow as pa

    merged = pa.Table.from_pylist(rows).to_pylist()
    assert merged[0]["tools"][0]["function"]["parameters"]["properties"] == {
        "city": {"type": "string"}, "restaurant": None, "guests": None}
    assert merged[1]["messages"][1]["tool_calls"][0]["function"]["arguments"] == {
        "city": None, "restaurant": "Nobu", "guests": 2}
    # `datasets`' json builder (5.x keeps differing objects as its `Json` type, older versions merge them) leaves
    # `parameters` a struct, which the Arrow path refuses: the refusal these files used to get
    (tmp_path / "arrow.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    arrow = datasets.load_dataset("json", data_files=str(tmp_path / "arrow.jsonl"), split="train")
    with pytest.raises(InputError, match=r"column path 'tools\[\]\.function\.parameters' holds objects"):
        check_arrow_rows(arrow, "arrow")
    # dataset_name reads the same files record-exact, each split with the project's reader
    train = data_source(_args(dataset_name=str(folder)), split="train")
    read = list(read_records(train))
    assert [(r.line, r.error) for r in read] == [(1, None), (3, "invalid_json"), (4, None)]
    assert [r.data for r in read if not r.error] == rows
    test = data_source(_args(dataset_name=str(folder)), split="test")
    assert [r.data for r in read_records(test)] == [rows[1], rows[0]]
    report = run_check(train, tmp_path / "out", progress=False)
    assert report["outcomes"] == {"base": 2, "hard": 0, "rejected": 1}
    base = [json.loads(x) for x in (tmp_path / "out" / "base.jsonl").read_text().splitlines()]
    assert [b["tools"] for b in base] == [[WEATHER], [BOOK]]
    assert [b["messages"][1]["tool_calls"][0]["function"]["arguments"] for b in base] == [
        {"city": "Paris"}, {"restaurant": "Nobu", "guests": 2}]
    # streaming reads the same rows
    streamed = data_source(_args(dataset_name=str(folder), dataset_streaming=True), split="train")
    assert [r.data for r in read_records(streamed) if not r.error] == rows


def test_mixture_of_json_entries_is_record_exact(tmp_path):
    rows = _tool_rows()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.json"
    first.write_text("".join(json.dumps(r) + "\n" for r in rows))
    second.write_text(json.dumps([{**r, "id": r["id"] + "-b"} for r in rows]))
    mixture = DatasetMixtureConfig(datasets=[{"path": str(first), "fraction": 0.5},
                                             {"path": "json", "data_files": str(second), "fraction": 0.5}])
    train = data_source(_args(), mixture, split="train")
    assert [r.data for r in read_records(train)] == rows + [{**r, "id": r["id"] + "-b"} for r in rows]
    with pytest.raises(InputError, match="`columns` cannot select from JSON rows read record-exact"):
        load_mixture(DatasetMixtureConfig(datasets=[{"path": str(first), "columns": ["id"]}]))
    # Parquet holds the merged structs already: still refused
    import datasets

    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "rows.parquet"))
    with pytest.raises(InputError, match=r"column path 'tools\[\]\.function\.parameters'"):
        data_source(_args(dataset_name=str(tmp_path / "rows.parquet")), split="train")


def test_exactly_one_data_source():
    with pytest.raises(preflight.PreflightError, match="no training data"):
        preflight.check_data_source(_args())
    with pytest.raises(preflight.PreflightError, match="set only one of `dataset_path` and `dataset_name`"):
        preflight.check_data_source(_args(dataset_path=str(SAMPLE), dataset_name="x"))
    with pytest.raises(preflight.PreflightError, match="set only one of `dataset_name` and `datasets`"):
        preflight.check_data_source(_args(dataset_name="x"), DatasetMixtureConfig(datasets=[{"path": "y"}]))


def test_mixture_typo_is_named_before_anything_loads(tmp_path):
    from balancetrl.scripts.balance_sft import make_parser
    from balancetrl.scripts.recipe import RecipeError

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path}\nuse_cpu: true\ndatasets:\n  - path: {SAMPLE}\n    fractoin: 0.5\n")
    with pytest.raises(RecipeError, match=r"unknown key 'fractoin' in `datasets` entry 1 \(did you mean 'fraction'\?\)"):
        make_parser().parse_recipe(["--config", str(recipe)])
    recipe.write_text(f"output_dir: {tmp_path}\nuse_cpu: true\ndatasets:\n  - path: {SAMPLE}\n    fraction: 0.5\n")
    *_, mixture, _, _, _ = make_parser().parse_recipe(["--config", str(recipe)])
    assert [(d.path, d.fraction) for d in mixture.datasets] == [(str(SAMPLE), 0.5)]


# ------------------------------------------------------------------------------------- through the CLI


def _train(tmp_path, tokenizer, data_yaml: str) -> dict:
    from conftest import build_tiny_model

    model_dir = tmp_path / "tiny"
    if not model_dir.exists():
        build_tiny_model(tokenizer).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"""
model_name_or_path: {model_dir}
{data_yaml}
max_steps: 1
output_dir: {out}
use_cpu: true
per_device_train_batch_size: 1
max_length: 512
logging_steps: 1
save_strategy: "no"
report_to: none
""")
    r = subprocess.run([sys.executable, "-m", "balancetrl.scripts.balance_sft", "--config", str(recipe)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-4000:]
    summary = json.loads((out / "balance_sft_summary.json").read_text())
    assert summary["global_steps"] == 1
    for name in ("base", "hard", "rejected"):
        assert (out / "data" / f"{name}.jsonl").is_file()
    return json.loads((out / "data" / "report.json").read_text())


@pytest.mark.slow
def test_dataset_name_local_folder_trains_a_step(tmp_path, tokenizer):
    folder = _saved_folder(tmp_path)
    report = _train(tmp_path, tokenizer, f"dataset_name: {folder}")
    assert report["outcomes"] == OUTCOMES and report["input"] == str(folder)


@pytest.mark.slow
def test_dataset_name_local_json_file_trains_a_step(tmp_path, tokenizer):
    report = _train(tmp_path, tokenizer, f"dataset_name: {SAMPLE}")
    assert report["outcomes"] == OUTCOMES


@pytest.mark.slow
def test_datasets_mixture_trains_a_step(tmp_path, tokenizer):
    second = _second_source(tmp_path)
    report = _train(tmp_path, tokenizer, f"""datasets:
  - path: {SAMPLE}
    fraction: 0.75
  - path: json
    data_files: {second}
    fraction: 0.25""")
    assert report["outcomes"] == {"base": 2, "hard": 2, "rejected": 1}
    assert report["input"] == f"{SAMPLE} + json"
