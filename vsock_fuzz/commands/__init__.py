"""Subcommands of `vsock-fuzz`; see cli.py."""
