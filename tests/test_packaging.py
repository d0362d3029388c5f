"""What the wheel ships: every data file the code loads (templates, demo data, accelerate configs, recipes), read from
a wheel built from this tree, and the names that find them."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    # the wheel itself, not setup.cfg read by hand: setuptools' own reading of package_data is what ships (a comma
    # list across lines was once read as one name and shipped neither the templates nor the demo data)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, timeout=300, capture_output=True)
    with zipfile.ZipFile(next(dist.glob("balancetrl-*.whl"))) as whl:
        return set(whl.namelist())


def test_the_wheel_ships_every_data_file_the_code_loads_and_nothing_of_tests_or_benchmarks(wheel_names):
    def shipped(folder, pattern):
        return sorted(str(p.relative_to(ROOT / folder)) for p in (ROOT / folder).glob(pattern))

    wanted = ([f"balancetrl/templates/{n}" for n in shipped("balancetrl/templates", "*")]
              + [f"balancetrl/accelerate_configs/{n}" for n in shipped("balancetrl/accelerate_configs", "*.yaml")]
              + [f"balancetrl/recipes/{n}" for n in shipped("recipes", "*/*.yaml")]
              + ["balancetrl/data/demo/train.jsonl", "balancetrl/data/demo/eval.jsonl"])
    assert len(wanted) > 20 and sorted(set(wanted) - wheel_names) == []
    assert not any(n.endswith(".labels.jsonl") for n in wheel_names)  # the demo's truth files are for the tests
    assert not any(n.startswith(("tests/", "benchmarks/", "recipes/")) for n in wheel_names)


def test_accelerate_configs_ship_in_the_package_and_are_found_by_name(wheel_names):
    from importlib.resources import files

    from balancetrl.cli import resolve_accelerate_config

    assert {f"balancetrl/accelerate_configs/{n}.yaml" for n in ("zero3_cpu", "multi_cpu", "fsdp2")} <= wheel_names
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


def test_recipes_ship_as_balancetrl_recipes_and_are_found_by_name_from_anywhere(tmp_path, monkeypatch):
    from balancetrl.scripts.packaged import package_data_path, recipe_names
    from balancetrl.scripts.recipe import RecipeError, resolve_config

    in_repo = sorted(f"{p.parent.name}/{p.stem}" for p in (ROOT / "recipes").glob("*/*.yaml"))
    assert recipe_names() == in_repo and "smollm2-135m/balance_sft_cpu" in in_repo

    monkeypatch.chdir(tmp_path)  # outside the tree: the repository's paths no longer exist from here
    demo = (ROOT / "recipes" / "smollm2-135m" / "balance_sft_cpu.yaml").read_text()
    for name in ("smollm2-135m/balance_sft_cpu", "smollm2-135m/balance_sft_cpu.yaml",
                 "recipes/smollm2-135m/balance_sft_cpu.yaml"):
        assert Path(resolve_config(name)).read_text() == demo, name
    assert package_data_path("balancetrl/data/demo/train.jsonl") == str(ROOT / "balancetrl/data/demo/train.jsonl")
    assert package_data_path("balancetrl/nothing.jsonl") == "balancetrl/nothing.jsonl"  # left for preflight to refuse
    assert package_data_path("data/train.jsonl") == "data/train.jsonl"  # not under balancetrl/: never redirected

    Path("mine.yaml").write_text("model_name_or_path: x\n")
    assert resolve_config("mine.yaml") == "mine.yaml"  # a file that exists wins
    for bad in ("smollm2-135m/balance_sft_gpu", "../recipes/smollm2-135m/balance_sft_cpu", "/etc/passwd.yaml"):
        with pytest.raises(RecipeError) as e:
            resolve_config(bad)
        assert "smollm2-135m/balance_sft_cpu" in str(e.value)  # the error lists the shipped names


@pytest.mark.slow
def test_the_wheel_installed_outside_the_source_tree_launches_with_a_packaged_accelerate_config(tmp_path):
    # The wheel, not the checkout: a fresh venv whose dependencies come from this one (a .pth line in its
    # site-packages; the editable install's own .pth there is not processed), run from a folder outside the tree.
    import json
    import os
    import site

    from conftest import save_tiny_run_inputs

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("balancetrl-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(target, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, str(wheel)],
                   check=True, timeout=300)
    where = subprocess.run([str(python), "-c", "import balancetrl; print(balancetrl.__file__)"], capture_output=True,
                           text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(target), where  # the installed wheel, not the checkout
    # the recipes and the demo data by the names the docs use, read from the wheel's copies
    found = subprocess.run([str(python), "-c", "from balancetrl.scripts.recipe import resolve_config; "
                            "from balancetrl.scripts.packaged import package_data_path; "
                            "print(resolve_config('recipes/smollm2-135m/balance_sft_cpu.yaml')); "
                            "print(package_data_path('balancetrl/data/demo/train.jsonl'))"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert [f.startswith(target) and Path(f).is_file() for f in found] == [True, True], found

    model, data = save_tiny_run_inputs(tmp_path, repeat=2)
    (tmp_path / "recipe.yaml").write_text(f"""
model_name_or_path: {model}
chat_template: keep
dataset_path: {data}
allow_missing_cot: true
output_dir: {tmp_path / 'out'}
use_cpu: true
max_steps: 2
per_device_train_batch_size: 1
save_strategy: "no"
report_to: none
gradient_checkpointing: false
bf16: false
""")
    from test_distributed import _free_port

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    # `python -m balancetrl.cli` is the console script's entry point (pip --target puts scripts outside the venv)
    r = subprocess.run([str(python), "-m", "balancetrl.cli", "balance-sft", "--config", "recipe.yaml",
                        "--accelerate_config", "multi_cpu", "--main_process_port", str(_free_port())],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "balance_sft_summary.json").read_text())
    assert summary["engine"]["engine"] == "ddp" and summary["engine"]["processes"] == 2
