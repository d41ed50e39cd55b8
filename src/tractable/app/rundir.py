"""Taking a run directory: an exclusive lock for the whole run, the refusal of a directory that is not this run's,
and the clean-up of what an earlier process left behind.

A fit holds ``OUT/.lock`` locked with ``flock(2)`` from the moment it first writes into ``OUT`` until it exits. The
operating system drops the lock when the process dies (``SIGKILL`` included), so a lock file left by a dead process
is recognised as stale and taken over; the file records the holder's pid, host, command and start time, which is
how a second fit into the same directory (or ``eval``, ``sample`` and ``plot`` on a run being written) names it.
Where ``fcntl`` is unavailable (Windows) runs are not locked.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from ..utils import remove_stale_temporaries

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks through fcntl
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"
CONFIG = "config.toml"
#: What a fit writes into its run directory besides the metric logs it rewrites anyway: cleared by ``--overwrite``
#: (and when ``--resume`` restarts a run that has no checkpoint), so no file of the old run outlives its config
#: (the figures too: a new run with ``--no-plots`` would otherwise sit beside the old run's pictures).
RUN_OUTPUTS = ("checkpoint.pt", "model.safetensors", "metrics.json", "eval.json", "densities.png", "samples.png",
               "layers.png", "layers.gif", "data.png", "training.png")
#: Tries (and seconds between them) to take a lock that a probe of :func:`lock_holder` holds for an instant.
_TRIES, _PAUSE = 10, 0.02


class RunDirError(ValueError):
    """A run directory that cannot be used: missing, in use, not a run, or missing the files a command needs."""


def _describe(path: Path) -> str:
    """Who the lock file says holds it: ``process 123 on host (tractable fit, since 2026-12-02 04:41:07 UTC)``."""
    try:
        fields = path.read_text(errors="replace").split("\t")
    except OSError:
        fields = []
    if len(fields) < 4:  # the holder has not written its line yet
        return "another process"
    pid, host, since, command = (f.strip() for f in fields[:4])
    return f"process {pid} on {host} ({command}, since {since})"


def lock_holder(directory: str | Path) -> str | None:
    """Who holds the lock of the run in ``directory`` (see :func:`_describe`), or ``None`` when nobody does (no lock
    file, or a stale one left by a process that died)."""
    path = Path(directory) / LOCK
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return None


class RunLock:
    """The exclusive lock of a run directory, taken with :meth:`acquire` and released by :meth:`release` (by the
    operating system if the process dies)."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, directory: str | Path, command: str, hint: str = "") -> RunLock:
        """Lock ``directory`` (which must exist) for this process.

        Raises:
            RunDirError: if another live process holds it (naming that process; ``hint`` ends the line).
        """
        path = Path(directory) / LOCK
        if fcntl is None:  # pragma: no cover
            return cls(path, None)
        for attempt in range(_TRIES):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if attempt == _TRIES - 1:
                    raise RunDirError(f"run directory {str(directory)!r} is in use by {_describe(path)}; wait for it "
                                      f"to finish{hint}") from None
                time.sleep(_PAUSE)
                continue
            try:  # the previous holder unlinks the file on release: a lock on that unlinked file is no lock
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\t{socket.gethostname()}\t{since}\t{command}\n".encode())
            return cls(path, fd)
        raise RunDirError(f"run directory {str(directory)!r}: its lock file {str(path)!r} kept changing; try again")

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it, so nobody locks a file about to vanish
        finally:
            os.close(self.fd)
            self.fd = None


def command_line() -> str:
    """The command that holds a lock, as the lock file records it (``tractable fit --resume RUN``)."""
    args = " ".join(sys.argv[1:4]) + (" ..." if len(sys.argv) > 4 else "")
    return f"tractable {args}".strip()


def check_out(out: Path, *, overwrite: bool, locked: bool = False) -> None:
    """Refuse ``out`` for a new run unless it is free: absent or empty (a stale lock file aside), or ``overwrite``.

    Only reads the file system. Raises :class:`RunDirError` if a process holds ``out`` (not checked when this process
    has ``locked`` it), if ``out`` is not a directory, or if it holds an earlier run (``config.toml``) or anything
    else and ``overwrite`` is false; the message says how to proceed.
    """
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {str(out)!r} exists and is not a directory; choose another --out")
    holder = None if locked else lock_holder(out)
    if holder is not None:
        raise RunDirError(f"run directory {str(out)!r} is in use by {holder}; wait for it to finish or choose "
                          "another --out")
    if overwrite or not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir() if p.name != LOCK)
    if (out / CONFIG).is_file():
        raise RunDirError(f"run directory {str(out)!r} already holds a run ({CONFIG}); add --overwrite to replace "
                          f"it, --resume {str(out)!r} to continue it, or choose another --out")
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RunDirError(f"--out {str(out)!r} is a directory that is not empty and holds no run ({shown}); choose "
                          "another --out, or add --overwrite to write the run into it anyway")


def make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``, returning the directories it created (outermost first), so a failure can remove them."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def claim(out: Path, *, overwrite: bool) -> RunLock:
    """Take ``out`` for a new run: create it if needed, lock it, check it again under the lock (a concurrent fit may
    have written it meanwhile), remove stale temporary files and, with ``overwrite``, the old run's outputs. If this
    fails, the directories this call created are removed again.

    Raises:
        RunDirError: as :meth:`RunLock.acquire` and :func:`check_out`.
    """
    created = make_dirs(out)
    try:
        lock = RunLock.acquire(out, command_line(), " or choose another --out")
    except BaseException:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                break
        raise
    try:
        check_out(out, overwrite=overwrite, locked=True)
        _remove_temporaries(out)
        if overwrite:
            clear_outputs(out)
    except BaseException:
        lock.release()
        raise
    return lock


def _remove_temporaries(out: Path) -> None:
    """The temporary files of killed writes in the run directory and its training checkpoints."""
    for directory in (out, out / "checkpoints"):
        remove_stale_temporaries(directory)


def take(out: Path) -> RunLock:
    """Lock the existing run directory ``out`` (to resume it) and remove the temporary files of killed writes."""
    lock = RunLock.acquire(out, command_line())
    try:
        _remove_temporaries(out)
    except BaseException:
        lock.release()
        raise
    return lock


def clear_outputs(out: Path) -> None:
    """Delete what a run wrote that would outlive a new run in ``out``: its checkpoints (training, best, final), the
    exported weights, its metrics and evaluation files, figures and TensorBoard events (``metrics.csv`` and
    ``metrics.jsonl`` are rewritten anyway)."""
    for folder, keep in ((out / "checkpoints", lambda p: p.suffix == ".pt"),
                         (out / "tensorboard", lambda p: p.name.startswith("events.out.tfevents."))):
        if folder.is_dir():
            for p in folder.iterdir():
                if p.is_file() and keep(p):
                    p.unlink()
    for name in RUN_OUTPUTS:
        (out / name).unlink(missing_ok=True)
