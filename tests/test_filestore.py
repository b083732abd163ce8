"""FileStore specifics beyond the store contract: atomic files, permissions, the
kernel-freed lock of a killed holder, and what ends up on disk."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wxauth import FileStore, StoreError, Token, TokenManager
from wxauth.testing import FakeWeChat

KEY = "token:classic:wxfile0001"


def test_readers_never_see_a_torn_or_missing_token(tmp_path: Path) -> None:
    """While one thread rewrites a 4 KB token 300 times, readers always get a whole
    one: never None, never a mix of two writes."""
    store = FileStore(tmp_path)
    store.set(KEY, Token("0" * 4096, expires_at=7200.0, fetched_at=0.0))
    done = threading.Event()
    bad: list[str] = []

    def read() -> None:
        while not done.is_set():
            seen = store.get(KEY)
            if seen is None:
                bad.append("missing")
            elif len(set(seen.value)) != 1 or seen.expires_at != seen.fetched_at + 7200:
                bad.append("torn")

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for i in range(1, 301):
            store.set(KEY, Token(str(i % 10) * 4096, expires_at=i + 7200.0, fetched_at=float(i)))
    finally:
        done.set()
        for reader in readers:
            reader.join(10)
    assert bad == []


def test_directory_and_files_are_private(tmp_path: Path) -> None:
    """The directory is created 0700 and the token file is 0600: it holds a token."""
    store = FileStore(tmp_path / "new" / "tokens")
    store.set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0))
    assert stat.S_IMODE((tmp_path / "new" / "tokens").stat().st_mode) == 0o700
    files = list((tmp_path / "new" / "tokens").iterdir())
    assert files
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_a_malformed_record_reads_as_missing_and_is_overwritten(tmp_path: Path) -> None:
    """A damaged token file is a cache miss, not a crash; the next write replaces it."""
    store = FileStore(tmp_path)
    store.set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0))
    (token_file,) = tmp_path.glob("*.token")
    token_file.write_text("{not json")
    assert store.get(KEY) is None
    assert store.set(KEY, Token("w", expires_at=7200.0, fetched_at=0.0)) is True
    assert store.get(KEY) == Token("w", expires_at=7200.0, fetched_at=0.0)


def test_a_path_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    """FileStore needs a directory; a plain file there is reported clearly."""
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(StoreError, match="not a directory"):
        FileStore(target)


_HOLDER = """
import sys, time
from wxauth import FileStore
lock = FileStore(sys.argv[1]).lock(sys.argv[2], lease=600)
assert lock.acquire(blocking=False)
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_frees_the_lock_at_once_not_after_its_lease(tmp_path: Path) -> None:
    """flock is dropped by the kernel when the holder dies: a 600 s lease does not
    make anyone wait."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path), KEY], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        store = FileStore(tmp_path)
        assert store.lock(KEY, lease=600).acquire(blocking=False) is False
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        lock = store.lock(KEY, lease=600)
        started = time.monotonic()
        assert lock.acquire(timeout=30) is True
        assert time.monotonic() - started < 5  # far below the 600 s lease
        lock.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_a_taken_over_generation_file_is_removed_on_release(tmp_path: Path) -> None:
    """After a lease overrun, the stale holder's release cleans its own lock file up."""
    store = FileStore(tmp_path)
    stale = store.lock(KEY, lease=0.1)
    assert stale.acquire()
    successor = store.lock(KEY, lease=30)
    assert successor.acquire(timeout=10)
    assert len(list(tmp_path.glob("*.lock.*"))) == 2
    stale.release()
    assert len(list(tmp_path.glob("*.lock.*"))) == 1
    successor.release()


def test_no_secret_on_disk_after_a_real_fetch(tmp_path: Path) -> None:
    """File names and contents hold the appid and the token, never the secret."""
    secret = "file-store-secret-0123456789"
    fake = FakeWeChat()
    fake.add_app("wxfile0001", secret)
    with fake.serve() as url:
        manager = TokenManager("wxfile0001", secret, api_base=url, store=FileStore(tmp_path))
        value = manager.get_token()
        manager.close()
    fake.close()
    assert value == fake.latest_token()
    names = " ".join(p.name for p in tmp_path.iterdir())
    contents = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert secret not in names
    assert secret.encode() not in contents
    assert value.encode() in contents  # the token itself is what the store is for


def test_repr_shows_the_path_only(tmp_path: Path) -> None:
    """repr names the directory, nothing else."""
    assert repr(FileStore(tmp_path)) == f"FileStore(path={str(tmp_path)!r})"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_keep_the_parents_lock(tmp_path: Path) -> None:
    """A process that forks while holding the lock (gunicorn's master, a refresher
    thread) can release it: the child's copy of the descriptor does not pin it."""
    store = FileStore(tmp_path)
    lock = store.lock(KEY, lease=60)
    assert lock.acquire()
    go_on, hold = os.pipe()
    started, ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child stays alive until the parent has checked
        os.close(hold)
        os.write(ready, b"r")  # the at-fork hooks have run by now
        os.read(go_on, 1)
        os._exit(0)
    try:
        os.close(go_on)
        os.close(ready)
        assert os.read(started, 1) == b"r"
        os.close(started)
        lock.release()
        successor = store.lock(KEY, lease=60)
        assert successor.acquire(blocking=False) is True
        successor.release()
    finally:
        os.write(hold, b"x")
        os.close(hold)
        os.waitpid(pid, 0)
