"""Temporary files a command writes beside the ledger, and telling a killed command's
leftovers from a running one's: the running one holds a lock on its file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path


def claim(partial: Path) -> int:
    """Create `partial` empty and hold a lock on it while the work that writes it runs (a
    backup, an import's copy of a pipe): a sweep leaves a file whose lock is held. Returns
    the descriptor to close, which lets the lock go."""
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    # a file system (or a system: Windows) without these locks: on, unguarded
    with contextlib.suppress(OSError, ImportError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def abandoned(partial: Path) -> bool:
    """Whether nothing holds `partial`'s lock, so nothing will finish it (or it is gone).

    A lock, not the process id the name carries: a lock is seen by every process that
    shares the file, in other containers or on other machines of a shared folder, where
    a process id means nothing. Where the lock cannot be asked, the file is kept.
    """
    try:
        import fcntl
    except ImportError:  # no such locks here (Windows): nothing can be told, so keep it
        return not partial.exists()
    try:
        fd = os.open(partial, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (BlockingIOError), or not to be asked
        return False
    finally:
        os.close(fd)  # and the lock with it
    return True


def sweep(leftovers: Iterable[Path], lock_of: Callable[[Path], Path] = lambda left: left) -> None:
    """Remove each of `leftovers` that a killed command left: one whose lock (on the file
    `lock_of` names, itself by default) nothing holds (see :func:`abandoned`)."""
    for left in leftovers:
        if abandoned(lock_of(left)):
            with contextlib.suppress(OSError):
                left.unlink()
