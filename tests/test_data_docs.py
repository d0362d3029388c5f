"""docs/data.md is the data contract: its reason table must be REASONS, and every code the code raises must be there."""

import re
from pathlib import Path

from balancetrl.data.reasons import ANSWER_REASONS, REASONS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "data.md"


def render_reason_table() -> str:
    rows = ["| code | outcome | meaning |", "|---|---|---|"]
    for code, meaning in REASONS.items():
        outcome = "hard" if code in ANSWER_REASONS else "rejected"
        rows.append(f"| `{code}` | {outcome} | {meaning.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def test_docs_reason_table_is_the_code_table():
    doc = DOC.read_text(encoding="utf-8")
    block = doc.split("<!-- reasons:start -->\n", 1)[1].split("\n<!-- reasons:end -->", 1)[0]
    assert block == render_reason_table(), "docs/data.md is out of date; paste render_reason_table() between the markers"


def test_every_reason_code_raised_is_documented():
    pattern = re.compile(r'(?:FormatError|CallParseError|\bfail|\breject|RawRow)\([^()]*?"([a-z_]+)"|error="([a-z_]+)"')
    raised = set()
    for path in (ROOT / "balancetrl" / "data").rglob("*.py"):
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            raised.add(m.group(1) or m.group(2))
    raised |= {"invalid_tools_json", "invalid_answers_json"}  # built as f"invalid_{field}_json"
    assert raised and raised <= set(REASONS), sorted(raised - set(REASONS))
    assert "invalid_role" in raised and "call_parse_error" in raised


def test_readme_links_the_data_contract():
    assert "docs/data.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_docs_mapping_table_names_every_mapping_key():
    from balancetrl.data.mapping import _SECTIONS

    doc = DOC.read_text(encoding="utf-8")
    section = doc.split("### Mapping other rows", 1)[1].split("\n### ", 1)[0]
    rows = {tuple(cell.strip(" `") for cell in line.split("|")[1:3]) for line in section.splitlines()
            if line.startswith("| `")}
    assert rows == {(s, k) for s, keys in _SECTIONS.items() for k in keys} | {("roles", "*tag*: *role*")}
