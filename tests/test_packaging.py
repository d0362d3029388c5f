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
    assert [p for p in listed if not list((ROOT / "balancetrl").glob(p))] == []  # a pattern matches some file
    templates = sorted(f"templates/{p.name}" for p in (ROOT / "balancetrl" / "templates").iterdir())
    assert templates and [t for t in templates if t not in listed] == []


def test_accelerate_configs_ship_in_the_package_and_are_found_by_name():
    from importlib.resources import files

    from balancetrl.cli import resolve_accelerate_config

    listed = _package_data()
    shipped = sorted(p.name for p in (ROOT / "balancetrl" / "accelerate_configs").glob("*.yaml"))
    assert "accelerate_configs/*.yaml" in listed and {"zero3_cpu.yaml", "multi_cpu.yaml", "fsdp2.yaml"} <= set(shipped)
    ours = resolve_accelerate_config(["--accelerate_config", "zero3", "--num_processes", "2"])
    assert ours == ["--config_file", str(files("balancetrl.accelerate_configs") / "zero3.yaml"), "--num_processes", "2"]
    trls = resolve_accelerate_config(["--accelerate_config", "zero1"])  # not ours: TRL's of that name
    assert trls[1].endswith("trl/accelerate_configs/zero1.yaml")


def test_an_unknown_accelerate_config_name_lists_ours_and_trls():
    import pytest

    from balancetrl.cli import resolve_accelerate_config

    with pytest.raises(ValueError) as e:
        resolve_accelerate_config(["--accelerate_config", "zero4"])
    assert "balancetrl's are ddp, fsdp2, multi_cpu, multi_node, zero2, zero2_cpu, zero3, zero3_cpu" in str(e.value)
    assert "TRL's are fsdp1, fsdp2, multi_gpu, single_gpu, zero1, zero2, zero3" in str(e.value)
