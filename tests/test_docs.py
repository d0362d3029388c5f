"""The docs: the README stays a front door, the generated pages (recipe keys, CLI, results) match the code and the
measured files, every recipe key and CLI flag is documented, and measured figures are cited, not copied.

`mkdocs build --strict` itself runs in `test_the_site_builds` when mkdocs is installed (the `docs` extra)."""

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results"


def _load_generator():
    # by path: a top-level `docs` package installed by some other distribution must not shadow ours
    spec = importlib.util.spec_from_file_location("balancetrl_docs_gen", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


# ---------------------------------------------------------------------------------------------------------------------
# README


def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= 10_000, f"README.md has {len(text)} characters; move detail to docs/"


def test_readme_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in section and "make test" in section
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).is_file(), target


# ---------------------------------------------------------------------------------------------------------------------
# Generated pages


@pytest.mark.parametrize("page", sorted(gen.PAGES, key=str), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_page_is_up_to_date(page):
    assert page.read_text(encoding="utf-8") == gen.PAGES[page](), (
        f"{page.relative_to(ROOT)} is out of date: run `python docs/gen_reference.py` and commit the result")


def test_docstring_parser_reads_shared_entries_and_sections():
    doc = """
    Parameters:
        > First

        a (`int`, *optional*, defaults to `1`):
            One
            line.

            Second paragraph.
        b (`str`, defaults to `"x"`), c (`int`, defaults to `8000`):
            Shared.
    """
    entries = gen.parse_parameters(doc)
    assert entries["a"] == {"type": "int", "spec": "`int`, *optional*, defaults to `1`", "text": "One line.<br>Second paragraph.",
                            "section": "First"}
    assert entries["b"]["text"] == entries["c"]["text"] == "Shared." and entries["c"]["type"] == "int"


def _recipe_classes():
    from balancetrl.hdr.hdr_config import HDRConfig
    from balancetrl.scripts.balance_sft import BalanceSFTScriptArguments
    from balancetrl.trainer.balance_sft_config import BalanceSFTConfig

    return BalanceSFTScriptArguments, BalanceSFTConfig, HDRConfig


def test_every_field_of_the_three_dataclasses_is_documented():
    page = (ROOT / "docs" / "reference" / "recipe-keys.md").read_text(encoding="utf-8")
    script_args, config, hdr = _recipe_classes()
    for cls, prefix in ((script_args, ""), (config, ""), (hdr, "hdr.")):
        for f in dataclasses.fields(cls):
            # balancetrl's own fields in full (a table row with its text); inherited TRL/transformers ones by name
            assert f"`{prefix}{f.name}`" in page, f"{cls.__name__}.{f.name} is missing from recipe-keys.md"
        documented = gen.parse_parameters(cls.__doc__)
        for f in gen.own_fields(cls):
            assert f.name in documented or f.metadata.get("help"), f"{cls.__name__}.{f.name} has no docstring entry"
            row = next(line for line in page.splitlines() if f"`{prefix}{f.name}` |" in line)
            assert row.rstrip(" |").split(" | ")[-1].strip(), f"{prefix}{f.name} has an empty description"


def test_every_balancetrl_docstring_entry_is_a_field():
    # the reverse: a docstring naming a field that no longer exists is stale documentation
    for cls in _recipe_classes():
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(gen.parse_parameters(cls.__doc__)) <= names, cls.__name__


def test_every_cli_flag_of_every_command_is_documented():
    from balancetrl.cli import build_parser, extra_commands
    from balancetrl.scripts.balance_sft import make_parser

    cli = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    keys = (ROOT / "docs" / "reference" / "recipe-keys.md").read_text(encoding="utf-8")
    commands = extra_commands()
    subparsers = gen._subparsers(build_parser(commands))
    assert {c.name for c in commands} == {"balance-sft", "check", "stats", "eval", "push"}
    for command in commands:
        assert f"## `balancetrl {command.name}`" in cli
        section = cli.split(f"## `balancetrl {command.name}`", 1)[1].split("\n## ", 1)[0]
        if command.name == "balance-sft":
            # its flags are the recipe parser's: every key `--k` (or `--k-with-dashes`) is a documented recipe key
            for action in make_parser()._actions:
                for option in action.option_strings:
                    if option in ("-h", "--help"):
                        continue
                    name = option[2:]
                    if f"`{option}`" in section:
                        continue
                    key = name.replace("-", "_")
                    assert f"`{key}`" in keys or f"`--{key}`" in section, f"balance-sft {option} is not documented"
            continue
        for action in subparsers[command.name]._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings or [(action.metavar or action.dest).upper()]:
                assert f"`{option}`" in section, f"balancetrl {command.name} {option} is not in docs/reference/cli.md"


# ---------------------------------------------------------------------------------------------------------------------
# Results: one place per figure


def test_every_results_file_is_on_the_results_page():
    index = gen.load_index()
    listed = {entry["file"] for entry in index["results"]}
    on_disk = {p.name for p in RESULTS.glob("*.json")} - {"index.json"}
    assert on_disk <= listed, f"results files not in benchmarks/results/index.json: {sorted(on_disk - listed)}"
    for entry in index["results"]:
        data = json.loads((RESULTS / entry["file"]).read_text(encoding="utf-8"))
        recorded = isinstance(data, dict) and "command" in data
        assert recorded or (entry.get("command") and entry.get("command_note")), (
            f"{entry['file']}: the file records no command, so index.json must give it and say how it is known")
        assert not (recorded and entry.get("command")), f"{entry['file']} records its command: index.json must not"
        for spec in entry["figures"]:
            gen.figure_value(data, spec)  # every path resolves


def test_the_bf16_warning_quotes_the_measured_figure():
    from balancetrl.runtime.cpu import warn_if_bf16_is_emulated

    data = json.loads((RESULTS / "bf16_cpu_avx2.json").read_text(encoding="utf-8"))
    ratio = data["train_step_seconds_median"]["bf16"] / data["train_step_seconds_median"]["fp32"]
    message = warn_if_bf16_is_emulated(True, "cpu", cpuinfo="flags : sse2 avx2")
    quoted = re.search(r"took (\d+(?:\.\d+)?)x as long", message)
    assert quoted and float(quoted.group(1)) == round(ratio, 1), (message, ratio)


_RATIO = re.compile(r"(?<![\w.])~?\d+(?:\.\d+)?[x×](?![\w\d])")


def _hand_written_texts():
    generated = set(gen.PAGES)
    yield README
    for path in sorted((ROOT / "docs").rglob("*.md")):
        if path not in generated and path.name != "data.md":  # data.md: the data contract, owned elsewhere
            yield path
    yield from sorted(ROOT.glob("recipes/*/*.yaml"))


@pytest.mark.parametrize("path", list(_hand_written_texts()), ids=lambda p: str(p.relative_to(ROOT)))
def test_measured_ratios_are_cited_not_copied(path):
    # "9.1×", "1.44x", "~7x": a measured ratio belongs in benchmarks/results/ and docs/results.md, where it has its
    # command; hand-written pages link there. (Multiplications such as "8 × 80 GB" or "4×1" are not ratios.)
    found = [m.group(0) for m in _RATIO.finditer(path.read_text(encoding="utf-8"))]
    assert found == [], f"{path.relative_to(ROOT)} repeats measured ratios {found}: cite docs/results.md instead"


# ---------------------------------------------------------------------------------------------------------------------
# The site


def test_mkdocs_nav_lists_every_page():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from (pages(value) if isinstance(value, list) else [value])

    in_nav = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert in_nav == on_disk
    assert {"data.md", "distributed.md", "gpu.md", "results.md", "reference/recipe-keys.md", "reference/cli.md"} <= in_nav


def test_the_site_builds(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
