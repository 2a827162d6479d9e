"""Subcommands of the ``xbarsim`` CLI (one module each, with ``register(subparsers)``)."""
