"""``FileStore``: one token shared by every process on one host, kept in a directory.

Layout of the directory, for a key ``k`` (its file stem is a readable slug of ``k``
plus a short hash, so any key maps to one safe file name):

- ``<stem>.token``: the token as JSON. Written to a temporary file in the same directory
  and moved into place with :func:`os.replace`, so a reader sees the old record or the
  new one, never a torn one; readers take no lock.
- ``<stem>.meta``: one small record with its expiry (wall-clock epoch seconds).
- ``<stem>.mutex``: locked with ``flock`` for the few microseconds of a
  read-modify-write (write-unless-newer, compare-and-delete, taking the lease lock).
  Waits for it are bounded: by the caller's ``timeout`` in ``acquire``, else by
  ``MUTEX_WAIT`` seconds, after which a :class:`~wxauth.StoreError` says a stopped or
  hung process holds it (a dead one loses it at once).
- ``<stem>.lease`` and ``<stem>.lock.<generation>``: the single-flight lock (below).
  The lease file names the current generation, the fence of the latest acquisition
  (a counter, one more each time and never below the stored token's fence), that
  holder's lease in seconds, and for people reading it a wall-clock ``until``.
- ``<stem of the table>.records/<stem of the name>.rec``: a durable record, as JSON
  with its name; no expiry. Every write of a table's records (and compare-and-set)
  runs under the table's mutex, ``<stem of "records:" + table>.mutex``.

The single-flight lock is an ``fcntl.flock`` on ``<stem>.lock.<generation>``, not a
record with a lease alone, and not the ``filelock`` package:

- The kernel drops an ``flock`` the moment its holder exits, however it exits
  (``SIGKILL``, OOM killer, a segfault). A worker killed in the middle of a fetch
  therefore frees the lock at once, and the next waiter fetches without waiting for a
  lease to run out. A lease-only record would make everyone wait out the full lease.
- It is the standard library: no dependency, and nothing to clean up after a crash.
- ``flock`` locks belong to an open file description, so two threads of one process
  that open the file separately exclude each other too (POSIX ``fcntl`` record locks
  would not: they belong to the process).

A holder that is alive but stuck (stopped with ``SIGSTOP``, a frozen VM, a fetch that
overran its ``lease``) still keeps its ``flock``. The lease covers that case: when it
has run out, the next caller under the mutex moves the lock to a new generation file
and takes that one, exactly as a Redis lease would expire. The flock, not a clock,
says the holder is alive, so its lease is measured by the waiters: from when this
process first saw that acquisition (generation and fence) held, with
:func:`time.monotonic`. A wall clock stepping an hour ahead mid-fetch therefore hands
nobody the lock; the price is that a stuck holder is taken over one full lease after a
waiter first finds it held, not exactly when its own lease ends. The stuck holder's
:meth:`~wxauth.StoreLock.held` turns false, and its
:meth:`~wxauth.StoreLock.release` sees that its generation is no longer current and
releases nothing but its own stale file.

Waiters poll with a non-blocking ``flock`` and a growing pause (1 ms doubling to
50 ms, with jitter) rather than block in the kernel, so that ``timeout`` is honoured
and the lease can be checked; the mutex is polled the same way (pauses up to 10 ms).

Trust: the directory (symbolic links in ``path`` resolved once, at construction) must
belong to the user running wxauth and not be writable by group or others, or
:class:`~wxauth.StoreError` says why; no file in it is opened through a symbolic link
(``O_NOFOLLOW``), nor blocked on if it is a FIFO, and records are replaced with
:func:`os.replace`, which swaps a planted link rather than writing through it.

Safe across ``os.fork``: a child closes its copies of the descriptors that carry a
lock (a copy would otherwise pin the parent's ``flock`` for the child's lifetime).

Limits: POSIX only (Linux, macOS, the BSDs): on Windows, :class:`FileStore` raises
``NotImplementedError``; use :class:`~wxauth.RedisStore` there. A local file system
only: on NFS, ``flock`` is emulated with per-process ``fcntl`` locks (or not at all),
so the directory must not be shared between hosts. Use Redis for many hosts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import StoreError
from .._token import Token
from ._base import StoreLock, TokenStore, poll_until
from ._filelock import (
    MUTEX_POLL_MAX,
    MUTEX_WAIT,
    NO_SURPRISES,
    POLL_FIRST,
    FileLock,
    MutexBusyError,
    close_lock_fd,
    flock_nb,
    open_lock_fd,
    stem,
)

__all__ = ["FileStore"]

logger = logging.getLogger("wxauth")


class FileStore(TokenStore):
    """Keep tokens in a directory shared by the processes of one host.

    ``FileStore(path)``: ``path`` is a directory, created (mode ``0700``) if missing.
    Give every process of a deployment (gunicorn workers, cron jobs, Celery workers)
    the same path and they share one token: one fetch, whoever asks first, and the
    others read what it wrote. Files are created ``0600``; the directory holds access
    tokens, so it must be private to the service's user: like ssh with ``~/.ssh``,
    :class:`StoreError` refuses a directory (symbolic links resolved) owned by another
    user or writable by group or others. No file in it is opened through a symbolic
    link: a link where a lock file goes is an error, one where a record goes reads as
    missing (with a warning) and the next write replaces the link, not its target.

    Atomic writes (temporary file plus :func:`os.replace`), so readers never see a
    half-written token. Write-unless-newer and compare-and-delete run under a short
    ``flock``. The single-flight lock is an ``flock`` too, freed by the kernel the
    moment a holder dies, and taken over after its lease if a live holder overruns it.
    POSIX and local file systems only (see the module docstring for why).

    Tokens stay on disk until replaced or deleted (the manager judges freshness);
    meta records expire after their ``ttl``; durable records (:meth:`put_record`)
    stay until replaced or deleted.
    """

    shared = True
    durable = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if sys.platform == "win32":  # pragma: no cover - not run on POSIX CI
            raise NotImplementedError(
                "FileStore needs fcntl.flock and runs on POSIX systems only; "
                "use RedisStore (or MemoryStore in a single process) on Windows"
            )
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"FileStore path {self.path} is not a directory")
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the FileStore directory {self.path}: {exc.strerror}"
            ) from None
        #: The directory the files live in: ``path`` with symbolic links resolved once,
        #: so the directory that was checked is the one used.
        self._dir = Path(os.path.realpath(self.path))
        self._check_trust()

    def _check_trust(self) -> None:
        """Refuse a directory someone else could plant files in, as ssh refuses such a
        ``~/.ssh``: one owned by another user, or writable by group or others."""
        directory = self._dir
        try:
            info = os.stat(directory)
        except OSError as exc:
            raise StoreError(
                f"cannot inspect the FileStore directory {directory}: {exc.strerror}"
            ) from None
        euid = os.geteuid()
        if info.st_uid != euid:
            raise StoreError(
                f"FileStore directory {directory} is owned by uid {info.st_uid}, not uid "
                f"{euid} that runs wxauth; it holds access tokens, so chown it to that user"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o022:
            raise StoreError(
                f"FileStore directory {directory} is writable by group or others "
                f"(mode {mode:04o}); chmod 700 it"
            )

    # -- file helpers ----------------------------------------------------------------

    def _file(self, key: str, suffix: str) -> Path:
        return self._dir / f"{stem(key)}.{suffix}"

    def _read(self, file: Path) -> bytes | None:
        """The file's bytes; ``None`` if it is missing, or if it is a symbolic link or
        not a regular file (with a warning): never followed, never blocked on."""
        try:
            fd = os.open(file, os.O_RDONLY | NO_SURPRISES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if os.path.islink(file):
                logger.warning(
                    "ignoring %s in %s: it is a symbolic link, which FileStore never "
                    "follows; the next write replaces it",
                    file.name,
                    self.path,
                )
                return None
            raise StoreError(f"cannot read {file.name} in {self.path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    logger.warning(
                        "ignoring %s in %s: it is not a regular file", file.name, self.path
                    )
                    return None
                return handle.read()
        except OSError as exc:
            raise StoreError(f"cannot read {file.name} in {self.path}: {exc.strerror}") from None

    def _write(self, file: Path, data: bytes, *, sync: bool = False) -> None:
        """Replace ``file`` atomically; with ``sync``, on disk before it is replaced
        (a durable record must not read as empty after a power cut)."""
        # Same directory, so os.replace is a rename within one file system: atomic.
        try:
            # mkstemp creates with O_EXCL (no link followed); os.replace swaps the
            # directory entry, so a link planted at ``file`` is replaced, not followed.
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    if sync:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.replace(tmp, file)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {file.name} in {self.path}: {exc.strerror}") from None

    def _unlink(self, file: Path) -> None:
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot delete {file.name} in {self.path}: {exc.strerror}") from None

    @contextlib.contextmanager
    def _mutex(self, key: str, wait: float | None = None) -> Iterator[None]:
        """Hold the key's short internal lock (read-modify-write sections only).

        Waits at most ``wait`` seconds (``None``: :data:`MUTEX_WAIT`), polling with a
        non-blocking ``flock``, then raises :class:`MutexBusyError`. A live holder keeps it
        for microseconds and a dead one loses it at once, so only a stopped or hung
        process makes anyone wait; a blocking ``flock`` would wait for it forever.
        """
        file = self._file(key, "mutex")
        bound = MUTEX_WAIT if wait is None else max(wait, 0.0)
        fd = open_lock_fd(self, file)
        try:
            if not poll_until(
                lambda: flock_nb(self, fd, file), bound, first=POLL_FIRST, cap=MUTEX_POLL_MAX
            ):
                raise MutexBusyError(
                    f"the internal lock {file.name} in {self.path} has been held by another "
                    f"process for over {bound:g} s (a stopped or hung process?)"
                )
            yield
        finally:
            close_lock_fd(fd)  # closing the only descriptor releases the flock

    def _load_token(self, key: str) -> Token | None:
        data = self._read(self._file(key, "token"))
        if data is None:
            return None
        try:
            return Token.from_json(data)
        except ValueError:
            # A cache, not a record of truth: an unreadable entry is a missing one,
            # and the next fetch overwrites it.
            logger.warning("ignoring a malformed token record for key %s in %s", key, self.path)
            return None

    # -- TokenStore ------------------------------------------------------------------

    def get(self, key: str) -> Token | None:
        """Return the stored token (lock-free: writes are atomic renames)."""
        return self._load_token(key)

    def set(self, key: str, token: Token) -> bool:
        """Write ``token`` unless the stored one is newer (:meth:`Token.is_older_than`:
        the larger fence wins, then the later ``fetched_at``)."""
        with self._mutex(key):
            current = self._load_token(key)
            if current is not None and token.is_older_than(current):
                return False
            self._write(self._file(key, "token"), token.to_json().encode("utf-8"))
            return True

    def delete_if(self, key: str, value: str) -> bool:
        """Delete the token only if its value is ``value`` (under the mutex)."""
        with self._mutex(key):
            current = self._load_token(key)
            if current is None or current.value != value:
                return False
            self._unlink(self._file(key, "token"))
            return True

    def lock(self, key: str, *, lease: float) -> StoreLock:
        """Return the cross-process single-flight lock of ``key`` (see the class)."""
        if lease <= 0:
            raise ValueError("lease must be > 0")
        return FileLock(self, key, float(lease))

    def get_meta(self, key: str) -> str | None:
        """Return the meta record of ``key`` unless its ttl has run out."""
        data = self._read(self._meta_file(key))
        if data is None:
            return None
        try:
            raw: Any = json.loads(data)
            value, until = str(raw["value"]), float(raw["until"])
        except (ValueError, KeyError, TypeError):
            return None
        return value if time.time() < until else None

    def set_meta(self, key: str, value: str, *, ttl: float) -> None:
        """Store a meta record for ``ttl`` seconds (wall clock)."""
        record = json.dumps({"value": value, "until": time.time() + float(ttl)})
        self._write(self._meta_file(key), record.encode("utf-8"))

    def _meta_file(self, key: str) -> Path:
        # Its own suffix: a meta key and a token key with the same text never collide.
        return self._file(key, "meta")

    # -- durable records ---------------------------------------------------------------

    def _table_dir(self, table: str, *, create: bool) -> Path | None:
        """The directory of ``table``'s records (``None`` if it does not exist and
        ``create`` is false). Refused, like the store's own directory, when it is a
        symbolic link, not a directory, or writable by group or others."""
        directory = self._dir / f"{stem(table)}.records"
        try:
            info = os.lstat(directory)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreError(
                    f"cannot create {directory.name} in {self.path}: {exc.strerror}"
                ) from None
            info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise StoreError(
                f"{directory.name} in {self.path} is not a directory of this user (a "
                "symbolic link?): remove it"
            )
        if stat.S_IMODE(info.st_mode) & 0o022:
            raise StoreError(f"{directory.name} in {self.path} is writable by group or others")
        return directory

    def _record_file(self, table: str, name: str, *, create: bool) -> Path | None:
        directory = self._table_dir(table, create=create)
        return None if directory is None else directory / f"{stem(name)}.rec"

    def _load_record(self, file: Path | None, name: str) -> str | None:
        if file is None:
            return None
        data = self._read(file)
        if data is None:
            return None
        try:
            raw: Any = json.loads(data)
            stored_name, value = raw["name"], raw["value"]
        except (ValueError, KeyError, TypeError):
            stored_name = value = None
        if stored_name != name or not isinstance(value, str):
            logger.warning("ignoring a malformed record %s in %s", file.name, self.path)
            return None
        return value

    def get_record(self, table: str, name: str) -> str | None:
        """Return the durable record ``name`` of ``table`` (lock-free: atomic renames)."""
        return self._load_record(self._record_file(table, name, create=False), name)

    def put_record(self, table: str, name: str, value: str) -> None:
        """Write the durable record ``name`` of ``table`` (under the table's mutex)."""
        file = self._record_file(table, name, create=True)
        assert file is not None
        with self._mutex(f"records:{table}"):
            failure = self._write_record(file, name, value)
        if failure is not None:
            raise failure

    def replace_record(self, table: str, name: str, old: str | None, new: str | None) -> bool:
        """Compare-and-set the durable record ``name`` of ``table`` (under the table's
        mutex; ``new=None`` deletes it)."""
        file = self._record_file(table, name, create=new is not None)
        with self._mutex(f"records:{table}"):
            if self._load_record(file, name) != old:
                return False
            if file is None:  # nothing stored and nothing to write
                return True
            if new is None:
                self._unlink(file)
                return True
            failure = self._write_record(file, name, new)
        if failure is not None:
            raise failure
        return True

    def _write_record(self, file: Path, name: str, value: str) -> StoreError | None:
        """Write one record; the error is returned without its traceback, so that no
        frame a crash reporter renders keeps the record (a refresh token) in clear."""
        data = json.dumps({"name": name, "value": str(value)}).encode("utf-8")
        try:
            self._write(file, data, sync=True)
        except StoreError as exc:
            exc.__context__ = None  # the OSError's traceback holds _write's frame too
            return exc.with_traceback(None)
        return None

    def records(self, table: str) -> dict[str, str]:
        """Every durable record of ``table`` (one directory listing, one read each)."""
        directory = self._table_dir(table, create=False)
        if directory is None:
            return {}
        found: dict[str, str] = {}
        try:
            entries = [entry.name for entry in os.scandir(directory)]
        except OSError as exc:
            message = f"cannot list {directory.name} in {self.path}: {exc.strerror}"
            raise StoreError(message) from None
        for entry in entries:
            if not entry.endswith(".rec"):
                continue  # a temporary file of a write in progress
            data = self._read(directory / entry)
            try:
                raw: Any = json.loads(data) if data is not None else None
                name, value = raw["name"], raw["value"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(name, str) and isinstance(value, str) and entry == f"{stem(name)}.rec":
                found[name] = value
        return found

    def __repr__(self) -> str:
        return f"FileStore(path={str(self.path)!r})"
