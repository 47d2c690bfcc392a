"""Where a run may write, and who may write there at once.

Every folder a run writes is checked before any work (:func:`require_writable`);
a split or a cache that would go beside read-only inputs (a shared, read-only
data set, normal on clusters) goes to a writable fallback folder instead
(:func:`beside_or_fallback`), which the log names. File locks
(:func:`exclusive`, :func:`hold_run`) keep two processes from computing the same
features, drawing the same split or writing the same run at once. A full disk
or a folder that refuses a write is an error the user can fix
(:func:`storage_error`), never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from emorec.errors import InputError

log = logging.getLogger("emorec")

FALLBACK_ENV = "EMOREC_CACHE_DIR"
# OS errors that a user fixes by freeing space or choosing another folder.
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_HELD_RUNS: dict[Path, FileLock] = {}  # run locks this process holds until it exits


def fallback_dir() -> Path:
    """The writable folder for what would go beside read-only inputs: ``$EMOREC_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/emorec``, else ``~/.cache/emorec``."""
    if os.environ.get(FALLBACK_ENV):
        return Path(os.environ[FALLBACK_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emorec"


def is_writable(folder: str | os.PathLike) -> bool:
    """Whether files can be created in ``folder``, or, while it does not exist, in its nearest existing parent
    (nothing is created): tried with a temporary file, not guessed from permission bits, which do not hold for
    root or on read-only mounts."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def require_writable(folders: dict[str, str | os.PathLike]) -> None:
    """Check, before any work, that every folder a run writes can be written; ``folders`` maps what it is (the
    flag that chooses it) to the folder. Raises one :class:`InputError` naming every folder that cannot."""
    refused = [f"{Path(folder)} ({what})" for what, folder in folders.items() if not is_writable(folder)]
    if refused:
        raise InputError(
            "cannot write to " + ", ".join(refused) + ": make it writable, or point the flag at "
            "a writable folder. Nothing was done."
        )


def beside_or_fallback(path: str | os.PathLike, what: str) -> Path:
    """Where to read and write ``path`` (a split or cache file that belongs beside an input): ``path`` itself when it
    exists or its folder is writable; else the same name in a folder of :func:`fallback_dir` kept for that input
    folder, with a warning naming it. Raises :class:`InputError` when neither can be written."""
    path = Path(path)
    if path.exists() or is_writable(path.parent):
        return path
    alternative = fallback_path(path)
    if not is_writable(alternative.parent):
        raise InputError(
            f"cannot write {what} beside the read-only {path.parent}, nor in {alternative.parent}: "
            f"set {FALLBACK_ENV} to a writable folder."
        )
    log.warning(
        "%s is read-only: %s goes to %s instead (%s chooses another folder)",
        path.parent,
        what,
        alternative,
        FALLBACK_ENV,
    )
    return alternative


def fallback_path(path: str | os.PathLike) -> Path:
    """Where :func:`beside_or_fallback` puts ``path`` when its folder is read-only: the same name, in a folder of
    :func:`fallback_dir` named after that folder (its name and a hash of its absolute path)."""
    path = Path(path)
    folder_key = hashlib.sha256(str(path.parent.resolve()).encode()).hexdigest()[:12]
    return fallback_dir() / f"{path.parent.name}-{folder_key}" / path.name


@contextlib.contextmanager
def exclusive(lock_file: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold the lock ``lock_file`` for the ``with`` block, waiting for another process that holds it, and saying
    so in the log (``what`` it is doing). The operating system releases it if the holder dies, even by SIGKILL."""
    lock = try_lock(lock_file)
    if lock is None:
        log.info("waiting for another process %s (lock %s)", what, lock_file)
        lock = FileLock(str(lock_file))
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def try_lock(lock_file: str | os.PathLike) -> FileLock | None:
    """The lock ``lock_file``, held, or None at once when another process holds it (released by the system if the
    holder dies, even by SIGKILL); call ``release()`` on it when done."""
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def hold_run(folder: str | os.PathLike, phase: str) -> None:
    """Hold, until this process exits, the lock of ``phase`` in the run folder ``folder``: a second process
    starting the same phase of the same run is refused with :class:`InputError`. Held already by this process
    (phases run one after another in one process, as the sweep and the tests do): nothing to do."""
    lock_file = Path(folder) / f".{phase}.lock"
    key = lock_file.resolve()
    if key in _HELD_RUNS:
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = try_lock(lock_file)
    if lock is None:
        raise InputError(
            f"{phase}.py is already running in {Path(folder)} (lock {lock_file}): wait for it to finish, "
            "or give this run another --run-name (or --checkpoint-dir)."
        )
    _HELD_RUNS[key] = lock


def storage_error(error: OSError) -> str | None:
    """The message for an OS error a user fixes by freeing space or choosing another folder (a full disk, a quota,
    a read-only or forbidden folder), naming the file and its folder; None for any other error."""
    if error.errno not in STORAGE_ERRNOS:
        return None
    where = f" writing {error.filename}" if error.filename else ""
    folder = f" (folder {Path(error.filename).parent})" if error.filename else ""
    return (
        f"{STORAGE_ERRNOS[error.errno]}{where}{folder}. Free some space or choose another folder, and run the "
        "same command again: finished work is kept (a partial feature cache and a training backup resume), and "
        "no output was left half written."
    )
