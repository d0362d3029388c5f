"""`balancetrl` CLI subcommands, each a `trl.cli.commands.base.Command`."""
