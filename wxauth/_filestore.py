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
  ``_MUTEX_WAIT`` seconds, after which a :class:`~wxauth.StoreError` says a stopped or
  hung process holds it (a dead one loses it at once).
- ``<stem>.lease`` and ``<stem>.lock.<generation>``: the single-flight lock (below).
  The lease file names the current generation, the fence of the latest acquisition
  (a counter, one more each time and never below the stored token's fence), that
  holder's lease in seconds, and for people reading it a wall-clock ``until``.

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
import hashlib
import json
import logging
import os
import re
import stat
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
#: Longest pause between two tries of the key's mutex (held for microseconds).
_MUTEX_POLL_MAX = 0.01
#: How long get/set/delete_if, release() and an acquire() without a timeout wait for
#: the key's mutex before raising StoreError: a live process holds it for microseconds,
#: so a mutex held this long belongs to a stopped or hung process.
_MUTEX_WAIT = 10.0
#: How long acquire(blocking=False) waits for the mutex before answering False.
_MUTEX_NONBLOCKING_WAIT = 0.1

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

# (directory, key) -> (generation, fence, time.monotonic()) of the acquisition this
# process last saw held by someone else, and when it first saw it: a lease is measured
# from there (see _FileLock._overran). Process-wide, because callers make a new lock
# object per try (refresh-ahead asks once with blocking=False each time).
_first_seen: dict[tuple[str, str], tuple[int, int, float]] = {}


#: Open flags that never follow a symbolic link and never block on a FIFO.
_NO_SURPRISES = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC if sys.platform != "win32" else 0


def _open_lock_fd(store: FileStore, file: Path) -> int:
    with _fork_guard:
        try:
            fd = os.open(file, os.O_RDWR | os.O_CREAT | _NO_SURPRISES, 0o600)
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


def _flock_nb(store: FileStore, fd: int, file: Path) -> bool:
    """Try to ``flock`` ``fd`` exclusively without waiting; say whether it worked."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        raise StoreError(f"cannot lock {file.name} in {store.path}: {exc.strerror}") from None
    return True


class _MutexBusyError(StoreError):
    """A key's mutex stayed held longer than the caller's bound."""


class _ExpiredError(Exception):
    """An acquire's deadline passed (internal: ends the poll)."""


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
        return self._dir / f"{_stem(key)}.{suffix}"

    def _read(self, file: Path) -> bytes | None:
        """The file's bytes; ``None`` if it is missing, or if it is a symbolic link or
        not a regular file (with a warning): never followed, never blocked on."""
        try:
            fd = os.open(file, os.O_RDONLY | _NO_SURPRISES)
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

    def _write(self, file: Path, data: bytes) -> None:
        # Same directory, so os.replace is a rename within one file system: atomic.
        try:
            # mkstemp creates with O_EXCL (no link followed); os.replace swaps the
            # directory entry, so a link planted at ``file`` is replaced, not followed.
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=f".{file.name}.", suffix=".tmp")
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
    def _mutex(self, key: str, wait: float | None = None) -> Iterator[None]:
        """Hold the key's short internal lock (read-modify-write sections only).

        Waits at most ``wait`` seconds (``None``: :data:`_MUTEX_WAIT`), polling with a
        non-blocking ``flock``, then raises :class:`_MutexBusyError`. A live holder keeps it
        for microseconds and a dead one loses it at once, so only a stopped or hung
        process makes anyone wait; a blocking ``flock`` would wait for it forever.
        """
        file = self._file(key, "mutex")
        bound = _MUTEX_WAIT if wait is None else max(wait, 0.0)
        fd = _open_lock_fd(self, file)
        try:
            if not poll_until(
                lambda: _flock_nb(self, fd, file), bound, first=_POLL_FIRST, cap=_MUTEX_POLL_MAX
            ):
                raise _MutexBusyError(
                    f"the internal lock {file.name} in {self.path} has been held by another "
                    f"process for over {bound:g} s (a stopped or hung process?)"
                )
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
        fd = _open_lock_fd(self._store, file)
        try:
            taken = _flock_nb(self._store, fd, file)
        except BaseException:
            _close_lock_fd(fd)
            raise
        if not taken:
            _close_lock_fd(fd)
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
        after :data:`_MUTEX_WAIT`, otherwise a busy mutex is a "not taken")."""
        try:
            return self._try_acquire(wait)
        except _MutexBusyError:
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
                _close_lock_fd(fd)
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
        one, a mutex stuck for :data:`_MUTEX_WAIT` seconds raises :class:`StoreError`.
        """
        deadline = None if timeout is None or not blocking else time.monotonic() + timeout
        if not self._guard.acquire(blocking, -1 if timeout is None or not blocking else timeout):
            return False
        try:
            if not blocking:
                taken = self._attempt(_MUTEX_NONBLOCKING_WAIT)
            elif deadline is None:
                taken = poll_until(
                    lambda: self._attempt(None), None, first=_POLL_FIRST, cap=_POLL_MAX
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
            return poll_until(attempt, None, first=_POLL_FIRST, cap=_POLL_MAX)
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
                _close_lock_fd(fd)  # drops the flock
                fd = None
                if current != self._generation:
                    # Taken over: nobody else will ever open this generation again.
                    self._store._unlink(self._lock_file(self._generation))
        except StoreError as exc:
            # The flock is dropped below all the same; only tidying up was missed.
            logger.warning("%s; released the token lock of key %s anyway", exc, self._key)
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
