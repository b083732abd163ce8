"""The errmsg texts the emulator answers with, and how each host decorates them.

api.weixin.qq.com ends every errmsg with `` rid: ...``; qyapi.weixin.qq.com appends a
hint, the caller's IP and a link. Texts listed in ``wechat-token-api.md`` and
``open-platform.md`` (61xxx, 40170, 48001) are copies; the others (40243, 895xx,
WeCom's) are plausible English (see ``docs/testing.md``).
The random parts (rid, hint) are drawn by the caller, so a seeded emulator stays
reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "WECHAT_ERRMSG",
    "WECOM_ERRMSG",
    "clientip_not_registered",
    "ip_not_in_whitelist",
    "wechat_errmsg",
    "wecom_errmsg",
]

#: errmsg texts of api.weixin.qq.com, without the ``rid: ...`` suffix.
WECHAT_ERRMSG: Mapping[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40097: "invalid args",
    40125: "invalid appsecret",
    40243: "AppSecret is frozen, unfreeze it on the platform before calling again",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    42001: "access_token expired",
    43002: "require POST method",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit, must slower, retry next minute",
    40170: "args count exceed count limit",
    47001: "data format error",
    48001: "api unauthorized",
    48006: "forbid to clear quota because of reaching the limit",
    50002: "user limited",
    50004: "user not allowed to use access_token",
    61003: "component is not authorized by this account",
    61004: "access clientip is not registered",
    61005: "component ticket is expired",
    61006: "component ticket is invalid",
    61007: "api is unauthorized to component",
    61009: "invalid code",
    61010: "code is expired",
    61011: "invalid component",
    61023: "refresh_token is invalid",
    61024: "must use api(api_component_token) to get token for component acct",
    76021: "cgi_path not found, please check",
    89501: "this call is pending confirmation by the account administrator",
    89503: "this call needs the account administrator to confirm the ip",
    89506: "the administrator refused this ip, retry after 24 hours",
    89507: "the administrator refused this ip, retry after 1 hour",
}

#: errmsg texts of qyapi.weixin.qq.com, without the ``, hint: [...]`` suffix.
WECOM_ERRMSG: Mapping[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40091: "secret is invalid",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "corpsecret missing",
    40097: "invalid args",
    42001: "access_token expired",
    45033: "api concurrent out of limit",
    60020: "not allow to access from your ip",
}


def wechat_errmsg(errcode: int, rid: str, text: str | None = None) -> str:
    """WeChat's errmsg for ``errcode`` (or ``text``), ending in `` rid: <rid>``."""
    text = text or WECHAT_ERRMSG.get(errcode, f"emulated error {errcode}")
    return f"{text} rid: {rid}"


def wecom_errmsg(errcode: int, hint: str, client_ip: str, text: str | None = None) -> str:
    """WeCom's errmsg for ``errcode`` (or ``text``), with its hint, caller IP and link."""
    text = text or WECOM_ERRMSG.get(errcode, f"emulated error {errcode}")
    return (
        f"{text}, hint: [{hint}], from ip: {client_ip}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )


def ip_not_in_whitelist(ip: str) -> str:
    """The text of 40164, which names the caller's IP in both notations."""
    ipv6 = f"::ffff:{ip}" if ":" not in ip else ip
    return f"invalid ip {ip} ipv6 {ipv6}, not in whitelist"


def clientip_not_registered(ip: str) -> str:
    """The text of 61004 (Open Platform IP allowlist), which names the caller's IP."""
    return f"access clientip is not registered requestIP: {ip}"
