"""Where an app's secret comes from: an environment variable's value or a file's
content, checked (one line of visible ASCII; a regular file, not too large) without
ever quoting it in a message.
"""

from __future__ import annotations

import os
import re
import stat

from .._secret import Secret

__all__ = ["read_secret_file", "secret_problem"]

#: What an AppSecret (or WeCom corpsecret) looks like: one token of visible ASCII.
_SECRET_TEXT = re.compile(r"[\x21-\x7e]{1,4096}")
#: Longest secret_file read (an AppSecret is 32 characters).
_MAX_SECRET_FILE = 4096


def secret_problem(value: str) -> str | None:
    """What is wrong with a secret's text (``None``: nothing). Never quotes it."""
    value = value.strip()
    if not value:
        return "is not set or empty"
    if not _SECRET_TEXT.fullmatch(value):
        return (
            "is not one line of visible ASCII (an AppSecret is 32 letters and digits): "
            "the wrong file or variable?"
        )
    return None


def read_secret_file(path: str) -> tuple[Secret | None, str | None]:
    """The secret in the file at ``path`` and a warning, or ``None`` and what is wrong.

    Opened without blocking and read only if it is a regular file: a FIFO or a device
    (``/dev/stdin``, ``/dev/zero``) would hang the start or read junk. Symlinks are
    followed (Kubernetes mounts secrets through them). The content never reaches a
    message, and no local holds it in clear when an error is raised."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, f"{path} is not a regular file"
        if info.st_size > _MAX_SECRET_FILE:
            return None, f"{path} is too large for a secret"
        try:
            problem = secret_problem(file.read(_MAX_SECRET_FILE + 1).decode("utf-8"))
        except UnicodeDecodeError:
            return None, f"{path} is not UTF-8 text"
        if problem is not None:
            return None, f"{path} " + problem.replace("is not set or empty", "is empty")
        file.seek(0)
        secret = Secret(file.read(_MAX_SECRET_FILE + 1).decode("utf-8").strip())
    warning = None
    if info.st_mode & stat.S_IROTH:
        warning = f"{path} is readable by every user of this host: chmod o-r it (0600 or 0640)"
    return secret, warning
