"""Subcommands of `python -m memops`, one module each."""
