"""FileStore under faults and hostile directories: no lock leaked by a failed write,
bounded waits, a lease the wall clock cannot cut short, fencing numbers, and a directory
it can trust."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wxauth import FileStore, StoreError, Token
from wxauth.stores import _file
from wxauth.stores._filelock import stem

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
    return Path(store.path) / f"{stem(KEY)}.{suffix}"


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


# -- a failed lease write leaks nothing ------------------------------------------------------


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


# -- waits are bounded, and the wall clock cannot cut a lease short --------------------------


@pytest.fixture
def mutex_held_elsewhere(tmp_path: Path) -> Iterator[Path]:
    """The key's ``.mutex`` flocked through another open file description, as a stopped
    process would hold it; dropped after the test."""
    file = tmp_path / f"{stem(KEY)}.mutex"
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield file
    finally:
        os.close(fd)


def timed(call: Callable[[], Any], limit: float) -> tuple[Any, float]:
    """Run ``call`` in a thread; return (its result or exception, seconds it took).
    Fails if it is still running after ``limit`` seconds (a hang, not a slow answer)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(limit)
    took = time.monotonic() - started
    assert not thread.is_alive(), f"still waiting after {limit} s"
    return outcome[0], took


def test_acquire_honours_its_timeout_while_the_mutex_is_stuck(
    tmp_path: Path, mutex_held_elsewhere: Path
) -> None:
    """acquire(timeout=1) answers False after about 1 s when the inner mutex is held by
    a stuck process, instead of waiting for that process."""
    store = FileStore(tmp_path)
    result, took = timed(lambda: store.lock(KEY, lease=60).acquire(timeout=1), limit=5)
    assert result is False
    assert 0.9 <= took < 2.0, took
    result, took = timed(lambda: store.lock(KEY, lease=60).acquire(blocking=False), limit=5)
    assert result is False
    assert took < 0.5, took


def test_set_and_delete_if_raise_when_the_mutex_stays_stuck(
    tmp_path: Path, mutex_held_elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no caller timeout, a mutex held past the store's bound is a StoreError that
    says what is wrong, not a hang."""
    monkeypatch.setattr(_file, "MUTEX_WAIT", 0.5)
    store = FileStore(tmp_path)
    token = Token("v", expires_at=7200.0, fetched_at=0.0)
    for call in (lambda: store.set(KEY, token), lambda: store.delete_if(KEY, "v")):
        error, took = timed(call, limit=5)
        assert isinstance(error, StoreError), error
        assert "mutex" in str(error)
        assert "held" in str(error)
        assert 0.4 <= took < 2.0, took


def test_a_wall_clock_step_does_not_hand_a_live_holders_lock_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wall clock jumping an hour ahead while a holder fetches does not let a waiter
    take the lock over: the holder's flock is held and its lease has not run out."""
    store = FileStore(tmp_path)
    holder = store.lock(KEY, lease=60)
    assert holder.acquire(blocking=False)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600.0)
    waiter = FileStore(tmp_path).lock(KEY, lease=60)
    assert waiter.acquire(blocking=False) is False
    assert waiter.acquire(timeout=0.3) is False
    assert holder.held() is True
    holder.release()
    assert waiter.acquire(blocking=False) is True
    waiter.release()


def test_a_stuck_but_alive_holder_is_taken_over_once_its_lease_has_run_out(
    tmp_path: Path,
) -> None:
    """A holder that keeps its flock but overruns its 0.3 s lease is taken over, no
    sooner than 0.3 s after the waiter first saw it and well before the waiter's
    timeout; the stale holder then no longer holds the lock."""
    store = FileStore(tmp_path)
    stuck = store.lock(KEY, lease=0.3)
    assert stuck.acquire(blocking=False)
    waiter = FileStore(tmp_path).lock(KEY, lease=60)
    started = time.monotonic()
    assert waiter.acquire(timeout=10) is True
    took = time.monotonic() - started
    assert 0.3 <= took < 2.0, took
    assert stuck.held() is False
    assert waiter.held() is True
    assert waiter.fence > stuck.fence
    stuck.release()  # late: frees only its own stale generation file
    assert waiter.held() is True
    waiter.release()


def test_a_waiters_patience_carries_over_to_a_fresh_lock_object(tmp_path: Path) -> None:
    """Refresh-ahead asks with acquire(blocking=False) on a new lock object each time:
    the lease is measured from when this process first saw the holder, so such callers
    still take a stuck holder over once its lease has run out."""
    store = FileStore(tmp_path)
    stuck = store.lock(KEY, lease=0.3)
    assert stuck.acquire(blocking=False)
    first_seen = time.monotonic()
    assert store.lock(KEY, lease=60).acquire(blocking=False) is False
    while time.monotonic() - first_seen < 0.3:
        time.sleep(0.05)
    late = store.lock(KEY, lease=60)
    assert late.acquire(blocking=False) is True
    late.release()
    stuck.release()


# -- fences, held(), fence-first ordering ----------------------------------------------------

_FENCE_OF_ONE_ACQUISITION = """
import sys
from wxauth import FileStore
lock = FileStore(sys.argv[1]).lock(sys.argv[2], lease=60)
assert lock.acquire(timeout=30)
print(lock.fence, flush=True)
lock.release()
"""


def fence_in_another_process(path: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FENCE_OF_ONE_ACQUISITION, str(path), KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


def test_fences_strictly_increase_across_lock_objects_and_processes(tmp_path: Path) -> None:
    """Every acquisition, by this process (two handles) or another one, gets a larger
    fence than all earlier ones."""
    stores = [FileStore(tmp_path), FileStore(tmp_path)]
    fences = []
    for round_ in range(6):
        if round_ % 3 == 2:
            fences.append(fence_in_another_process(tmp_path))
            continue
        lock = stores[round_ % 2].lock(KEY, lease=60)
        assert lock.fence == 0
        assert lock.acquire(timeout=10)
        fences.append(lock.fence)
        lock.release()
    assert fences == sorted(set(fences)), fences
    assert fences[0] >= 1


def test_a_lost_lease_file_never_hands_out_a_fence_below_the_stored_tokens(
    tmp_path: Path,
) -> None:
    """The counter lives in the lease file; if that file is lost or damaged, the stored
    token's fence is the floor, so the next token still outranks the stored one."""
    store = FileStore(tmp_path)
    with store.lock(KEY, lease=60) as lock:
        first = lock.fence
    store.set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0, fence=first + 40))
    for damage in ("", "{not json", None):
        lease_file = file_of(store, "lease")
        if damage is None:
            lease_file.unlink()
        else:
            lease_file.write_text(damage)
        with store.lock(KEY, lease=60) as lock:
            assert lock.fence > first + 40
            store.set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0, fence=lock.fence))
            first = lock.fence - 40


def test_held_follows_the_lease_generation(tmp_path: Path) -> None:
    """held(): False before acquire and after release, True while held, False once a
    waiter has taken the lock over after the lease ran out."""
    store = FileStore(tmp_path)
    lock = store.lock(KEY, lease=0.2)
    assert lock.held() is False
    assert lock.acquire(blocking=False)
    assert lock.held() is True
    successor = FileStore(tmp_path).lock(KEY, lease=60)
    assert successor.acquire(timeout=10)
    assert lock.held() is False
    assert successor.held() is True
    lock.release()
    successor.release()
    assert successor.held() is False


def test_a_deleted_lock_file_is_not_held(tmp_path: Path) -> None:
    """If the lock file is removed under a holder, a newcomer would flock a new file of
    the same name: the old holder must not believe it still holds the lock."""
    store = FileStore(tmp_path)
    lock = store.lock(KEY, lease=60)
    assert lock.acquire(blocking=False)
    file_of(store, "lock.0").unlink()
    assert lock.held() is False
    lock.release()


def test_set_orders_by_fence_before_fetched_at(tmp_path: Path) -> None:
    """A token with a larger fence replaces one fetched later by another host's clock;
    a token with a smaller fence never replaces a stored one, however late its
    fetched_at; equal fences fall back to fetched_at."""
    store, peer = FileStore(tmp_path), FileStore(tmp_path)
    stored = Token("stored", expires_at=9200.0, fetched_at=2000.0, fence=5)
    assert store.set(KEY, stored) is True
    behind = Token("behind", expires_at=7200.0, fetched_at=0.0, fence=6)
    assert peer.set(KEY, behind) is True
    assert store.get(KEY) == behind
    ahead = Token("ahead", expires_at=99_999.0, fetched_at=90_000.0, fence=5)
    assert peer.set(KEY, ahead) is False
    assert store.get(KEY) == behind
    assert peer.set(KEY, Token("earlier", 7100.0, -100.0, fence=6)) is False
    assert peer.set(KEY, Token("later", 7300.0, 100.0, fence=6)) is True


# -- a directory it can trust, and no symbolic link followed ---------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o770, 0o757, 0o1777], ids=oct)
def test_a_directory_writable_by_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    """Like ssh with ~/.ssh: anyone who can write the directory can plant files in it,
    so FileStore refuses it and says how to fix it."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(StoreError) as caught:
        FileStore(directory)
    message = str(caught.value)
    assert f"{directory} is writable by group or others (mode {mode:04o})" in message
    assert "chmod 700" in message


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755], ids=oct)
def test_a_private_or_read_only_shared_directory_is_accepted(tmp_path: Path, mode: int) -> None:
    """0755 is not writable by anyone but the owner: allowed."""
    directory = tmp_path / "tokens"
    directory.mkdir()
    directory.chmod(mode)
    FileStore(directory).set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown a directory to nobody")
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A directory another user owns can be changed by that user at any time."""
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)
    with pytest.raises(StoreError, match=rf"{directory} is owned by uid 65534, not uid 0"):
        FileStore(directory)


def test_a_symlinked_directory_is_followed_and_checked_where_it_points(tmp_path: Path) -> None:
    """A path that is a symlink to a directory is normal (and used); what is checked
    is the directory it resolves to."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    FileStore(link).set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0))
    assert list(real.glob("*.token"))
    real.chmod(0o777)
    with pytest.raises(StoreError, match=rf"{real} is writable by group or others"):
        FileStore(link)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the store that a planted symlink points at."""
    file = tmp_path / "victim"
    file.write_text("do not touch\n")
    file.chmod(0o644)
    return file


def assert_untouched(victim: Path) -> None:
    assert victim.read_text() == "do not touch\n"
    assert victim.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_planted_mutex_symlink_is_refused_not_followed(
    tmp_path: Path, victim: Path, dangling: bool
) -> None:
    """A symlink where the mutex file goes: set() raises StoreError naming it, and
    neither opens the target nor creates a dangling link's target."""
    directory = tmp_path / "tokens"
    store = FileStore(directory)
    target = tmp_path / "created-by-wxauth" if dangling else victim
    file_of(store, "mutex").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        store.set(KEY, Token("v", expires_at=7200.0, fetched_at=0.0))
    assert_untouched(victim)
    assert not (tmp_path / "created-by-wxauth").exists()


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_planted_lock_file_symlink_is_refused_not_followed(
    tmp_path: Path, victim: Path, dangling: bool
) -> None:
    """The same for the single-flight lock file: acquire raises StoreError."""
    store = FileStore(tmp_path / "tokens")
    target = tmp_path / "created-by-wxauth" if dangling else victim
    file_of(store, "lock.0").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        store.lock(KEY, lease=60).acquire(timeout=1)
    assert_untouched(victim)
    assert not (tmp_path / "created-by-wxauth").exists()


def test_a_planted_token_symlink_is_not_read_and_is_replaced_on_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``<stem>.token -> an attacker's file`` holding a well-formed token: it is not
    read as a token (a warning says why), and the next write replaces the link itself,
    leaving the file it pointed at as it was."""
    planted = Token("attacker-chosen", expires_at=9_999_999_999.0, fetched_at=0.0)
    attacker_file = tmp_path / "attacker"
    attacker_file.write_text(planted.to_json())
    store = FileStore(tmp_path / "tokens")
    token_file = file_of(store, "token")
    token_file.symlink_to(attacker_file)
    with caplog.at_level("WARNING", logger="wxauth"):
        assert store.get(KEY) is None
    assert "symbolic link" in caplog.text
    assert "attacker-chosen" not in caplog.text
    mine = Token("mine", expires_at=7200.0, fetched_at=1.0)
    assert store.set(KEY, mine) is True
    assert not token_file.is_symlink()
    assert store.get(KEY) == mine
    assert attacker_file.read_text() == planted.to_json()


def test_planted_lease_and_meta_symlinks_are_not_followed(tmp_path: Path) -> None:
    """The lease and meta files are read without following links and replaced on
    write, so a link there can neither feed a record in nor get a file overwritten."""
    store = FileStore(tmp_path / "tokens")
    fake_lease = tmp_path / "fake-lease"
    fake_lease.write_text('{"generation": 0, "fence": 1000000, "lease": 60, "until": 0}')
    fake_meta = tmp_path / "fake-meta"
    fake_meta.write_text('{"value": "planted", "until": 9999999999}')
    file_of(store, "lease").symlink_to(fake_lease)
    file_of(store, "meta").symlink_to(fake_meta)
    assert store.get_meta(KEY) is None
    with store.lock(KEY, lease=60) as lock:
        assert lock.fence == 1  # not 1000001: the planted counter was not read
        assert lock.held() is True
    store.set_meta(KEY, "m", ttl=60)
    assert store.get_meta(KEY) == "m"
    assert not file_of(store, "lease").is_symlink()
    assert not file_of(store, "meta").is_symlink()
    assert fake_lease.read_text().startswith('{"generation": 0, "fence": 1000000,')
    assert fake_meta.read_text() == '{"value": "planted", "until": 9999999999}'


def test_a_fifo_in_place_of_the_token_reads_as_missing_without_hanging(tmp_path: Path) -> None:
    """Opening a FIFO for reading would block until a writer comes: a special file is
    skipped at once, as missing."""
    store = FileStore(tmp_path / "tokens")
    os.mkfifo(file_of(store, "token"))
    result, took = timed(lambda: store.get(KEY), limit=5)
    assert result is None
    assert took < 1.0


def _locals_of_traceback(exc: BaseException) -> str:
    """Every local (by repr) of every frame on the traceback of ``exc`` and of its
    causes and contexts: what an error tracker that renders frame locals records."""
    import traceback

    shown, todo = [], [exc]
    while todo:
        current = todo.pop()
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
        for frame, _ in traceback.walk_tb(current.__traceback__):
            if "/wxauth/" not in frame.f_code.co_filename:
                continue  # this test's own frame
            shown += [f"{name}={value!r}" for name, value in frame.f_locals.items()]
    return "\n".join(shown)


class _Masked(str):
    """A str whose repr hides it, as the Open Platform passes refresh tokens."""

    def __repr__(self) -> str:
        return "'***'"


def test_a_failed_record_write_keeps_the_record_out_of_frame_locals(tmp_path: Path) -> None:
    """A durable record (an Open Platform refresh token, passed masked) that cannot be
    written raises StoreError, and no frame on its traceback holds the record's
    serialized text in clear."""
    store = FileStore(tmp_path)
    store.put_record("refresh", "wxauthorizer1", "first-refresh-token-value")
    record = next((tmp_path).rglob("*.rec"))
    record.unlink()
    record.mkdir()  # os.replace onto a directory fails
    with pytest.raises(StoreError) as info:
        store.put_record("refresh", "wxauthorizer1", _Masked("the-refresh-token-value"))
    assert "the-refresh-token-value" not in _locals_of_traceback(info.value)
