"""lic_dynamics.files: a write is all or nothing, and leaves no temporary file."""

from __future__ import annotations

import json
import stat

import pytest

from lic_dynamics.files import read_jsonl, write_atomic, write_json, write_jsonl


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
