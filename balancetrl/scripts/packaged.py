"""What a recipe may name from the installed package: the shipped recipes (`--config smollm2-135m/balance_sft_cpu`)
and the shipped demo data (`dataset_path: balancetrl/data/demo/train.jsonl`).

Both resolve alike from the repository (a checkout on the path or an editable install) and from a wheel installed
anywhere, and a path that exists from the current directory always wins over the package's file of that name.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

RECIPES = "balancetrl.recipes"  # the repository's recipes/ folder, installed under this name (setup.py maps it)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the installed `balancetrl` folder (the checkout's in a checkout)


def recipes_root():
    """The folder of the shipped recipes: the package `balancetrl.recipes`, i.e. the wheel's copy or, through an
    editable install's finder, the checkout's `recipes/`. A checkout used from `PYTHONPATH` without that install has no
    such package; its `recipes/` folder beside `balancetrl/` holds the same files."""
    try:
        return files(RECIPES)
    except ModuleNotFoundError:
        return PACKAGE_ROOT.parent / "recipes"


def recipe_names() -> list[str]:
    """`MODEL/VARIANT` of every shipped recipe (`smollm2-135m/balance_sft_cpu`, ...), sorted."""
    root = recipes_root()
    if not root.is_dir():
        return []
    return sorted(f"{folder.name}/{f.name[: -len('.yaml')]}" for folder in root.iterdir() if folder.is_dir()
                  for f in folder.iterdir() if f.name.endswith(".yaml"))


def find_recipe(name: str) -> str | None:
    """The file of the shipped recipe `name`, or None. `name` is `MODEL/VARIANT` as `recipe_names()` lists it, with
    or without `.yaml`, with or without a leading `recipes/` (so the repository's paths, `recipes/MODEL/VARIANT.yaml`,
    work from an installed wheel outside it)."""
    parts = list(Path(name).parts)
    if parts[:1] == ["recipes"]:
        parts = parts[1:]
    if not parts or any(p in ("", ".", "..") for p in parts) or Path(name).is_absolute():
        return None
    if parts[-1].endswith(".yaml"):
        parts[-1] = parts[-1][: -len(".yaml")]
    candidate = recipes_root().joinpath(*parts[:-1], parts[-1] + ".yaml")
    return str(candidate) if candidate.is_file() else None


def package_data_path(path: str | None) -> str | None:
    """A relative path under `balancetrl/` that does not exist from the current directory -> the installed package's
    file of that name, when it has one: `balancetrl/data/demo/train.jsonl` is the repository's file when run from the
    repository root (`make demo`), and the wheel's copy anywhere else. Every other path comes back as given."""
    if path is None:
        return None
    given = Path(path)
    if given.is_absolute() or given.parts[:1] != ("balancetrl",) or given.exists():
        return path
    packaged = PACKAGE_ROOT.joinpath(*given.parts[1:])
    return str(packaged) if packaged.exists() else path
