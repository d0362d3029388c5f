"""The `balancetrl` console script: TRL's CLI with the BalanceSFT commands added.

`balancetrl balance-sft --config RECIPE [--flag value] [--accelerate_config zero3|PATH]` parses the recipe like
`trl sft` does (TRL's `TrlParser`, YAML + flags) and launches `balancetrl/scripts/balance_sft.py` through TRL's
accelerate launcher. `check`, `stats`, `eval`, `push` are ours; every TRL command (`sft`, `dpo`, `env`, ...) is
TRL's own, unchanged.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

from trl.cli.commands import get_commands
from trl.cli.commands.base import Command, CommandContext
from trl.cli.commands.training import TrainingCommand

from .vendor.trl_cli import subtract_subsequence

ACCELERATE_CONFIGS = "balancetrl.accelerate_configs"  # the accelerate configs shipped inside the package


def config_names(package: str) -> list[str]:
    from importlib.resources import files

    return sorted(p.name[: -len(".yaml")] for p in files(package).iterdir() if p.name.endswith(".yaml"))


def resolve_accelerate_config(launch_args: list[str]) -> list[str]:
    """`--accelerate_config NAME|PATH` -> `--config_file PATH`: a file as given, else ours by name (they set λ's
    parameter group and the CPU engines up as balancetrl needs), else TRL's by name; any other name is an error that
    lists both sets."""
    from importlib.resources import files

    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    if "--accelerate_config" in launch_args:
        i = launch_args.index("--accelerate_config")
        if i + 1 < len(launch_args) and not Path(launch_args[i + 1]).is_file():
            name = launch_args[i + 1]
            ours = files(ACCELERATE_CONFIGS) / f"{name}.yaml"
            if ours.is_file():
                launch_args = launch_args[: i + 1] + [str(ours)] + launch_args[i + 2:]
            elif name not in config_names("trl.accelerate_configs"):
                raise ValueError(
                    f"--accelerate_config {name!r} is neither a file nor a config name: balancetrl's are "
                    f"{', '.join(config_names(ACCELERATE_CONFIGS))}; TRL's are "
                    f"{', '.join(config_names('trl.accelerate_configs'))}"
                )
    return resolve_accelerate_config_argument(launch_args)


class BalanceSFTCommand(TrainingCommand):
    """`balancetrl balance-sft`: TRL's `TrainingCommand` pointed at our script, with recipe validation."""

    def __init__(self):
        super().__init__("balance-sft")
        self.help_text = "Run BalanceSFT (SSB loss + HDR loop) from a recipe"

    def run(self, args: Namespace, context: CommandContext) -> int:
        return self.launch(context.argv_after(self.name))

    def launch(self, all_args: list[str]) -> int:
        from .scripts import balance_sft
        from .scripts.preflight import PreflightError
        from .scripts.recipe import RecipeError

        parser = balance_sft.make_parser(prog="balancetrl balance-sft")
        try:
            # Parse (and validate) here, in the launcher: a typo fails before any process starts.
            *_, config_launch, cli_launch = parser.parse_recipe(all_args)
            launch_args = resolve_accelerate_config(config_launch + cli_launch)
        except (RecipeError, PreflightError, ValueError) as e:
            print(f"balancetrl balance-sft: error: {e}", file=sys.stderr)
            return 2
        # As `trl sft`: launch flags given on the command line are not passed on to the script; recipe keys meant
        # for accelerate stay in the YAML, where the script's parser leaves them unused.
        # TRL's `launch_training_script` only finds scripts inside trl/scripts; these are its three lines for ours.
        from accelerate.commands.launch import launch_command, launch_command_parser

        script_args = subtract_subsequence(all_args, cli_launch)
        launch_command(launch_command_parser().parse_args(launch_args + [balance_sft.__file__] + script_args))
        return 0


def extra_commands() -> list[Command]:
    from .commands.check import CheckCommand
    from .commands.eval import EvalCommand
    from .commands.push import PushCommand
    from .commands.stats import StatsCommand

    return [BalanceSFTCommand(), CheckCommand(), StatsCommand(), EvalCommand(), PushCommand()]


def build_parser(commands: list[Command]) -> ArgumentParser:
    parser = ArgumentParser(prog="balancetrl", allow_abbrev=False,
                            description="BalanceSFT for TRL. TRL's own commands (sft, dpo, ...) work unchanged.")
    subparsers = parser.add_subparsers(help="available commands", dest="command")
    for command in commands:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `balancetrl` CLI (the structure of `trl.cli.main.main`, with our commands first)."""
    ours = extra_commands()
    names = {c.name for c in ours}
    commands = ours + [c for c in get_commands() if c.name not in names]
    by_name = {c.name: c for c in commands}
    parser = build_parser(commands)
    argv = list(sys.argv[1:] if argv is None else argv)
    args, _ = parser.parse_known_args(argv)
    if getattr(args, "command", None) is None:
        parser.print_help()
        return 0
    return by_name[args.command].run(args, CommandContext(argv=argv))


if __name__ == "__main__":
    raise SystemExit(main())
