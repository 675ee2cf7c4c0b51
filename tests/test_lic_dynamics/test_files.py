"""lic_dynamics.files: a write is all or nothing, leaves no temporary file and names the file when
the disk fails it; one writer per folder."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import stat

import pytest

from lic_dynamics.files import (
    LOCK_FILE,
    FolderLock,
    append_text,
    read_jsonl,
    write_atomic,
    write_json,
    write_jsonl,
)
from lic_dynamics.validation import InvalidValue


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    path = write_json({"version": 1}, tmp_path / "result.json")

    def fail(file) -> None:
        file.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, fail)
    assert json.loads(path.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_files_are_readable_by_all_and_folders_are_created(tmp_path):
    path = write_json([1, 2], tmp_path / "new" / "folder" / "x.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_json_is_strict(tmp_path):
    with pytest.raises(ValueError, match="Out of range float"):
        write_json({"loss": float("nan")}, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_jsonl_reads_up_to_a_line_cut_by_a_crash(tmp_path):
    path = write_jsonl([{"step": 1}, {"step": 2}], tmp_path / "metrics.jsonl")
    with path.open("a") as file:
        file.write('{"step": 3, "lo')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_temporaries_of_killed_processes_are_removed_and_live_ones_kept(tmp_path):
    """(A real SIGKILL mid-write: tests/test_lic_train/trainer/test_loop.py.)"""
    import os

    from lic_dynamics.files import check_folder, remove_stale_temporaries

    target = tmp_path / "checkpoint.pth.tar"
    stale = tmp_path / ".checkpoint.pth.tar.999999998.abcd1234.tmp"  # its process is gone
    stale.write_bytes(b"half")
    live = tmp_path / f".metrics.jsonl.{os.getpid()}.abcd1234.tmp"  # a write in progress
    live.write_bytes(b"")
    other = tmp_path / ".metrics.jsonl.999999999.abcd1234.tmp"  # no such process
    other.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path, "summary.json") == []  # another target's
    write_json({}, target)  # a write removes its own target's strays
    assert not stale.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path) == [other]
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, target.name]
    with pytest.raises(ValueError, match="must name a folder"):
        check_folder("", "out")
    with pytest.raises(ValueError, match="not a folder"):
        check_folder(target / "run", "out")


# ---- storage errors name the file --------------------------------------------------------------


def test_a_storage_error_raised_under_another_exception_names_the_file(tmp_path):
    """torch's zip writer turns a full disk into a RuntimeError raised while handling the
    OSError of the file's write: the OSError is found and restated, naming the target."""
    path = tmp_path / "checkpoint.pth.tar"

    def torch_like(file) -> None:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")  # noqa: B904 (as torch does)

    with pytest.raises(OSError) as caught:
        write_atomic(path, torch_like)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(path))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="a bug"):  # no storage error behind it: unchanged
        write_atomic(path, lambda file: (_ for _ in ()).throw(RuntimeError("a bug")))


def test_a_real_full_disk_names_the_file_and_keeps_the_previous_one(small_disk, fill):
    path = write_json({"version": 1}, small_disk / "result.json")
    fill(small_disk)
    with pytest.raises(OSError) as caught:
        write_json({"version": 2, "padding": "x" * 100_000}, path)
    assert (caught.value.errno, caught.value.filename) == (errno.ENOSPC, str(path))
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "result.json"]
    with pytest.raises(OSError) as caught:
        append_text("x" * 100_000, small_disk / "metrics.jsonl")
    assert (caught.value.errno, caught.value.filename) == (
        errno.ENOSPC,
        str(small_disk / "metrics.jsonl"),
    )


# ---- one writer per folder ---------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(tmp_path, holder):
    run = tmp_path / "run"
    process = holder(run)
    with pytest.raises(InvalidValue) as caught, FolderLock(run, "out"):
        pass
    assert caught.value.parameter == "out"
    assert str(caught.value).startswith(f"out {run}: in use by process {process.pid}, ")
    assert list(run.iterdir()) == []  # nothing is written to hold a lock


def test_the_lock_of_a_killed_process_never_blocks(tmp_path, holder):
    run = tmp_path / "run"
    process = holder(run)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with FolderLock(run, "out") as lock:
        assert not lock.created


def test_a_folder_made_by_the_lock_goes_when_nothing_was_written_in_it(tmp_path, holder):
    with FolderLock(tmp_path / "a" / "run", "out") as lock:
        assert lock.created and (tmp_path / "a" / "run").is_dir()
    assert not (tmp_path / "a" / "run").exists()
    with FolderLock(tmp_path / "b", "out"):
        (tmp_path / "b" / "metrics.jsonl").write_text("{}\n")
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["metrics.jsonl"]
    (tmp_path / "c").mkdir()
    with FolderLock(tmp_path / "c", "out"):  # the user's own (empty) folder stays
        pass
    assert (tmp_path / "c").is_dir()
    holder(tmp_path / "d")
    with pytest.raises(InvalidValue):  # refused: the holder's folder stays as it is
        FolderLock(tmp_path / "d", "out").__enter__()
    assert (tmp_path / "d").is_dir()


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match="its file system takes no lock .*No locks available"):
        with FolderLock(tmp_path / "run", "out"):
            pass


def test_a_folder_its_file_system_cannot_lock_is_locked_through_a_file(tmp_path, monkeypatch):
    """NFS: flock on a folder fails (a POSIX write lock needs a file open for writing); the lock
    file then holds the lock and the holder's PID, and a second writer is still refused."""
    real = fcntl.flock

    def nfs(fd, operation):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", nfs)
    run = tmp_path / "run"
    with FolderLock(run, "out"):
        assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(InvalidValue, match=f"in use by process {os.getpid()}, "):
            FolderLock(run, "out").__enter__()
    assert not run.exists()  # made by the lock, nothing else written: removed, lock file too
