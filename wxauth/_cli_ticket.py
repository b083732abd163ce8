"""``wxauth ticket`` and ``wxauth sign``: a JS-SDK ticket, or a signed ``wx.config``.

``wxauth ticket`` prints a valid ticket (``--kind jsapi``, ``wx_card``, or with
``--source wecom`` ``agent_config``). ``wxauth sign --url URL`` prints the JSON that
``wx.config`` takes for that page (with ``--source wecom --agentid N``, the JSON of
``wx.agentConfig``). Credentials, ``--store``, ``--source`` and ``--api-base`` are those
of ``wxauth token``; the ticket is cached in the same store as the token, so repeated
calls reuse one ticket.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ._cli_token import UsageError, add_credential_arguments, run_with_manager

if TYPE_CHECKING:
    from ._manager import TokenManager

__all__ = ["add_sign_parser", "add_ticket_parser"]

_KINDS = ("jsapi", "wx_card", "agent_config")
_DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else None


def _check_kind(kind: str, source: str) -> None:
    """A :class:`UsageError` unless ``kind`` exists for ``source``'s family of apps."""
    wecom = source == "wecom"
    if kind == "agent_config" and not wecom:
        raise UsageError("--kind agent_config needs --source wecom")
    if kind == "wx_card" and wecom:
        raise UsageError("--kind wx_card is not a WeCom ticket (jsapi or agent_config)")


def _subparser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=summary,
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_ticket_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wxauth ticket`` on the ``wxauth`` parser."""
    parser = _subparser(subparsers, "ticket", "print a valid JS-SDK or card ticket")
    parser.add_argument(
        "--kind",
        choices=_KINDS,
        default="jsapi",
        help="ticket kind (default: %(default)s; agent_config only with --source wecom)",
    )
    add_credential_arguments(parser)
    parser.add_argument(
        "--refresh", action="store_true", help="fetch a new ticket even if one is cached"
    )
    parser.set_defaults(func=run_ticket)


def add_sign_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wxauth sign`` on the ``wxauth`` parser."""
    parser = _subparser(
        subparsers, "sign", "print the signed wx.config (or wx.agentConfig) JSON for a page URL"
    )
    parser.add_argument("--url", required=True, help="the page's full URL (#fragment dropped)")
    parser.add_argument(
        "--api",
        action="append",
        default=[],
        metavar="NAME",
        help="a JS API the page uses (repeat for several), e.g. updateAppMessageShareData",
    )
    parser.add_argument(
        "--kind",
        choices=("jsapi",),
        default="jsapi",
        help="ticket signing wx.config (default: %(default)s)",
    )
    parser.add_argument(
        "--agentid",
        help="WeCom application id: print wx.agentConfig, signed with the agent_config ticket",
    )
    add_credential_arguments(parser)
    parser.set_defaults(func=run_sign)


def run_ticket(args: argparse.Namespace) -> int:
    """Print the ticket on stdout; exit statuses as ``wxauth token``."""
    from .tickets import TicketManager

    def action(manager: TokenManager) -> str:
        _check_kind(args.kind, args.source)
        with TicketManager(manager, args.kind) as tickets:
            return tickets.refresh() if args.refresh else tickets.get_ticket()

    return run_with_manager(args, "ticket", action)


def run_sign(args: argparse.Namespace) -> int:
    """Print the ``wx.config`` (``wx.agentConfig``) JSON on stdout; exit statuses as
    ``wxauth token``."""
    from ._jssdk import agent_config, jssdk_config
    from .tickets import TicketManager

    def action(manager: TokenManager) -> str:
        if not args.url.partition("#")[0]:
            raise UsageError("--url is empty once its #fragment is dropped")
        if args.agentid is not None:
            if args.source != "wecom":
                raise UsageError("--agentid needs --source wecom")
            if not args.agentid:
                raise UsageError("--agentid is empty")
            with TicketManager(manager, "agent_config") as tickets:
                config = agent_config(
                    tickets, url=args.url, agentid=args.agentid, js_api_list=args.api
                )
        else:
            _check_kind(args.kind, args.source)
            with TicketManager(manager, args.kind) as tickets:
                config = jssdk_config(tickets, url=args.url, js_api_list=args.api)
        return json.dumps(config, ensure_ascii=False)

    return run_with_manager(args, "sign", action)
