"""Argument parsing for ``contextd verify``, ``backup`` and ``restore``.

Kept apart from :mod:`contextd.operations` so that building the command line (and
``contextd --help``) imports neither SQLAlchemy nor the settings model.
"""

from __future__ import annotations

import argparse
from typing import Any


def _deferred(name: str) -> Any:
    def run(args: argparse.Namespace, settings: Any) -> int:
        from contextd import operations

        command: Any = getattr(operations, name)
        return int(command(args, settings))
    return run


def register(sub: Any) -> None:
    """Add ``verify``, ``backup`` and ``restore`` to the command line's subparsers."""
    verify = sub.add_parser("verify", help="check the vector store against SQL (offline)")
    verify.add_argument("--sample", type=int, default=1000,
                        help="documents whose chunk ids are looked up (default 1000)")
    verify.set_defaults(func=_deferred("cmd_verify"))
    backup = sub.add_parser("backup", help="snapshot SQL and the store into DIR (offline)")
    backup.add_argument("dir")
    backup.set_defaults(func=_deferred("cmd_backup"))
    restore = sub.add_parser("restore", help="restore a backup from DIR, then verify")
    restore.add_argument("dir")
    restore.set_defaults(func=_deferred("cmd_restore"))
