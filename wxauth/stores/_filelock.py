"""The single-flight lock of a :class:`~wxauth.stores.FileStore` key, and the
descriptor bookkeeping that keeps ``flock`` honest across ``os.fork``.

The design (an ``flock`` on ``<stem>.lock.<generation>``, a lease file, takeover of a
holder that overran its lease) is described in :mod:`wxauth.stores._file`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import StoreError
from ._base import LockContext, poll_until

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from ._file import FileStore

__all__ = ["FileLock"]

logger = logging.getLogger("wxauth")

#: First and longest pause between two tries of a contended lock, in seconds.
POLL_FIRST = 0.001
POLL_MAX = 0.05
#: Longest pause between two tries of the key's mutex (held for microseconds).
MUTEX_POLL_MAX = 0.01
#: How long get/set/delete_if, release() and an acquire() without a timeout wait for
#: the key's mutex before raising StoreError: a live process holds it for microseconds,
#: so a mutex held this long belongs to a stopped or hung process.
MUTEX_WAIT = 10.0
#: How long acquire(blocking=False) waits for the mutex before answering False.
MUTEX_NONBLOCKING_WAIT = 0.1

_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")


def stem(key: str) -> str:
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
_held_locks: weakref.WeakSet[FileLock] = weakref.WeakSet()

# (directory, key) -> (generation, fence, time.monotonic()) of the acquisition this
# process last saw held by someone else, and when it first saw it: a lease is measured
# from there (see FileLock._overran). Process-wide, because callers make a new lock
# object per try (refresh-ahead asks once with blocking=False each time).
_first_seen: dict[tuple[str, str], tuple[int, int, float]] = {}


#: Open flags that never follow a symbolic link and never block on a FIFO.
NO_SURPRISES = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC if sys.platform != "win32" else 0


def open_lock_fd(store: FileStore, file: Path) -> int:
    with _fork_guard:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | NO_SURPRISES, 0o600)
        except OSError as exc:
            if os.path.islink(file):
                raise StoreError(
                    f"{file.name} in {store.path} is a symbolic link; FileStore never "
                    "follows links: remove it"
                ) from None
            raise StoreError(f"cannot open {file.name} in {store.path}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"{file.name} in {store.path} is not a regular file: remove it")
        _lock_fds.add(fd)
        return fd


def flock_nb(store: FileStore, fd: int, file: Path) -> bool:
    """Try to ``flock`` ``fd`` exclusively without waiting; say whether it worked."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot lock {file.name} in {store.path}: {exc.strerror}") from None
    return True


class MutexBusyError(StoreError):
    """A key's mutex stayed held longer than the caller's bound."""


class _ExpiredError(Exception):
    """An acquire's deadline passed (internal: ends the poll)."""


def close_lock_fd(fd: int) -> None:
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


class _Lease(NamedTuple):
    """What ``<stem>.lease`` says: the current generation, the fence of the latest
    acquisition, its lease in seconds and (for people reading the file) until when,
    wall clock. ``valid`` is false when the file is missing or damaged."""

    generation: int
    fence: int
    lease: float | None
    until: float
    valid: bool


class FileLock(LockContext):
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
        prefix = f"{stem(self._key)}.lock."
        newest = 0
        try:
            with os.scandir(self._store._dir) as entries:
                for entry in entries:
                    number = entry.name[len(prefix) :]
                    if entry.name.startswith(prefix) and number.isdigit():
                        newest = max(newest, int(number))
        except OSError as exc:
            raise StoreError(f"cannot list {self._store.path}: {exc.strerror}") from None
        return newest

    def _flock_nb(self, generation: int) -> int | None:
        file = self._lock_file(generation)
        fd = open_lock_fd(self._store, file)
        try:
            taken = flock_nb(self._store, fd, file)
        except BaseException:
            close_lock_fd(fd)
            raise
        if not taken:
            close_lock_fd(fd)
            return None
        return fd

    def _overran(self, lease: _Lease) -> bool:
        """Whether the live holder of ``lease`` (its flock is held) has had the lock
        for longer than its lease: measured with this process's monotonic clock from
        when it first saw that acquisition (generation and fence) held, never with the
        wall clock, which may step by an hour in the middle of a fetch. The holder took
        the lock before that first sighting, so it had at least its full lease. Called
        under the mutex."""
        now = time.monotonic()
        slot = (str(self._store._dir), self._key)
        seen = _first_seen.get(slot)
        if seen is None or seen[:2] != (lease.generation, lease.fence):
            _first_seen[slot] = (lease.generation, lease.fence, now)
            return False
        allowed = self._lease if lease.lease is None else lease.lease
        return now - seen[2] >= allowed

    def _attempt(self, wait: float | None) -> bool:
        """One try; ``wait`` bounds the wait for the mutex (``None``: raise StoreError
        after :data:`MUTEX_WAIT`, otherwise a busy mutex is a "not taken")."""
        try:
            return self._try_acquire(wait)
        except MutexBusyError:
            if wait is None:
                raise
            return False

    def _try_acquire(self, wait: float | None) -> bool:
        store = self._store
        with store._mutex(self._key, wait):
            lease = self._read_lease()
            generation = lease.generation
            fd = self._flock_nb(generation)
            taken_over = False
            if fd is None:
                if not self._overran(lease):
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
                    "until": time.time() + self._lease,  # for people; nobody decides by it
                }
                store._write(self._lease_file(), json.dumps(record).encode())
            except BaseException:
                # No lease written, no lock held: a descriptor kept open here would pin
                # the flock (and block every process on the host) until this one exits.
                close_lock_fd(fd)
                if taken_over:
                    with contextlib.suppress(StoreError):
                        store._unlink(self._lock_file(generation))
                raise
            self._fd, self._generation, self._fence = fd, generation, fence
            _held_locks.add(self)
            _first_seen.pop((str(store._dir), self._key), None)
            return True

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; poll (1 ms doubling to 50 ms) while another holder has it.

        ``timeout`` bounds the whole wait, the key's internal mutex included. Without
        one, a mutex stuck for :data:`MUTEX_WAIT` seconds raises :class:`StoreError`.
        """
        deadline = None if timeout is None or not blocking else time.monotonic() + timeout
        if not self._guard.acquire(blocking, -1 if timeout is None or not blocking else timeout):
            return False
        try:
            if not blocking:
                taken = self._attempt(MUTEX_NONBLOCKING_WAIT)
            elif deadline is None:
                taken = poll_until(
                    lambda: self._attempt(None), None, first=POLL_FIRST, cap=POLL_MAX
                )
            else:
                taken = self._poll_until(deadline)
            if not taken:
                self._guard.release()
            return taken
        except BaseException:
            if self._fd is None:
                self._guard.release()
            raise

    def _poll_until(self, deadline: float) -> bool:
        """Try until ``deadline`` (monotonic), each try waiting for the mutex no longer
        than what is left. The deadline is fixed here, before the first try: a try can
        itself take that long, and poll_until would start its clock after it."""

        def attempt() -> bool:
            left = deadline - time.monotonic()
            if self._attempt(max(left, 0.0)):
                return True
            if left <= 0:
                raise _ExpiredError
            return False

        try:
            return poll_until(attempt, None, first=POLL_FIRST, cap=POLL_MAX)
        except _ExpiredError:
            return False

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
                close_lock_fd(fd)  # drops the flock
                fd = None
                if current != self._generation:
                    # Taken over: nobody else will ever open this generation again.
                    self._store._unlink(self._lock_file(self._generation))
        except StoreError as exc:
            # The flock is dropped below all the same; only tidying up was missed.
            logger.warning("%s; released the token lock of key %s anyway", exc, self._key)
        finally:
            if fd is not None:
                close_lock_fd(fd)
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
