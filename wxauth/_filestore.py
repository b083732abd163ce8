"""``FileStore``: one token shared by every process on one host, kept in a directory.

Layout of the directory, for a key ``k`` (its file stem is a readable slug of ``k``
plus a short hash, so any key maps to one safe file name):

- ``<stem>.token``: the token as JSON. Written to a temporary file in the same directory
  and moved into place with :func:`os.replace`, so a reader sees the old record or the
  new one, never a torn one; readers take no lock.
- ``<stem>.meta-<hash>``: one small record with its expiry (wall-clock epoch seconds).
- ``<stem>.mutex``: locked with ``flock`` for the few microseconds of a
  read-modify-write (write-unless-newer, compare-and-delete, taking the lease lock).
- ``<stem>.lease`` and ``<stem>.lock.<generation>``: the single-flight lock (below).

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
and takes that one, exactly as a Redis lease would expire. The stuck holder's
:meth:`~wxauth.StoreLock.release` then sees that its generation is no longer current
and releases nothing but its own stale file.

Waiters poll with a non-blocking ``flock`` and a growing pause (1 ms doubling to
50 ms, with jitter) rather than block in the kernel, so that ``timeout`` is honoured
and the lease can be checked.

Safe across ``os.fork``: a child closes its copies of the descriptors that carry a
lock (a copy would otherwise pin the parent's ``flock`` for the child's lifetime).

Limits: POSIX only (Linux, macOS, the BSDs): on Windows, :class:`FileStore` raises
``NotImplementedError``; use :class:`~wxauth.RedisStore` there. A local file system
only: on NFS, ``flock`` is emulated with per-process ``fcntl`` locks (or not at all),
so the directory must not be shared between hosts. Use Redis for many hosts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ._errors import StoreError
from ._store import LockContext, StoreLock, TokenStore, poll_until
from ._token import Token

if sys.platform != "win32":
    import fcntl

__all__ = ["FileStore"]

logger = logging.getLogger("wxauth")

#: First and longest pause between two tries of a contended lock, in seconds.
_POLL_FIRST = 0.001
_POLL_MAX = 0.05

_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")


def _stem(key: str) -> str:
    slug = _SLUG_RE.sub("_", key)[:64]
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}"


# An flock belongs to an open file description, which a forked child shares: if a
# process forks while one of its threads holds a FileStore lock, the child's copy of
# the descriptor would keep the lock held after the parent released it, for as long as
# the child lives (a gunicorn worker: forever). So every descriptor that carries an
# flock is tracked, and a child closes its copies right after the fork (closing a copy
# does not release the parent's lock; only LOCK_UN or closing the last copy does). The
# guard keeps a fork from landing between opening a descriptor and tracking it.
_fork_guard = threading.Lock()
_lock_fds: set[int] = set()
_held_locks: weakref.WeakSet[_FileLock] = weakref.WeakSet()


def _open_lock_fd(store: FileStore, file: Path) -> int:
    with _fork_guard:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {file.name} in {store.path}: {exc.strerror}") from None
        _lock_fds.add(fd)
        return fd


def _close_lock_fd(fd: int) -> None:
    with _fork_guard:
        _lock_fds.discard(fd)
        os.close(fd)


def _before_fork() -> None:
    _fork_guard.acquire()


def _after_fork_in_parent() -> None:
    _fork_guard.release()


def _after_fork_in_child() -> None:
    for fd in _lock_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    _lock_fds.clear()
    for lock in list(_held_locks):
        lock._forget_after_fork()
    _fork_guard.release()


class FileStore(TokenStore):
    """Keep tokens in a directory shared by the processes of one host.

    ``FileStore(path)``: ``path`` is a directory, created (mode ``0700``) if missing.
    Give every process of a deployment (gunicorn workers, cron jobs, Celery workers)
    the same path and they share one token: one fetch, whoever asks first, and the
    others read what it wrote. Files are created ``0600``; the directory holds access
    tokens, so keep it private to the service's user.

    Atomic writes (temporary file plus :func:`os.replace`), so readers never see a
    half-written token. Write-unless-newer and compare-and-delete run under a short
    ``flock``. The single-flight lock is an ``flock`` too, freed by the kernel the
    moment a holder dies, and taken over after its lease if a live holder overruns it.
    POSIX and local file systems only (see the module docstring for why).

    Tokens stay on disk until replaced or deleted (the manager judges freshness);
    meta records expire after their ``ttl``.
    """

    shared = True

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

    # -- file helpers ----------------------------------------------------------------

    def _file(self, key: str, suffix: str) -> Path:
        return self.path / f"{_stem(key)}.{suffix}"

    def _read(self, file: Path) -> bytes | None:
        try:
            return file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {file.name} in {self.path}: {exc.strerror}") from None

    def _write(self, file: Path, data: bytes) -> None:
        # Same directory, so os.replace is a rename within one file system: atomic.
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{file.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
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
    def _mutex(self, key: str) -> Iterator[None]:
        """Hold the key's short internal lock (read-modify-write sections only)."""
        fd = _open_lock_fd(self, self._file(key, "mutex"))
        try:
            # Held for microseconds by a live process, and dropped by the kernel if
            # that process dies: a blocking flock is the cheapest wait.
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            _close_lock_fd(fd)  # closing the only descriptor releases the flock

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
        return _FileLock(self, key, float(lease))

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

    def __repr__(self) -> str:
        return f"FileStore(path={str(self.path)!r})"


class _Lease(NamedTuple):
    """What ``<stem>.lease`` says: the current generation, the fence of the latest
    acquisition, its lease in seconds and (for people reading the file) until when,
    wall clock. ``valid`` is false when the file is missing or damaged."""

    generation: int
    fence: int
    lease: float | None
    until: float
    valid: bool


class _FileLock(LockContext):
    """The single-flight lock of one key in a :class:`FileStore` (one acquisition at a
    time per object; make one object per caller, as the manager does)."""

    def __init__(self, store: FileStore, key: str, lease: float) -> None:
        self._store = store
        self._key = key
        self._lease = lease
        self._fd: int | None = None
        self._generation = 0
        self._fence = 0
        self._guard = threading.Lock()

    @property
    def fence(self) -> int:
        """The fence of the current acquisition: one more than the largest of the
        lease file's counter and the stored token's fence (``0`` when not held)."""
        return self._fence

    def held(self) -> bool:
        """Whether this holder still owns the lock: its descriptor is open, the lease
        file still names its generation and fence (nobody took it over), and the lock
        file on disk is still the one it locked (not removed and re-created)."""
        fd = self._fd
        if fd is None:
            return False
        lease = self._read_lease()
        if not lease.valid or (lease.generation, lease.fence) != (self._generation, self._fence):
            return False
        try:
            mine = os.fstat(fd)
            on_disk = os.stat(self._lock_file(self._generation), follow_symlinks=False)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)

    def _lease_file(self) -> Path:
        return self._store._file(self._key, "lease")

    def _lock_file(self, generation: int) -> Path:
        return self._store._file(self._key, f"lock.{generation}")

    def _read_lease(self) -> _Lease:
        data = self._store._read(self._lease_file())
        if data is not None:
            try:
                raw: Any = json.loads(data)
                generation, fence = int(raw["generation"]), int(raw.get("fence", 0))
                lease = raw.get("lease")
                return _Lease(
                    generation,
                    fence,
                    None if lease is None else float(lease),
                    float(raw["until"]),
                    valid=True,
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        return _Lease(self._newest_generation(), 0, None, 0.0, valid=False)

    def _newest_generation(self) -> int:
        """The highest generation with a lock file on disk: where a lost or damaged
        lease file left off (stale generations are lower, and removed on release)."""
        prefix = f"{_stem(self._key)}.lock."
        newest = 0
        try:
            with os.scandir(self._store.path) as entries:
                for entry in entries:
                    number = entry.name[len(prefix) :]
                    if entry.name.startswith(prefix) and number.isdigit():
                        newest = max(newest, int(number))
        except OSError as exc:
            raise StoreError(f"cannot list {self._store.path}: {exc.strerror}") from None
        return newest

    def _flock_nb(self, generation: int) -> int | None:
        file = self._lock_file(generation)
        fd = _open_lock_fd(self._store, file)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _close_lock_fd(fd)
            return None
        except OSError as exc:
            _close_lock_fd(fd)
            raise StoreError(
                f"cannot lock {file.name} in {self._store.path}: {exc.strerror}"
            ) from None
        return fd

    def _try_acquire(self) -> bool:
        store = self._store
        with store._mutex(self._key):
            lease = self._read_lease()
            generation = lease.generation
            fd = self._flock_nb(generation)
            now = time.time()
            taken_over = False
            if fd is None:
                if now < lease.until:
                    return False
                # The holder is alive but has overrun its lease: move the lock to a
                # fresh file that nobody holds, and take that one.
                logger.warning(
                    "the token lock of key %s outlived its lease; taking it over", self._key
                )
                generation += 1
                fd = self._flock_nb(generation)
                if fd is None:  # pragma: no cover - only if a file was planted
                    return False
                taken_over = True
            try:
                # The counter never falls below the stored token's fence, so a lost or
                # damaged lease file cannot hand out a number that token outranks.
                stored = store._load_token(self._key)
                fence = max(lease.fence, 0 if stored is None else stored.fence) + 1
                record = {
                    "generation": generation,
                    "fence": fence,
                    "lease": self._lease,
                    "until": now + self._lease,
                }
                store._write(self._lease_file(), json.dumps(record).encode())
            except BaseException:
                # No lease written, no lock held: a descriptor kept open here would pin
                # the flock (and block every process on the host) until this one exits.
                _close_lock_fd(fd)
                if taken_over:
                    with contextlib.suppress(StoreError):
                        store._unlink(self._lock_file(generation))
                raise
            self._fd, self._generation, self._fence = fd, generation, fence
            _held_locks.add(self)
            return True

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; poll (1 ms doubling to 50 ms) while another holder has it."""
        if not self._guard.acquire(blocking, -1 if timeout is None or not blocking else timeout):
            return False
        try:
            if not blocking:
                taken = self._try_acquire()
            else:
                taken = poll_until(self._try_acquire, timeout, first=_POLL_FIRST, cap=_POLL_MAX)
            if not taken:
                self._guard.release()
            return taken
        except BaseException:
            if self._fd is None:
                self._guard.release()
            raise

    def release(self) -> None:
        """Release the lock. If the lease ran out and another caller took the lock
        over, release only this holder's stale file, never the new holder's lock."""
        fd = self._fd
        if fd is None:
            raise RuntimeError("release of a FileStore lock that is not held")
        self._fd = None
        self._fence = 0
        _held_locks.discard(self)
        try:
            with self._store._mutex(self._key):
                current = self._read_lease().generation
                _close_lock_fd(fd)  # drops the flock
                fd = None
                if current != self._generation:
                    # Taken over: nobody else will ever open this generation again.
                    self._store._unlink(self._lock_file(self._generation))
        finally:
            if fd is not None:
                _close_lock_fd(fd)
            self._guard.release()

    def _forget_after_fork(self) -> None:
        # In a forked child: the parent holds this lock, not us (our descriptor copy
        # was just closed), and the thread that held the guard does not exist here.
        self._fd = None
        self._fence = 0
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"<FileStore lock key={self._key!r} held={self._fd is not None}>"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
