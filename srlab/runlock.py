"""One training run per folder: a lock file that :func:`srlab.train.train` holds while it runs.

Two runs writing into one folder would replace each other's ``last.pt`` and interleave their
lines in ``history.jsonl``; the second is refused instead. The lock, ``LOCK_NAME`` in the run
folder, holds the owner's PID, host and start time, and the owner refreshes its modification
time every :data:`HEARTBEAT` seconds. A lock left behind by a run that is gone (killed, a
crashed machine) is taken over with a note: on this host when its PID is dead; from another
host (a Colab session that ended, its run folder on Google Drive), whose PID cannot be checked,
once it has not been refreshed for :data:`STALE_AFTER` seconds. An empty or unreadable lock
is, for a moment, what every run leaves between creating it and writing to it (longer on a slow
network disk): it is live until it has gone :data:`UNREADABLE_GRACE` seconds without a refresh.

Taking over is atomic: a run removes a stale lock only while it holds the take-over guard
(``LOCK_NAME + ".takeover"``, created with ``O_EXCL``) and only when the file there is still the
very lock it judged stale (content, inode, modification time); it then creates its own lock with
``O_EXCL`` before it lets the guard go. Two runs that find one stale lock at the same instant
therefore never both get it: the second finds the first's live lock. A guard left by a run killed
during a take-over is removed after :data:`GUARD_STALE` seconds, by the same checked removal.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["LOCK_NAME", "HEARTBEAT", "STALE_AFTER", "UNREADABLE_GRACE", "GUARD_STALE", "RunLocked", "run_lock"]

LOCK_NAME = "train.lock"
HEARTBEAT = 30.0  # seconds between two refreshes of a held lock
STALE_AFTER = 300.0  # a lock of another host not refreshed for this long is taken over
UNREADABLE_GRACE = 2 * HEARTBEAT  # an empty or unreadable lock not refreshed for this long is taken over
GUARD_STALE = 10.0  # a take-over guard older than this was left by a run killed while taking over
GUARD_WAIT = 0.01  # seconds between two looks at a guard another run holds


class RunLocked(FileExistsError):
    """Another run that is alive holds the folder's lock."""


@contextmanager
def run_lock(folder: str | os.PathLike):
    """Hold ``folder``'s lock for the body (creating the folder); :class:`RunLocked` when a live run holds it."""
    path = Path(folder) / LOCK_NAME
    me = _acquire(path)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), name="srlab-run-lock", daemon=True)
    beat.start()
    try:
        yield path
    finally:
        stop.set()
        beat.join()
        if _read(path) == me:  # not if another run took it over meanwhile
            path.unlink(missing_ok=True)


def _acquire(path: Path) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    me = _identity()
    deadline = time.monotonic() + GUARD_STALE + 5  # time enough to clear a guard left by a killed run
    while time.monotonic() < deadline:  # each round: create it, find it live (refused), or take it over
        if _create(path, me):
            return me
        seen = _look(path)
        if seen[1] is None:  # its run ended meanwhile: create it again
            continue
        why = _stale(seen[0], path)
        if why is None:
            raise RunLocked(_held_message(seen[0], path)) from None
        if _take_over(path, seen, me):
            warnings.warn(f"took over the lock {path} of a run that is gone: {why}", stacklevel=4)
            return me
    raise RunLocked(
        f"could not take the lock {path}: other runs keep taking it over. If no other run is starting in "
        f"{path.parent}, delete {path} and {path.name}.takeover beside it"
    )


def _identity() -> dict:
    """What a lock or guard file holds: its owner, and a token no other file has (for the checks)."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "token": uuid.uuid4().hex}


def _create(path: Path, me: dict) -> bool:
    """Create ``path`` holding ``me``, atomically (``O_EXCL``: one creator wins); False when it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
    except OSError:  # a full disk, say: no empty lock left behind
        path.unlink(missing_ok=True)
        raise
    return True


def _look(path: Path) -> tuple[dict | None, tuple | None]:
    """(its owner, which file it is: inode and modification time) of the lock ``path``; the second
    tells a stale lock from a new one written in its place (the owner alone cannot, when unreadable)."""
    try:
        st = path.lstat()  # the lock itself: a dangling symlink is a lock too (O_EXCL says so)
    except OSError:
        return None, None
    return _read(path), (st.st_ino, st.st_mtime_ns)


def _take_over(path: Path, seen: tuple, me: dict) -> bool:
    """Replace the stale lock ``path`` (as :func:`_look` saw it) by ``me``, under the take-over guard;
    False when another run holds the guard, or the lock has changed since (the caller looks again)."""
    guard = path.with_name(path.name + ".takeover")
    if not _create(guard, _identity()):
        _clear_stale_guard(guard)
        time.sleep(GUARD_WAIT)
        return False
    try:
        if _look(path) != seen or _stale(seen[0], path) is None:  # taken over, or refreshed, meanwhile
            return False
        path.unlink(missing_ok=True)
        return _create(path, me)
    finally:
        guard.unlink(missing_ok=True)


def _clear_stale_guard(guard: Path) -> None:
    """Remove a take-over guard left by a run killed while it held it (older than :data:`GUARD_STALE`):
    renamed away first and checked to be the guard judged, so that a live guard is never removed."""
    seen = _look(guard)
    if seen[1] is None or time.time() - seen[1][1] / 1e9 <= GUARD_STALE:
        return
    away = guard.with_name(f"{guard.name}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(guard, away)
    except OSError:  # gone meanwhile
        return
    if _look(away) != seen:  # another run's new guard: put it back
        with suppress(OSError):
            os.link(away, guard)
    away.unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _stale(owner: dict | None, path: Path) -> str | None:
    """Why the lock ``path`` (holding ``owner``) belongs to no live run, or None when it may."""
    try:
        age = time.time() - path.lstat().st_mtime
    except OSError:  # removed meanwhile
        return "it was just removed"
    if not _says_who(owner):  # its owner may still be writing it (see the module's docstring)
        if age > UNREADABLE_GRACE:
            return f"it does not say who holds it, and was not refreshed for {age:.0f} s (cut off when written?)"
        return None
    pid, host = owner["pid"], owner.get("host")
    if host == socket.gethostname():
        alive = _alive(pid)
        if alive is False:
            return f"process {pid} on this host has ended"
        if alive:
            return None
    return f"not refreshed for {age / 60:.0f} min" if age > STALE_AFTER else None


def _says_who(owner: dict | None) -> bool:
    return owner is not None and isinstance(owner.get("pid"), int)


def _alive(pid: int) -> bool | None:
    """Whether process ``pid`` of this host runs; None where that cannot be told (Windows, where
    ``os.kill`` would end the process)."""
    if os.name == "nt":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # a zombie (ended, not yet reaped by its parent) is gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _held_message(owner: dict | None, path: Path) -> str:
    if not _says_who(owner):
        return (
            f"{path.parent} is being taken by another training run: its lock file {path} is still empty or "
            f"unreadable, as while that run writes it. Wait for it to end or use another --out; if no run is "
            f"starting there, delete {path} (it is taken over after {UNREADABLE_GRACE:.0f} s without a refresh)"
        )
    return (
        f"{path.parent} is in use by another training run (process {owner['pid']} on {owner.get('host')}, "
        f"since {owner.get('started')}; lock file {path}). Wait for it to end or use another --out; "
        f"if that run is gone, delete {path} (one from another host is taken over after "
        f"{STALE_AFTER / 60:.0f} min without a refresh)"
    )


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT):
        try:
            os.utime(path)
        except OSError:
            pass
