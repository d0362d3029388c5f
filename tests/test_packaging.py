"""What the wheel ships: `package_data` names every template the code loads and only files that exist."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_data() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return [p.strip() for p in cfg["options.package_data"]["balancetrl"].split(",")]


def test_package_data_names_existing_files_and_every_template():
    listed = _package_data()
    assert [p for p in listed if not (ROOT / "balancetrl" / p).is_file()] == []
    templates = sorted(f"templates/{p.name}" for p in (ROOT / "balancetrl" / "templates").iterdir())
    assert templates and [t for t in templates if t not in listed] == []
