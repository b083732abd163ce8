"""The ``wxauth`` command line.

Each subcommand has an ``_add_<name>(subparsers)`` here that imports the module that
declares it (``wxauth emulator`` lives beside the emulator, in ``wxauth.testing``) and
sets ``func`` to the function that runs it. Adding a subcommand means writing that
function and listing it in :data:`_SUBCOMMANDS`; :func:`main` needs no change.
Heavy imports happen inside the runners, so ``wxauth --help`` stays fast.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Sequence

from ._redact import RedactingArgumentParser

__all__ = ["build_parser", "main"]


def _add_emulator(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .testing._cli import add_emulator_parser

    add_emulator_parser(subparsers)


def _add_token(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._cli_token import add_token_parser

    add_token_parser(subparsers)


def _add_ticket(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._cli_ticket import add_ticket_parser

    add_ticket_parser(subparsers)


def _add_sign(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ._cli_ticket import add_sign_parser

    add_sign_parser(subparsers)


def _add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .server._cli import add_serve_parser

    add_serve_parser(subparsers)


def _add_keygen(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .server._cli import add_keygen_parser

    add_keygen_parser(subparsers)


_SUBCOMMANDS: Sequence[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = (
    _add_emulator,
    _add_token,
    _add_ticket,
    _add_sign,
    _add_serve,
    _add_keygen,
)


def build_parser(prog: str = "wxauth") -> argparse.ArgumentParser:
    """The ``wxauth`` parser with every subcommand."""
    parser = RedactingArgumentParser(
        prog=prog, description="wxauth: one shared, self-healing WeChat access_token."
    )
    # The subcommands' parsers are of the same class (argparse uses the parent's).
    subparsers = typing.cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wxauth`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
