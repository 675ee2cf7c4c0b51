"""Files that a crash cannot leave half-written.

Every file is written to a temporary name in the same folder, flushed and ``fsync``-ed, then renamed
over the target (``os.replace`` is atomic on POSIX), and the folder is ``fsync``-ed so that the
rename survives a power cut. A reader therefore sees either the previous file or the new one.

An interrupted write that Python sees (an exception, Ctrl-C, SIGTERM under the CLIs) removes its
temporary file. One that it cannot see (SIGKILL, a power cut) leaves it behind, named
``.NAME.PID.XXXXXXXX.tmp``: :func:`remove_stale_temporaries` removes those whose process is gone, as
every write does for its own target and the trainer does for a run folder it opens.

Examples:
    >>> import json, pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_json({"ratio": 0.5}, pathlib.Path(folder) / "result.json")
    ...     print(json.loads(path.read_text()))
    ...     path = write_jsonl([{"step": 1}, {"step": 2}], pathlib.Path(folder) / "metrics.jsonl")
    ...     print(read_jsonl(path))
    {'ratio': 0.5}
    [{'step': 1}, {'step': 2}]
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, NoReturn

from lic_dynamics.validation import InvalidValue

# The temporary files of write_atomic: ".NAME.PID.RANDOM.tmp" (RANDOM: mkstemp's 8 characters).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``
    (the folder is created if needed; the file is readable by all, as ``open`` would make it).
    Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except Exception as error:
        Path(tmp).unlink(missing_ok=True)
        storage = storage_error(error)
        if storage is None:
            raise
        raise OSError(storage.errno, storage.strerror, str(path)) from error
    except BaseException:  # Ctrl-C, SIGTERM
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def storage_error(error: BaseException) -> OSError | None:
    """The ``OSError`` behind ``error``, if a storage failure caused it: ``error`` itself, or one
    in its chain of causes (torch's zip writer turns a full disk into a ``RuntimeError``, "unexpected
    pos 64 vs 0", raised while handling the ``OSError`` of the file's ``write``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def append_text(text: str, path: str | Path) -> None:
    """Append ``text`` (UTF-8) to ``path`` (a log: a crash can cut only its last line, which
    :func:`read_jsonl` ignores); an ``OSError`` names ``path`` (a file's ``write`` names none)."""
    try:
        with open(path, "a", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from error


# The lock file of a folder that its file system cannot lock itself (NFS).
LOCK_FILE = ".lock"


class FolderLock:
    """The lock of ``folder``'s one writer (``with FolderLock(out, "out"):``): an advisory
    ``fcntl.flock`` on the folder itself, so that nothing is written to hold it. A second writer
    is refused at once with :class:`~lic_dynamics.validation.InvalidValue` about ``parameter``,
    naming the folder and the holder's PID (from ``/proc/locks`` where Linux has it); a lock
    whose process died never blocks (the kernel released it with the process). The folder is
    created if needed (:attr:`created`), and removed on exit when this lock made it and it is
    still empty.

    Where a folder cannot be locked (NFS: Linux emulates ``flock`` there with a POSIX write lock,
    which needs a file open for writing), the lock is taken on ``folder/.lock`` instead, which
    then holds the holder's PID. A file system without locks at all (``ENOLCK``: an NFS mount
    with ``nolock``) holds none: a warning says so, and the work goes on unguarded.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as top:  # doctest: +NORMALIZE_WHITESPACE
        ...     with FolderLock(Path(top) / "run", "out"):
        ...         try:
        ...             FolderLock(Path(top) / "run", "out").__enter__()
        ...         except InvalidValue as error:
        ...             print(str(error).replace(top, "TOP").replace(str(os.getpid()), "PID"))
        ...     print((Path(top) / "run").exists())  # made here, and nothing written: removed
        out TOP/run: in use by process PID, which writes there (one process per folder: wait for it
        to end, or choose another folder)
        False
    """

    def __init__(self, folder: str | Path, parameter: str) -> None:
        self.folder, self.parameter = Path(folder), parameter
        self.created, self.fd = False, None

    def __enter__(self) -> FolderLock:
        self.created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self.fd = self._lock(fd)
        except BaseException:
            self._remove_if_made()
            raise
        return self

    def _lock(self, fd: int) -> int:
        """The descriptor that holds the lock: the folder's ``fd``, or its lock file's."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            self._refuse(holder)
        except OSError:  # a folder this file system cannot lock: a file then
            os.close(fd)
        fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            self._refuse(int(holder) if holder.isdigit() else None)
        except OSError as error:  # no locks on this file system at all
            warnings.warn(
                f"{self.folder}: its file system takes no lock ({error.strerror}); nothing stops "
                "a second process from writing there",
                stacklevel=3,
            )
            return fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def _refuse(self, holder: int | None) -> NoReturn:
        who = "another process" if holder is None else f"process {holder}"
        raise InvalidValue(
            self.parameter,
            f"{self.folder}: in use by {who}, which writes there (one process per folder: "
            "wait for it to end, or choose another folder)",
        )

    def __exit__(self, *exc: object) -> None:
        self._remove_if_made()
        os.close(self.fd)  # releases the lock

    def _remove_if_made(self) -> None:
        """The folder this lock made, if nothing but its lock file was written in it."""
        with contextlib.suppress(OSError):  # gone already, or unreadable: it stays as it is
            if self.created and set(os.listdir(self.folder)) <= {LOCK_FILE}:
                Path(self.folder, LOCK_FILE).unlink(missing_ok=True)
                self.folder.rmdir()


def _lock_holder(fd: int) -> int | None:
    """The PID that holds an ``flock`` on the file of ``fd``, as Linux lists it in /proc/locks
    (``1: FLOCK  ADVISORY  WRITE 4242 fe:00:2147011 0 EOF``: pid, then device:inode); None where
    that cannot be read."""
    info = os.fstat(fd)
    where = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        listed = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in listed.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == where:
            return int(fields[4])
    return None


def check_folder(path: str | Path, parameter: str) -> None:
    """Check, before any expensive work, that ``path`` is a folder this process can write in, or
    can become one (nothing is created: a command that fails later leaves no empty folder).
    :class:`~lic_dynamics.validation.InvalidValue` about ``parameter`` (the flag's library name)
    otherwise."""
    if not str(path).strip():  # Path("") would be the current folder
        raise InvalidValue(parameter, f"must name a folder, got {str(path)!r}")
    path = Path(path)
    existing = nearest_existing(path)
    if not existing.is_dir():
        where = "exists" if existing == path.absolute() else f"is under {existing}, which exists"
        raise InvalidValue(parameter, f"{path}: {where} and is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
        longest = os.pathconf(existing, "PC_NAME_MAX")
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):  # the disk's state, not the input's
            raise OSError(error.errno, error.strerror, str(existing)) from None
        raise InvalidValue(
            parameter, f"{path}: cannot write in {existing} ({error.strerror or error})"
        ) from None
    for part in path.absolute().relative_to(existing).parts:  # the folders still to create
        if len(os.fsencode(part)) > longest:
            raise InvalidValue(
                parameter, f"{path}: a name longer than {longest} bytes, the file system's limit"
            )


def nearest_existing(path: str | Path) -> Path:
    """``path`` (absolute) or its nearest ancestor that exists."""
    path = Path(path).absolute()
    while not _exists(path):
        path = path.parent
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long, say: it does not exist either
        return False


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files that :func:`write_atomic` left in ``folder`` (for the target
    ``name`` only, if given) when its process was killed; those of a live process stay. Returns
    the files removed."""
    removed = []
    for entry in Path(folder).glob(f".{'*' if name is None else glob.escape(name)}.*.tmp"):
        match = _TEMPORARY.match(entry.name)
        if match and (name is None or match["name"] == name) and not _alive(int(match["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # no signal sent: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:  # not a pid
        return False
    return True


def write_text(text: str, path: str | Path) -> Path:
    """``text`` (UTF-8) to ``path``, atomically."""
    return write_atomic(path, lambda file: file.write(text.encode()))


def write_json(data: object, path: str | Path) -> Path:
    """Strict JSON (no NaN or infinity), indented, atomically."""
    return write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", path)


def write_jsonl(records: list[dict], path: str | Path) -> Path:
    """One strict JSON object per line, atomically (used to cut a log back on resume)."""
    return write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records), path)


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file, up to a last line cut by a crash ([] if no file)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records
