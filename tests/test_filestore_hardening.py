"""FileStore hardening (issue #9): no lock leaked by a failed write, bounded waits, a
lease the wall clock cannot cut short, fencing numbers, and a directory it can trust."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wxauth import FileStore, StoreError
from wxauth._filestore import _stem

KEY = "token:classic:wxharden0001"

# Exit status 0: the lock file is free (flock taken at once); 1: someone holds it.
_TRY_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
sys.exit(0)
"""


def file_of(store: FileStore, suffix: str) -> Path:
    return Path(store.path) / f"{_stem(KEY)}.{suffix}"


def flock_is_free_in_another_process(file: Path) -> bool:
    done = subprocess.run([sys.executable, "-c", _TRY_FLOCK, str(file)], timeout=30)
    assert done.returncode in (0, 1), done
    return done.returncode == 0


@pytest.fixture
def disk_full_for_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write of a ``.lease`` file fails as on a full disk; others go through."""
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if os.fspath(dst).endswith(".lease"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


# -- item 5: a failed lease write leaks nothing ------------------------------------------


def test_a_failed_lease_write_leaks_no_lock(tmp_path: Path, disk_full_for_lease: None) -> None:
    """ENOSPC while writing the lease: acquire raises StoreError, and the lock file's
    flock is free at once, for another descriptor and another process alike."""
    store = FileStore(tmp_path)
    lock = store.lock(KEY, lease=60)
    with pytest.raises(StoreError, match="No space left"):
        lock.acquire(blocking=False)
    with pytest.raises(StoreError, match="No space left"):
        lock.acquire(timeout=5)
    lock_file = file_of(store, "lock.0")
    assert lock_file.exists()
    # Another open file description of the lock file gets the flock at once ...
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if leaked
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    # ... so does another process, and no temporary file is left behind.
    assert flock_is_free_in_another_process(lock_file)
    assert not list(tmp_path.glob(".*.tmp"))


def test_after_a_failed_lease_write_the_lock_is_taken_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk_full_for_lease: None
) -> None:
    """Once the disk has room again, the same lock object (its guard was released) and
    a fresh one take the lock without waiting, and the flock they hold is real."""
    store = FileStore(tmp_path)
    lock = store.lock(KEY, lease=60)
    with pytest.raises(StoreError):
        lock.acquire()
    monkeypatch.undo()  # the disk has room again
    assert lock.acquire(blocking=False) is True
    assert not flock_is_free_in_another_process(file_of(store, "lock.0"))
    lock.release()
    fresh = FileStore(tmp_path).lock(KEY, lease=60)
    assert fresh.acquire(blocking=False) is True
    fresh.release()
    assert flock_is_free_in_another_process(file_of(store, "lock.0"))
