"""`RecipeParser`: TRL's `TrlParser` plus the two things a BalanceSFT recipe needs.

1. The nested `hdr:` section. `HfArgumentParser` only knows flat dataclass fields, so the section is taken out of
   the YAML before TRL sees it and becomes an `HDRConfig`; `--hdr.KEY VALUE` on the command line overrides it.
2. Unknown keys are errors that name the key. TRL hands config keys it does not know to `accelerate launch` (so a
   recipe may carry `num_processes: 2`); anything accelerate does not know either is a typo, and a typo that
   silently trains with a default is the worst kind of bug.
3. `--config` takes a file or the name of a shipped recipe (`smollm2-135m/balance_sft_cpu`), so the recipes work
   from an installed wheel (`resolve_config`, `balancetrl.scripts.packaged`).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

import yaml
from trl import TrlParser

from ..hdr.hdr_config import HDRConfig


class RecipeError(ValueError):
    """A recipe (YAML or flags) that cannot be used as written; the message says which key and why."""


def accelerate_launch_options() -> set[str]:
    """Option strings of `accelerate launch` (`--num_processes`, ...): keys a recipe may pass through to it."""
    from accelerate.commands.launch import launch_command_parser

    options = {s for action in launch_command_parser()._actions for s in action.option_strings if s.startswith("--")}
    return options | {"--accelerate_config"}  # TRL's shorthand, resolved into --config_file by the CLI


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _keys(strings: list[str]) -> list[str]:
    return [s.split("=", 1)[0] for s in strings if s.startswith("--")]


def build_hdr_config(section, overrides: dict | None = None, source: str = "recipe") -> HDRConfig | None:
    """`HDRConfig(**section)` with an error naming any unknown key. `None` section and no overrides: HDR is off."""
    if section is None and not overrides:
        return None
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise RecipeError(f"`hdr` in {source} must be a mapping of HDRConfig keys, got {type(section).__name__}")
    section = {**section, **(overrides or {})}
    fields = {f.name for f in dataclasses.fields(HDRConfig)}
    unknown = [k for k in section if k not in fields]
    if unknown:
        key = unknown[0]
        raise RecipeError(f"unknown key 'hdr.{key}' in {source}{_suggest(key, fields)}; HDR keys: {', '.join(sorted(fields))}")
    try:
        return HDRConfig(**section)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"invalid `hdr` section in {source}: {e}") from e


class RecipeParser(TrlParser):
    """`TrlParser` for BalanceSFT recipes.

    `parse_recipe(args)` returns `(*dataclasses, hdr_config, config_launch_args, cli_launch_args)`.
    """

    def __init__(self, dataclass_types, **kwargs):
        # No prefix matching: `--learning_rat` must be an error, not silently `--learning_rate`.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(dataclass_types, **kwargs)
        self._hdr_section = None
        self._config_path = "recipe"

    def set_defaults_with_config(self, **kwargs) -> list[str]:
        # TrlParser calls this with the YAML mapping (its `env:` already applied): the one place to take `hdr` out.
        self._hdr_section = kwargs.pop("hdr", None)
        _check_mixture(kwargs.get("datasets"))
        return super().set_defaults_with_config(**kwargs)

    def known_keys(self) -> set[str]:
        return {a.dest for a in self._actions} | {"hdr", "env", "config"}

    def parse_recipe(self, args: list[str]):
        """Parse `--config FILE` and flags.

        Returns the dataclasses, the `HDRConfig` (or `None`) and the arguments meant for `accelerate launch`, from
        the recipe and from the command line (keys that accelerate knows; inside an already launched script they
        are simply unused). Raises `RecipeError` for any other key.
        """
        args = list(args)
        if "--config" in args:
            i = args.index("--config")
            if i + 1 >= len(args):
                raise RecipeError("--config needs a path to a recipe YAML file or a shipped recipe's name")
            args[i + 1] = self._config_path = resolve_config(args[i + 1])
        args, hdr_overrides = _pop_hdr_flags(args)
        try:
            *outputs, config_rest, cli_rest = self.parse_args_and_config(
                args, return_remaining_strings=True, separate_remaining_strings=True
            )
        except FileNotFoundError as e:
            raise RecipeError(f"recipe file not found: {e.filename}") from e
        except yaml.YAMLError as e:
            raise RecipeError(f"recipe {self._config_path} is not valid YAML: {e}") from e
        except ValueError as e:  # a config dataclass's __post_init__ refused a value; the message names it
            raise RecipeError(f"{self._config_path}: {e}") from e
        launch = accelerate_launch_options()
        known = self.known_keys()
        for where, rest in ((f"recipe {self._config_path}", config_rest), ("the command line", cli_rest)):
            for flag in _keys(rest):
                if flag not in launch:
                    key = flag[2:]
                    raise RecipeError(f"unknown key '{key}' in {where}{_suggest(key, known)}")
        hdr = build_hdr_config(self._hdr_section, hdr_overrides, source=self._config_path)
        return (*outputs, hdr, config_rest, cli_rest)


def resolve_config(config: str) -> str:
    """`--config PATH|NAME` -> the recipe file: the path when it exists, else the shipped recipe of that name
    (`smollm2-135m/balance_sft_cpu`, `.yaml` and a leading `recipes/` optional: `balancetrl.scripts.packaged`).
    Anything else is an error that lists the shipped names."""
    from .packaged import find_recipe, recipe_names

    if Path(config).exists():
        return config
    found = find_recipe(config)
    if found is None:
        names = recipe_names()
        raise RecipeError(f"recipe {config!r} is neither a file nor a shipped recipe name"
                          f"{_suggest(config.removesuffix('.yaml').removeprefix('recipes/'), names)}; shipped recipes: "
                          f"{', '.join(names) or 'none found'}")
    return found


def _check_mixture(entries) -> None:
    """TRL's `datasets:` mixture: a list of mappings of `DatasetConfig` keys (TRL would raise a bare TypeError)."""
    if entries is None:
        return
    from trl.scripts.utils import DatasetConfig

    fields = {f.name for f in dataclasses.fields(DatasetConfig)}
    if not isinstance(entries, list):
        raise RecipeError(f"`datasets` must be a list of datasets ({', '.join(sorted(fields))}), "
                          f"got {type(entries).__name__}")
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or "path" not in entry:
            raise RecipeError(f"`datasets` entry {i} must be a mapping with a `path`")
        unknown = [k for k in entry if k not in fields]
        if unknown:
            raise RecipeError(f"unknown key '{unknown[0]}' in `datasets` entry {i}{_suggest(unknown[0], fields)}; "
                              f"keys: {', '.join(sorted(fields))}")


def _pop_hdr_flags(args: list[str]) -> tuple[list[str], dict]:
    """Take `--hdr.KEY VALUE` (or `--hdr.KEY=VALUE`) out of `args`; values are read as YAML scalars/lists."""
    rest, overrides, i = [], {}, 0
    while i < len(args):
        token = args[i]
        if token.startswith("--hdr."):
            key, _, value = token[len("--hdr."):].partition("=")
            if not _:
                if i + 1 >= len(args):
                    raise RecipeError(f"{token} needs a value")
                value, i = args[i + 1], i + 1
            try:
                overrides[key] = yaml.safe_load(value)
            except yaml.YAMLError as e:
                problem = getattr(e, "problem", None) or str(e).splitlines()[0]
                raise RecipeError(f"--hdr.{key}: {value!r} is not a YAML value ({problem}); quote it as a string, "
                                  f"e.g. --hdr.{key} \"'{value}'\"") from None
        else:
            rest.append(token)
        i += 1
    return rest, overrides
