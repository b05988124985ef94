"""Subcommands of the `cadence` CLI, one module per family of commands."""
