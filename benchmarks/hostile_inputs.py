"""A hostile sweep of both command lines: every case runs ``lic-train`` or ``nqm`` as a real
subprocess, in a fresh temporary folder, under a wall-clock deadline and a memory watchdog, and is
classified against the promises of ``docs/reliability.md``.

    python benchmarks/hostile_inputs.py [--only REGEX] [--jobs N] [--out FILE] [--list]
                                        [--python-path DIR] [--deadline S] [--slow S]
                                        [--huge-mb MB] [--latency-runs N]

The cases, by group (the prefix of a case's name, for ``--only``): ``one-out`` (two ``fit`` at
once on one ``--out``), ``full-disk`` (a small tmpfs that fills during a checkpoint write, or
leaves no room), ``special-file`` (FIFOs, sockets and devices as data or checkpoints, an
unreadable sub-folder, a symlink loop, a 144-megapixel image), ``absurd-size`` (``nqm`` sizes
that cannot fit or end), ``file-word`` (checkpoints whose word on their own sizes is hostile,
edited and re-signed), ``newline`` (in file names), ``sigterm`` (during the imports and during a
run), ``message`` (misstated values, argparse's own words, an unwritable HOME, ``-0``),
``digits`` (full-width and Arabic-Indic); then, generated from both parsers and named
``PROG CMD FLAG 'VALUE'``, ordinary bad values for every flag that takes one (``-1``, ``0``,
``nan``, ``inf``, ``1e309``, ``x``, an empty string, a huge integer, ...), one per ``lic-train``
flag (each costs an import of torch) and three per ``nqm`` flag. Each case's outcome is the most
severe of its problems:

- ``traceback``: stderr holds ``Traceback``;
- ``hang``: no exit before the deadline (the process group is killed), or a long ``nqm`` run
  silent for 15 s;
- ``huge allocation``: the process group's peak RSS beyond ``--huge-mb`` on an input that must be
  refused (a group beyond 2.5 times that is killed);
- ``silent mix``: two ``fit`` at once on one ``--out`` both exit 0;
- ``wrong status``: bad input must exit 2, an environment failure 1, SIGTERM 143;
- ``not one line``: a refusal whose stderr is not one ``PROG CMD: error: ...`` line; a failure
  or SIGTERM whose stderr, past the progress and warnings of the run, is not one line; a
  successful run's stderr with a line that is neither a warning, progress nor ``PROG: ...``;
- ``wrong message``: the line misses what it must name (the file, the value given) or says what
  it must not (``-0``, ``rho = inf``, ``--out`` for ``--resume``);
- ``stray file``: a ``.*.tmp`` temporary left, or a file written on a refused input;
- ``slow refusal``: a bad number refused after more than ``--slow`` seconds.

It also times, ``--latency-runs`` times each, the refusals of ``lic-train fit --batch-size -1``
and ``nqm simulate --rule sgd --lr -1`` (median: the headline refusal latency). The fixtures (a
2-step run of a small model, checkpoints edited and re-signed with
``lic_train.trainer.checkpoint.save``, image folders) and the parsers' flags are built by the code
under test, in a child process. ``--python-path DIR`` runs the code of another checkout
(``python -m lic_train`` / ``python -m nqm`` with ``PYTHONPATH=DIR``); by default the installed
``lic-train`` and ``nqm``. Full-disk cases mount a tmpfs (root) and the unreadable sub-folder
drops the read capabilities with ``setpriv``; where neither works the case is skipped with the
reason. With ``--jobs`` above 1 a file written into the shared fixtures is blamed on the case that
finds it. Prints a count per outcome and a line per failing case; writes the cases, the counts and
the latencies to ``--out`` (default ``benchmarks/results/hostile_inputs/results.json``) atomically.
About 18 minutes for 231 cases on 2 shared cores (load 2) with ``--jobs 1``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

try:
    import psutil
except ImportError:  # the RSS of the main process only, from /proc
    psutil = None

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "hostile_inputs" / "results.json"
# The outcomes, most severe first: a case's outcome is the first of its problems.
SEVERITY = ("traceback", "hang", "huge allocation", "silent mix", "wrong status", "not one line",
            "wrong message", "stray file", "slow refusal")  # fmt: skip
TEMPORARY = re.compile(r"^\..+\.tmp$")
# Lines a successful run may print on stderr: PROG[ CMD]: ..., progress (NAME step N...), [i/n].
FINE_LINE = re.compile(r"^(lic-train|nqm)( [a-z]+)?: |^\S+ step \d|^\[\d+/\d+\] ")
# Lines a run that started prints before it fails or is stopped: progress and warnings.
PROGRESS_LINE = re.compile(r"^\S+ step \d|^\[\d+/\d+\] |^(lic-train|nqm)( [a-z]+)?: warning: ")
TINY = {"--N": ["8"], "--M": ["8"], "--patch-size": ["64", "64"], "--batch-size": ["2"],
        "--test-batch-size": ["2"], "--device": ["cpu"], "--num-workers": ["0"],
        "--steps": ["4"], "--validate-every": ["2"]}  # fmt: skip
# The flags a generated case completes its command line with (a cheap valid run).
BASE: dict[tuple[str, str], dict[str, list[str]]] = {
    ("lic-train", "fit"): {**TINY, "--data": ["{images}"], "--out": ["run"]},
    ("lic-train", "eval"): {"target": ["{run}"], "--data": ["{images}"], "--device": ["cpu"]},
    ("lic-train", "export"): {"target": ["{run}"], "out": ["m.pth.tar"]},
    ("lic-train", "compare"): {"--steps": ["2"], "--seeds": ["0"], "--methods": ["adam"],
                               "--data": ["{images}"], "--device": ["cpu"], "--out": ["cmp"]},
    ("nqm", "verify"): {"--quick": [], "--out": ["rep"]},
    ("nqm", "steady"): {"--rule": ["sgd"], "--lr": ["0.5"], "--h": ["1"]},
    ("nqm", "simulate"): {"--rule": ["sgd"], "--lr": ["0.5"], "--steps": ["20"], "--chains": ["2"],
                          "--dim": ["10"], "--points": ["2"]},
    ("nqm", "scaling"): {"--rules": ["sgd"], "--batch": ["4"], "--dim": ["50"], "--workers": ["1"]},
}  # fmt: skip
RULE_OF = {"--k": "sma", "--beta": "sma", "--alpha": "lookahead", "--mu": "momentum",
           "--window": "polyak"}  # fmt: skip
HUGE_INT = "99999999999999999999999"
VALUES = {
    "int": ["-1", "x", "", HUGE_INT, "1.5", "0"],
    "float": ["nan", "-1", "1e309", "x", "inf", "", "0"],
    "choice": ["x", ""],
    "name": ["x", "", "-1"],
    "read": ["", "{text}", "{empty}", "/dev/null"],
    "folder": ["", "{text}", "{text}/sub"],
    "file": ["", "/proc/m.pth.tar", "{text}/m.pth.tar"],
}
STRICT = {"x", "", "1.5", "nan"}  # never a valid number, whatever the flag
PER_FLAG = {"lic-train": 1, "nqm": 3}  # generated values per flag (lic-train's cost an import)


@dataclass
class Case:
    """One hostile command line and what the promises say it must do."""

    name: str
    program: str  # "lic-train" or "nqm"
    argv: list[str]  # after the program; "{key}" is a fixture's path
    expect: tuple[int, ...] = (2,)  # the statuses allowed
    number: bool = False  # a bad number: its refusal is timed against --slow
    setup: Callable[[Path, dict[str, str]], str | None] | None = None  # None or why skipped
    env: dict[str, str | None] = field(default_factory=dict)  # None removes the variable
    deadline: float | None = None  # seconds (default --deadline)
    sigterm: float | str | None = None  # SIGTERM after these seconds, or once stderr shows this
    announce: float | None = None  # a long run must have said something by then (then stopped)
    twice: bool = False  # two copies at once
    must_name: tuple[str, ...] = ()  # texts stderr must hold ("{key}": a fixture's file name)
    must_not: tuple[str, ...] = ()  # regular expressions stdout and stderr must not match
    wrapper: tuple[str, ...] = ()  # a command the program runs under


@dataclass
class Proc:
    """A running copy of a case's command."""

    popen: subprocess.Popen
    start: float
    out: Path
    err: Path
    status: int | None = None
    seconds: float = 0.0
    peak_kb: int = 0
    killed: str | None = None  # "deadline", "silent", "memory" or "announced"
    signalled: bool = False


@dataclass
class Sweep:
    """What every case needs: the fixtures, the programs and the bounds."""

    fixtures: dict[str, str]
    fixture_root: Path
    scratch: Path
    programs: dict[str, list[str]]
    env: dict[str, str]
    deadline: float
    slow: float
    huge_kb: int


# ---------------------------------------------------------------- fixtures (the code under test)


def make_fixtures(root: Path) -> None:
    """Build the fixtures with the code under test (this runs in a child process) and write
    ``root/fixtures.json`` (:func:`write_flags`)."""
    import numpy as np
    from PIL import Image

    import lic_train.cli

    rng = np.random.default_rng(0)
    for name, splits in (("images", (("train", 3), ("test", 1))), ("bigdata", (("train", 3),))):
        for split, count in splits:
            (root / name / split).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / name / split / f"{i}.png")
    shutil.copytree(root / "images" / "test", root / "bigdata" / "test")
    Image.new("L", (12000, 12000)).save(root / "bigdata" / "test" / "big.png", compress_level=1)
    tiny = [word for flag, values in TINY.items() for word in (flag, *values)]
    data, run = str(root / "images"), str(root / "run")
    argv = ["fit", *tiny, "--steps", "2", "--data", data, "--out", run]
    if lic_train.cli.main(argv) != 0:
        raise SystemExit("the fixture run failed")
    for name in ("empty", "corrupt", "corrupt\nfolder"):
        (root / name).mkdir()
    for name in ("a.png", "b.png"):  # image files that do not decode
        (root / "corrupt" / name).write_bytes(rng.bytes(100))
        (root / "corrupt\nfolder" / name).write_bytes(rng.bytes(100))
    (root / "text").write_text("not a checkpoint\n")
    (root / "text\nfile").write_text("not a checkpoint\n")
    (root / "noise.pth.tar").write_bytes(rng.bytes(3000))
    (root / "noise\n.pth.tar").write_bytes(rng.bytes(3000))
    make_checkpoints(root)
    newline = {"corrupt\nfolder": "corrupt_nl", "text\nfile": "text_nl",
               "noise\n.pth.tar": "noise_nl"}  # fmt: skip
    paths = {newline.get(p.name, p.name.split(".")[0]): str(p) for p in root.iterdir()}
    write_flags(root, {**paths, "fx": str(root)})


def write_flags(root: Path, paths: dict[str, str]) -> None:
    """``root/fixtures.json``: the fixtures' paths by key, and both parsers' flags."""
    import lic_train.cli
    import nqm.cli

    flags = {"lic-train": parser_flags(lic_train.cli.build_parser()),
             "nqm": parser_flags(nqm.cli.build_parser())}  # fmt: skip
    (root / "fixtures.json").write_text(json.dumps({"paths": paths, "flags": flags}))


def make_checkpoints(root: Path) -> None:
    """Checkpoints whose word on their sizes is hostile, each from the fixture run's."""
    import torch

    from lic_train.trainer import checkpoint

    latest = root / "run" / checkpoint.LATEST
    saved = checkpoint.load(latest)
    for name, widths in (("big_n", {"N": 100000}), ("wide", {"N": 1500}), ("conflict", {"N": 16})):
        edited = {**saved, "config": {**saved["config"], **widths}}
        checkpoint.save(edited, root / f"{name}.pth.tar")  # re-signed: the checksum is no seal
    shutil.copytree(root / "run", root / "big_n_run")
    for name in (checkpoint.LATEST, checkpoint.BEST):
        shutil.copy(root / "big_n.pth.tar", root / "big_n_run" / name)
    weights = dict(saved["state_dict"])
    first = next(key for key, value in weights.items() if value.dim() == 4)
    shape = (10**6, *weights[first].shape[1:])  # a width of 10^6 held in one element
    weights[first] = torch.zeros(1, 1, 1, 1).expand(*shape)
    torch.save({"state_dict": weights}, root / "stride0.pth.tar")
    signed = torch.load(latest, map_location="cpu", weights_only=True)
    content = {key: value for key, value in signed.items() if key != checkpoint.CHECKSUM}
    extra = torch.zeros(1).expand(2**29)  # 2 GiB once made contiguous, 4 bytes on disk
    torch.save({**content, "extra": extra, checkpoint.CHECKSUM: signed[checkpoint.CHECKSUM]},
               root / "extra0.pth.tar")  # fmt: skip


def parser_flags(parser: argparse.ArgumentParser) -> dict[str, list[dict]]:
    """Each subcommand -> its arguments that take a value: flag (longest option string, or the
    positional's name), kind (int, float, choice or text) and nargs."""
    found: dict[str, list[dict]] = {}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            found[name] = []
            for a in sub._actions:
                if a.nargs == 0 or isinstance(a, argparse._HelpAction):
                    continue
                kind = "choice" if a.choices else {int: "int", float: "float"}.get(a.type, "text")
                flag = max(a.option_strings, key=len) if a.option_strings else a.dest
                found[name].append({"flag": flag, "kind": kind, "nargs": a.nargs})
    return found


# ---------------------------------------------------------------- the hostile cases


def fit(*words: str, out: str = "run", data: str = "{images}") -> list[str]:
    """A tiny ``fit`` (seconds) with ``words`` in front of the tiny settings they do not give."""
    base = {**TINY, "--data": [data], "--out": [out]}
    return ["fit", *words, *[w for k, v in base.items() if k not in words for w in (k, *v)]]


def copy_fixture(key: str, name: str) -> Callable[[Path, dict[str, str]], str | None]:
    def setup(folder: Path, fx: dict[str, str]) -> str | None:
        shutil.copytree(fx[key], folder / name, symlinks=True)
        return None

    return setup


def mount(folder: Path, size: str) -> str | None:
    """A tmpfs of ``size`` at ``folder``; the reason when it cannot be mounted."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.strip()}"


def full_disk(size: str, fill: str | None = None) -> Callable[[Path, dict[str, str]], str | None]:
    """A tmpfs of ``size`` at ``disk/``, holding a copy of the fixture ``fill`` if given."""

    def setup(folder: Path, fx: dict[str, str]) -> str | None:
        reason = mount(folder / "disk", size)
        if reason is None and fill is not None:
            shutil.copytree(fx[fill], folder / "disk" / fill)
        return reason

    return setup


def data_with(
    split: str, name: str, make: Callable[[Path], object]
) -> Callable[[Path, dict[str, str]], str | None]:
    """A copy of the image folder at ``data/`` with ``make(data/split/name)`` added."""

    def setup(folder: Path, fx: dict[str, str]) -> str | None:
        shutil.copytree(fx["images"], folder / "data")
        make(folder / "data" / split / name)
        return None

    return setup


def make_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def locked_folder(folder: Path, fx: dict[str, str]) -> str | None:
    """A copy of the image folder at ``data/`` with a mode-000 sub-folder ``train/locked``."""
    if not locked_reader():
        return "root reads a mode-000 folder, and setpriv is missing to drop that right"
    shutil.copytree(fx["images"], folder / "data")
    locked = folder / "data" / "train" / "locked"
    locked.mkdir()
    shutil.copy(locked.parent / "0.png", locked / "0.png")
    locked.chmod(0)
    return None


def make_loop(path: Path) -> None:
    path.symlink_to(path.name)


def make_undecodable(path: Path) -> None:
    path.write_bytes(b"\x89PNG not really")


def locked_reader() -> tuple[str, ...]:
    """A wrapper under which root cannot read a mode-000 folder (``setpriv`` drops the read
    capabilities), or () when there is none."""
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        return ()
    return ("setpriv", "--bounding-set=-dac_override,-dac_read_search")


def concurrency_and_disk_cases() -> list[Case]:
    """One run folder, two writers (``one-out``); a full disk (``full-disk``)."""
    return [
        Case("one-out: two fits at once on one --out", "lic-train", fit(), expect=(0, 2), twice=True),
        Case("full-disk: fit, at the first checkpoint write (340k tmpfs)", "lic-train",
             fit(out="disk/run"), expect=(1,), setup=full_disk("340k"),
             must_name=("checkpoint",)),
        Case("full-disk: fit, at the first best checkpoint (480k tmpfs)", "lic-train",
             fit(out="disk/run"), expect=(1,), setup=full_disk("480k"),
             must_name=("checkpoint",)),
        Case("full-disk: fit, at a later checkpoint (650k tmpfs)", "lic-train",
             fit(out="disk/run"), expect=(1,), setup=full_disk("650k"),
             must_name=("checkpoint",)),
        Case("full-disk: no room for one checkpoint (64k tmpfs)", "lic-train",
             fit(out="disk/run"), setup=full_disk("64k"), must_name=("--out",)),
        Case("full-disk: fit --resume (700k tmpfs holding the run)", "lic-train",
             ["fit", "--resume", "disk/run", "--steps", "8"], expect=(1, 2),
             setup=full_disk("700k", "run"), must_not=("--out",)),
        Case("full-disk: export (64k tmpfs)", "lic-train", ["export", "{run}", "disk/m.pth.tar"],
             expect=(1, 2), setup=full_disk("64k"), must_name=("m.pth.tar",)),
        Case("full-disk: nqm verify --out (16k tmpfs)", "nqm",
             ["verify", "--quick", "--out", "disk/rep"], expect=(1, 2), setup=full_disk("16k")),
    ]  # fmt: skip


def special_file_cases() -> list[Case]:
    """``special-file``: FIFOs, sockets and devices, an unreadable sub-folder, a symlink loop,
    a 144-megapixel image."""
    locked = locked_reader()
    return [
        Case("special-file: FIFO in data/train", "lic-train", fit(data="data"), expect=(0,), deadline=45,
             setup=data_with("train", "fifo.png", os.mkfifo)),
        Case("special-file: FIFO in data/test", "lic-train", fit(data="data"), expect=(0,), deadline=45,
             setup=data_with("test", "fifo.png", os.mkfifo)),
        Case("special-file: socket in data/train", "lic-train", fit(data="data"), expect=(0,), deadline=45,
             setup=data_with("train", "sock.png", make_socket)),
        Case("special-file: fit --checkpoint FIFO", "lic-train", fit("--checkpoint", "fifo.pth.tar"),
             deadline=30, setup=lambda f, fx: os.mkfifo(f / "fifo.pth.tar"),
             must_name=("--checkpoint",)),
        Case("special-file: eval --data with a FIFO in test/", "lic-train",
             ["eval", "{run}", "--data", "data", "--device", "cpu"], expect=(0,), deadline=30,
             setup=data_with("test", "fifo.png", os.mkfifo)),
        Case("special-file: fit --checkpoint /dev/zero", "lic-train", fit("--checkpoint", "/dev/zero")),
        Case("special-file: eval /dev/zero", "lic-train", ["eval", "/dev/zero"]),
        Case("special-file: unreadable sub-folder of data/train", "lic-train", fit(data="data"),
             expect=(0,), setup=locked_folder, wrapper=locked,
             must_name=("locked",)),
        Case("special-file: symlink loop in data/train", "lic-train", fit(data="data"), expect=(0,),
             setup=data_with("train", "loop.png", make_loop)),
        Case("special-file: 144-megapixel test image (the warning names it)", "lic-train",
             fit(data="{bigdata}"), expect=(0,), must_name=("big.png",)),
    ]  # fmt: skip


def nqm_size_cases() -> list[Case]:
    """``absurd-size``: refused, or announced within 15 s."""
    sim = ["simulate", "--rule", "sgd", "--lr", "0.5"]
    absurd = [
        ("--dim 1e9 --steps 10 --chains 10", ["--dim", "1000000000", "--steps", "10", "--chains", "10"]),
        ("--chains 10^12", ["--chains", "1000000000000"]),
        ("--steps 10^12", ["--steps", "1000000000000"]),
        ("--chains 1e12", ["--chains", "1e12"]),
        ("--steps 1e12", ["--steps", "1e12"]),
        ("--dim 10^8 --chains 2", ["--dim", "100000000", "--chains", "2", "--steps", "10"]),
    ]  # fmt: skip
    cases = [Case(f"absurd-size: nqm simulate {name}", "nqm", sim + words, announce=15, number=True)
             for name, words in absurd]  # fmt: skip
    cases += [
        # More points than steps report every step: quick, so done or refused.
        Case("absurd-size: nqm simulate --points 10^9", "nqm", [*sim, "--points", "1000000000"],
             expect=(0, 2), announce=15, number=True),
        Case("absurd-size: nqm steady --rule polyak --window 10^9", "nqm",
             ["steady", "--rule", "polyak", "--lr", "0.5", "--h", "1", "--window", "1000000000"],
             expect=(0, 2), announce=15),
        Case("absurd-size: nqm steady --rule sma --k 10^9", "nqm",
             ["steady", "--rule", "sma", "--lr", "0.5", "--h", "1", "--k", "1000000000"],
             expect=(0, 2), announce=15),
        Case("absurd-size: nqm scaling --dim 10^7", "nqm",
             ["scaling", "--rules", "sgd", "--batch", "4", "--dim", "10000000"], announce=15,
             expect=(0, 2)),
    ]  # fmt: skip
    return cases


def checkpoint_cases() -> list[Case]:
    """``file-word``: a file's declared sizes, trusted before they are checked; an export whose
    config contradicts its weights."""
    return [
        Case("file-word: fit --checkpoint re-signed config N=100000 (weights N=8)", "lic-train",
             fit("--checkpoint", "{big_n}"), expect=(0, 2), must_name=("big_n",)),
        Case("file-word: eval re-signed config N=100000", "lic-train", ["eval", "{big_n}"],
             must_name=("big_n",)),
        Case("file-word: export re-signed config N=100000", "lic-train",
             ["export", "{big_n}", "m.pth.tar"], must_name=("big_n",)),
        Case("file-word: fit --resume a run whose config says N=100000", "lic-train",
             ["fit", "--resume", "run"], setup=copy_fixture("big_n_run", "run"),
             must_name=("run",)),
        Case("file-word: eval stride-0 state dict (10^6 x 3 x 5 x 5) --model", "lic-train",
             ["eval", "{stride0}", "--model", "bmshj2018-hyperprior"], must_name=("stride0",)),
        Case("file-word: fit --checkpoint stride-0 state dict", "lic-train",
             fit("--checkpoint", "{stride0}"), must_name=("stride0",)),
        Case("file-word: fit --checkpoint stride-0 extra tensor of 2^29", "lic-train",
             fit("--checkpoint", "{extra0}"), must_name=("extra0",)),
        Case("file-word: eval stride-0 extra tensor of 2^29", "lic-train", ["eval", "{extra0}"],
             must_name=("extra0",)),
        Case("file-word: eval re-signed config N=1500", "lic-train", ["eval", "{wide}"],
             must_name=("wide",)),
        Case("file-word: fit --checkpoint re-signed config N=1500 (weights N=8)", "lic-train",
             fit("--checkpoint", "{wide}"), expect=(0, 2), must_name=("wide",)),
        Case("file-word: export config N=16 over weights N=8", "lic-train",
             ["export", "{conflict}", "m.pth.tar"], must_name=("conflict",)),
    ]  # fmt: skip


def newline_and_signal_cases() -> list[Case]:
    """``newline`` in a file name; ``sigterm`` early (imports) and during a run."""
    verify = ["verify", "--quick", "--out", "rep"]
    return [
        Case("newline: fit --data folder with a newline, no image decodes", "lic-train",
             fit(data="{corrupt_nl}")),
        Case("newline: fit --data missing folder with a newline", "lic-train", fit(data="mis\nsing")),
        Case("newline: fit --out under a file with a newline", "lic-train",
             fit(out="{text_nl}/run")),
        Case("newline: fit --checkpoint file with a newline", "lic-train",
             fit("--checkpoint", "{noise_nl}")),
        Case("newline: eval checkpoint file with a newline", "lic-train", ["eval", "{noise_nl}"]),
        Case("newline: export to a file with a newline under a file", "lic-train",
             ["export", "{run}", "{text_nl}/m.pth.tar"]),
        Case("newline: fit, an undecodable image named with a newline (warning)", "lic-train",
             fit(data="data"), expect=(0,), setup=data_with("train", "bad\nname.png",
                                                            make_undecodable)),
        Case("sigterm: fit SIGTERM at 0.5 s (imports)", "lic-train", fit(), expect=(143,),
             sigterm=0.5),
        Case("sigterm: eval SIGTERM at 2 s (imports)", "lic-train", ["eval", "{run}", "--device", "cpu"],
             expect=(143,), sigterm=2.0),
        Case("sigterm: fit SIGTERM at the first step line", "lic-train",
             fit("--steps", "40", "--validate-every", "20"), expect=(143,), sigterm=" step "),
        Case("sigterm: nqm verify SIGTERM at 0.3 s (imports)", "nqm", verify, expect=(143,),
             sigterm=0.3),
        Case("sigterm: nqm verify SIGTERM at 3 s", "nqm", verify, expect=(143,), sigterm=3.0),
    ]  # fmt: skip


def message_cases() -> list[Case]:
    """``message``: values in messages, argparse's own words, HOME, -0; non-ASCII ``digits``."""
    steady = ["steady", "--rule", "sgd", "--lr", "0.5"]
    sim = ["simulate", "--rule", "sgd", "--lr", "0.5", "--chains", "2", "--dim", "10",
           "--points", "2"]  # fmt: skip
    no_home = {"HOME": "{text}", "MPLCONFIGDIR": None, "XDG_CONFIG_HOME": None,
               "XDG_CACHE_HOME": None}  # fmt: skip
    negative_zero = r"(?<![\w.])-0(\.0*)?(?![\w.])"
    c = [
        ("message: nqm steady --alpha 1e-300", "nqm",
         ["steady", "--rule", "lookahead", "--lr", "0.5", "--h", "1", "--alpha", "1e-300"],
         (0, 2), (), (r"got 0\.0\b",)),
        ("message: nqm simulate --alpha 1e-300", "nqm",
         ["simulate", "--rule", "lookahead", "--lr", "0.5", "--alpha", "1e-300"],
         (0, 2), (), (r"got 0\.0\b",)),
        ("message: nqm steady --h 5e-324 --precondition 1", "nqm",
         [*steady, "--h", "5e-324", "--precondition", "1"], (0, 2), (), (r"rho = inf",)),
        ("message: nqm steady --h 1e300 --precondition 1", "nqm",
         [*steady, "--h", "1e300", "--precondition", "1"], (0, 2), (), ("overflow",)),
        ("message: nqm steady --c -0", "nqm", [*steady, "--h", "1", "--c", "-0"], (0, 2), (),
         (negative_zero,)),
        ("message: nqm simulate --lr -inf", "nqm", ["simulate", "--rule", "sgd", "--lr", "-inf"],
         (2,), ("--lr", "-inf"), ()),
        ("message: nqm steady --lr -inf", "nqm", ["steady", "--rule", "sgd", "--lr", "-inf", "--h", "1"],
         (2,), ("--lr", "-inf"), ()),
        ("message: lic-train fit -lr -inf", "lic-train", fit("-lr", "-inf"), (2,),
         ("--learning-rate", "-inf"), ()),
        ("message: nqm simulate --rule polyak --window 5", "nqm",
         ["simulate", "--rule", "polyak", "--lr", "0.5", "--window", "5"], (2,), ("--window",), ()),
        ("digits: nqm simulate --steps full-width 12", "nqm", [*sim, "--steps", "\uff11\uff12"],
         (2,), ("--steps",), ()),
        ("digits: nqm steady --lr full-width 0.5", "nqm",
         ["steady", "--rule", "sgd", "--lr", "\uff10.\uff15", "--h", "1"], (2,), ("--lr",), ()),
        ("digits: nqm simulate --chains Arabic-Indic 3", "nqm", [*sim[:5], "--chains", "\u0663"],
         (2,), ("--chains",), ()),
        ("digits: lic-train fit --steps Arabic-Indic 3", "lic-train", fit("--steps", "\u0663"),
         (2,), ("--steps",), ()),
        ("digits: lic-train fit --seed full-width 1", "lic-train", fit("--seed", "\uff11"),
         (2,), ("--seed",), ()),
    ]  # fmt: skip
    cases = [Case(name, program, argv, expect=expect, number=True, must_name=named,
                  must_not=forbidden) for name, program, argv, expect, named, forbidden in c]  # fmt: skip
    cases += [
        Case("message: nqm verify --out FILE with HOME unwritable", "nqm",
             ["verify", "--out", "{text}"], env=no_home, must_name=("--out",)),
        Case("message: nqm verify --quick with HOME unwritable", "nqm",
             ["verify", "--quick", "--out", "rep"], expect=(0,), env=no_home),
    ]  # fmt: skip
    return cases


# ---------------------------------------------------------------- generated from the parsers


def value_kind(program: str, command: str, entry: dict) -> str:
    """Which pool of bad values fits this argument."""
    flag, kind = entry["flag"], entry["kind"]
    if kind != "text":
        return kind
    if flag in ("--model", "--methods", "--rules"):
        return "name"
    if (command, flag) == ("export", "out"):
        return "file"  # never a path outside the case folder: it would be written
    return "folder" if flag == "--out" else "read"


def flag_case(program: str, command: str, entry: dict, value: str) -> Case:
    """A cheap valid command line of ``command`` with ``value`` for the flag ``entry``."""
    flag, nargs = entry["flag"], entry["nargs"]
    given = [value] * (2 if nargs == 2 else 1)
    base = {key: list(words) for key, words in BASE[(program, command)].items()}
    if flag in ("--quality", "--model") and command == "fit":
        base.pop("--N"), base.pop("--M")
    if flag == "--epochs":
        base.pop("--steps")
    if command in ("steady", "simulate") and flag in RULE_OF:
        base["--rule"] = [RULE_OF[flag]]
    if flag.startswith("-"):
        base.pop(flag, None)
        base = {flag: given, **base} if flag != "--resume" else {flag: given}
    else:
        base[flag] = given
    positional = [w for key, words in base.items() if not key.startswith("-") for w in words]
    options = [w for key, words in base.items() if key.startswith("-") for w in (key, *words)]
    kind = value_kind(program, command, entry)
    strict = kind not in ("int", "float") or value in STRICT
    return Case(
        name=f"{program} {command} {flag} {value!r}",
        program=program,
        argv=[command, *positional, *options],
        expect=(2,) if strict else (0, 2),
        number=kind in ("int", "float"),
        announce=15 if command in ("simulate", "scaling") else None,
    )


def flag_cases(flags: dict[str, dict[str, list[dict]]]) -> list[Case]:
    """``PER_FLAG[program]`` bad values for every argument that takes one, rotating through each
    kind's pool so that every value is tried."""
    cases, turn = [], Counter()
    for program, commands in flags.items():
        for command, entries in commands.items():
            for entry in entries:
                kind = value_kind(program, command, entry)
                pool = VALUES[kind]
                for i in range(min(PER_FLAG[program], len(pool))):
                    value = pool[(turn[program, kind] + i) % len(pool)]
                    cases.append(flag_case(program, command, entry, value))
                turn[program, kind] += PER_FLAG[program]
    return cases


def all_cases(flags: dict[str, dict[str, list[dict]]]) -> list[Case]:
    cases = [*concurrency_and_disk_cases(), *special_file_cases(), *nqm_size_cases(),
             *checkpoint_cases(), *newline_and_signal_cases(), *message_cases(),
             *flag_cases(flags)]  # fmt: skip
    names = Counter(case.name for case in cases)
    for case in cases:  # a generated case may repeat an earlier one
        if names[case.name] > 1:
            names[case.name] -= 1
            case.name += f" #{names[case.name] + 1}"
    return cases


# ---------------------------------------------------------------- running


def expand(word: str, fixtures: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: fixtures.get(m[1], m[0]), word)


def launch(case: Case, sweep: Sweep, folder: Path, logs: Path) -> Proc:
    """Start the case's command in its own process group, in ``folder``; its stdout and stderr
    go to ``logs.out`` and ``logs.err``."""
    argv = [*case.wrapper, *sweep.programs[case.program],
            *[expand(word, sweep.fixtures) for word in case.argv]]  # fmt: skip
    env = dict(sweep.env)
    for key, value in case.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = expand(value, sweep.fixtures)
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        popen = subprocess.Popen(argv, cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=stderr, start_new_session=True)  # fmt: skip
    return Proc(popen, time.monotonic(), out, err)


def group_rss_kb(pid: int) -> int:
    """The resident memory of ``pid`` and its descendants, in KiB."""
    if psutil is None:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        found = re.search(r"VmRSS:\s+(\d+)", status)
        return int(found[1]) if found else 0
    try:
        parent = psutil.Process(pid)
        members = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            pass
    return total // 1024


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def poll(proc: Proc, case: Case, sweep: Sweep, deadline: float) -> None:
    """One look at a running copy: reap it, or watch its memory, signal or kill it."""
    pid, status, usage = os.wait4(proc.popen.pid, os.WNOHANG)
    now = time.monotonic()
    if pid:
        proc.status = proc.popen.returncode = os.waitstatus_to_exitcode(status)
        proc.seconds = now - proc.start
        proc.peak_kb = max(proc.peak_kb, usage.ru_maxrss)
        kill_group(pid)  # anything it left running
        return
    if proc.killed is not None:
        return
    proc.peak_kb = max(proc.peak_kb, rss := group_rss_kb(proc.popen.pid))
    elapsed = now - proc.start
    if rss > 2.5 * sweep.huge_kb:
        proc.killed = "memory"
    elif isinstance(case.sigterm, float) and elapsed >= case.sigterm and not proc.signalled:
        proc.signalled = True
        kill_group(proc.popen.pid, signal.SIGTERM)
    elif isinstance(case.sigterm, str) and not proc.signalled and case.sigterm in text(proc.err):
        proc.signalled = True
        kill_group(proc.popen.pid, signal.SIGTERM)
    elif case.announce is not None and elapsed >= case.announce and not proc.signalled:
        proc.signalled = True
        if text(proc.err).strip():  # it said how long: stop it, as a user would
            proc.killed = "announced"
            kill_group(proc.popen.pid, signal.SIGTERM)
        else:
            proc.killed = "silent"
    elif elapsed >= deadline:
        proc.killed = "deadline"
    if proc.killed in ("memory", "silent", "deadline"):
        kill_group(proc.popen.pid)


def watch(procs: list[Proc], case: Case, sweep: Sweep) -> None:
    deadline = case.deadline or sweep.deadline
    while any(proc.status is None for proc in procs):
        for proc in procs:
            if proc.status is None:
                poll(proc, case, sweep, deadline)
                if proc.killed == "announced" and time.monotonic() - proc.start > deadline:
                    kill_group(proc.popen.pid)  # it ignored SIGTERM
        time.sleep(0.05)


def text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="backslashreplace")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` (no link followed): size and modification time."""
    found = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            found[os.path.relpath(path, root)] = (info.st_size, info.st_mtime_ns)
    return found


def unmount_under(folder: Path) -> None:
    prefix = str(folder) + "/"
    for line in Path("/proc/mounts").read_text().splitlines():
        point = line.split()[1]
        if point.startswith(prefix):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def run_case(case: Case, sweep: Sweep) -> dict:
    """Run one case in a fresh folder and classify what it did."""
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=sweep.scratch))
    logs = Path(tempfile.mkdtemp(prefix="logs-", dir=sweep.scratch))
    try:
        reason = case.setup(folder, sweep.fixtures) if case.setup else None
        if reason is not None:
            return {**describe(case), "outcome": "skipped", "problems": [], "reason": reason}
        before, fixtures = tree(folder), tree(sweep.fixture_root)
        procs = [launch(case, sweep, folder, logs / str(i)) for i in range(1 + case.twice)]
        watch(procs, case, sweep)
        problems = classify(case, procs, sweep)
        problems += stray(case, procs, sweep, folder, before, fixtures)
        problems = sorted(set(problems), key=SEVERITY.index)
        return {**describe(case), **observed(procs), "problems": problems,
                "outcome": problems[0] if problems else "ok"}  # fmt: skip
    finally:
        unmount_under(folder)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)


def describe(case: Case) -> dict:
    return {"name": case.name, "command": shlex.join([case.program, *case.argv]),
            "expected": list(case.expect)}  # fmt: skip


def observed(procs: list[Proc]) -> dict:
    """What the copies did: status, seconds, peak RSS, stderr's line count and ends."""
    shown = max(procs, key=lambda proc: proc.status != 0)  # of two, the refused one
    lines = text(shown.err).splitlines()
    statuses = [proc.status for proc in procs]
    return {
        "status": statuses[0] if len(procs) == 1 else statuses,
        "seconds": round(max(proc.seconds for proc in procs), 3),
        "peak_rss_mb": round(max(proc.peak_kb for proc in procs) / 1024, 1),
        "killed": next((proc.killed for proc in procs if proc.killed), None),
        "stderr_lines": len(lines),
        "first_stderr_line": lines[0] if lines else "",
        "last_stderr_line": lines[-1] if lines else "",
        "stderr_head": [line[:300] for line in lines[:6]],
    }


# ---------------------------------------------------------------- classification


def classify(case: Case, procs: list[Proc], sweep: Sweep) -> list[str]:
    """The problems of a case's copies against the promises (stray files aside)."""
    problems = []
    for proc in procs:
        err = text(proc.err)
        if "Traceback" in err:
            problems.append("traceback")
        if proc.killed in ("deadline", "silent"):
            problems.append("hang")
        refusal = 0 not in case.expect or proc.status not in (0, None)
        if proc.killed == "memory" or (refusal and proc.peak_kb > sweep.huge_kb):
            problems.append("huge allocation")
    if any(proc.killed in ("deadline", "silent", "memory") for proc in procs):
        return problems
    if case.twice:
        statuses = sorted(proc.status for proc in procs)
        if statuses == [0, 0]:
            problems.append("silent mix")
        elif statuses != [0, 2]:
            problems.append("wrong status")
    elif procs[0].killed != "announced" and procs[0].status not in case.expect:
        problems.append("wrong status")
    for proc in procs:
        problems += lines_problems(case, proc)
        refused = proc.status == 2 and 2 in case.expect
        if case.number and refused and proc.seconds > sweep.slow:
            problems.append("slow refusal")
    return problems


def lines_problems(case: Case, proc: Proc) -> list[str]:
    """``not one line`` and ``wrong message`` for one copy."""
    err, out = text(proc.err), text(proc.out)
    lines = err.splitlines()
    command = case.argv[0]
    if proc.status != 2:  # a run that started: its progress and warnings came first
        lines = [line for line in lines if not PROGRESS_LINE.search(line)]
    if proc.killed == "announced" or proc.status == 0:
        shaped = all(FINE_LINE.search(line) for line in lines)
    elif proc.status in (1, 2):
        form = re.compile(rf"^{re.escape(case.program)} {re.escape(command)}: error: ")
        shaped = len(lines) == 1 and bool(form.search(lines[0]))
    else:  # 143, or killed by a signal: one line from the program
        shaped = len(lines) == 1 and lines[0].startswith(case.program)
    problems = [] if shaped else ["not one line"]
    # What a refusal must name (a success that expects a warning: what the warning must name).
    checked = proc.status != 0 or case.expect == (0,)
    named = not checked or all(word in err for word in case.must_name)
    forbidden = any(re.search(pattern, out + err) for pattern in case.must_not)
    if (case.must_name and not named) or forbidden:
        problems.append("wrong message")
    return problems


def stray(
    case: Case,
    procs: list[Proc],
    sweep: Sweep,
    folder: Path,
    before: dict[str, tuple[int, int]],
    fixtures: dict[str, tuple[int, int]],
) -> list[str]:
    """``stray file``: a temporary left anywhere, a fixture changed, or a file written by a
    refused input."""
    after = tree(folder)
    left = [path for path in after if TEMPORARY.match(os.path.basename(path))]
    left += [p for p in tree(sweep.fixture_root) if TEMPORARY.match(os.path.basename(p))]
    changed = tree(sweep.fixture_root) != fixtures
    refused = all(proc.status == 2 for proc in procs) and 0 not in case.expect
    wrote = refused and after != before
    return ["stray file"] if left or changed or wrote else []


def expand_names(case: Case, fixtures: dict[str, str]) -> Case:
    """The case with the fixtures' names (not their whole paths) in ``must_name``."""
    names = tuple(re.sub(r"\{(\w+)\}", lambda m: Path(fixtures.get(m[1], m[0])).name, word)
                  for word in case.must_name)  # fmt: skip
    return Case(**{**case.__dict__, "must_name": names})


# ---------------------------------------------------------------- the sweep


def programs_for(python_path: str | None) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The command of each program and the children's environment."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    bin_dir = Path(sys.executable).parent
    if python_path is not None:
        env["PYTHONPATH"] = str(Path(python_path).resolve())
        return {"lic-train": [sys.executable, "-m", "lic_train"],
                "nqm": [sys.executable, "-m", "nqm"]}, env  # fmt: skip
    found = {name: bin_dir / name for name in ("lic-train", "nqm")}
    if all(path.exists() for path in found.values()):
        return {name: [str(path)] for name, path in found.items()}, env
    return {"lic-train": [sys.executable, "-m", "lic_train"],
            "nqm": [sys.executable, "-m", "nqm"]}, env  # fmt: skip


def build_fixtures(root: Path, env: dict[str, str], *, flags_only: bool = False) -> dict:
    """The fixtures and flags that a child process of the code under test builds."""
    argv = [sys.executable, __file__, "--fixtures", str(root), *["--flags-only"] * flags_only]
    root.mkdir()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"the fixtures could not be built:\n{done.stdout}{done.stderr}")
    return json.loads((root / "fixtures.json").read_text())


def latencies(sweep: Sweep, runs: int) -> dict:
    """The refusal latency of a bad number, ``runs`` times each program: seconds and median."""
    probes = {"lic-train": ["fit", "--batch-size", "-1"],
              "nqm": ["simulate", "--rule", "sgd", "--lr", "-1"]}  # fmt: skip
    found = {}
    for program, argv in probes.items():
        case = Case(f"latency {program}", program, argv, number=True)
        results = [run_case(case, sweep) for _ in range(runs)]
        seconds = [result["seconds"] for result in results]
        found[program] = {"command": shlex.join([program, *argv]), "seconds": seconds,
                          "median": statistics.median(seconds),
                          "outcomes": [result["outcome"] for result in results]}  # fmt: skip
    return found


def report(results: list[dict], latency: dict, seconds: float) -> str:
    """The table printed at the end: counts per outcome, then each failing case."""
    counts = Counter(result["outcome"] for result in results)
    lines = [f"{len(results)} cases in {seconds / 60:.1f} min", "", f"{'outcome':<16} cases"]
    for outcome in ("ok", *SEVERITY, "skipped"):
        if counts[outcome]:
            lines.append(f"{outcome:<16} {counts[outcome]:5d}")
    lines += ["", "refusal latency (median of the runs, s):"]
    for found in latency.values():
        runs = " ".join(f"{s:.2f}" for s in found["seconds"])
        lines.append(f"  {found['command']:<42} {found['median']:6.2f}   ({runs})")
    failing = [r for r in results if r["outcome"] not in ("ok", "skipped")]
    lines += ["", f"failing cases ({len(failing)}):"]
    for result in sorted(failing, key=lambda r: SEVERITY.index(r["outcome"])):
        first = repr(result["first_stderr_line"])[:140]
        if result["outcome"] == "traceback":
            first += " ... " + repr(result["last_stderr_line"])[:100]
        status = result["status"]
        lines.append(f"  {result['outcome']:<15} {result['name']}  [status {status}, "
                     f"{result['stderr_lines']} lines, {result['seconds']:.1f} s] {first}")  # fmt: skip
    skipped = [r for r in results if r["outcome"] == "skipped"]
    lines += [f"  skipped: {r['name']}: {r['reason']}" for r in skipped]
    return "\n".join(lines)


def table(results: dict, before: dict | None = None) -> list[str]:
    """The published table (docs/reliability.md): the cases of each outcome and the median
    refusal latencies, for ``before`` (an earlier sweep, e.g. of the previous version) and
    ``results``, each column headed by its commit."""
    sweeps = [sweep for sweep in (before, results) if sweep is not None]
    heads = [f"`{(sweep['commit'] or 'unknown')[:7]}`" for sweep in sweeps]
    lines = ["| outcome | " + " | ".join(heads) + " |", "|---" * (len(sweeps) + 1) + "|"]
    for outcome in ("ok", *SEVERITY, "skipped"):
        counts = [sweep["outcomes"].get(outcome, 0) for sweep in sweeps]
        if any(counts):
            lines.append(f"| {outcome} | " + " | ".join(map(str, counts)) + " |")
    lines.append("| cases | " + " | ".join(str(sweep["cases"]) for sweep in sweeps) + " |")
    for program in ("lic-train", "nqm"):
        found = [sweep["refusal_latency"].get(program) for sweep in sweeps]
        command = next((f["command"] for f in found if f), None)
        if command:
            cells = " | ".join("-" if f is None else f"{f['median']:.2f} s" for f in found)
            lines.append(f"| refusal latency, `{command}` (median) | {cells} |")
    return lines


def commit_of(python_path: str | None) -> str | None:
    """The commit of the code under test, ``+changes`` when its tree differs from it."""
    where = str(Path(python_path) if python_path else ROOT)
    head, changes = (subprocess.run(["git", "-C", where, *words], capture_output=True, text=True,
                                    check=False).stdout.strip()
                     for words in (["rev-parse", "HEAD"], ["status", "--porcelain", "-uno"]))  # fmt: skip
    return f"{head}+changes" if head and changes else head or None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="REGEX", help="the cases whose name matches")
    parser.add_argument("--jobs", type=int, default=1, help="cases at once (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results.json to write")
    parser.add_argument("--python-path", help="run the code of this checkout (PYTHONPATH)")
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds a case may run")
    parser.add_argument("--slow", type=float, default=2.0, help="a slow refusal, seconds")
    parser.add_argument("--huge-mb", type=float, default=2048.0, help="a huge allocation, MiB")
    parser.add_argument("--latency-runs", type=int, default=5, help="runs per latency probe")
    parser.add_argument("--list", action="store_true", help="list the cases, run none")
    parser.add_argument("--fixtures", type=Path, help=argparse.SUPPRESS)  # the child's work
    parser.add_argument("--flags-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fixtures is not None:
        (write_flags(args.fixtures, {}) if args.flags_only else make_fixtures(args.fixtures))
        return 0
    started = time.monotonic()
    programs, env = programs_for(args.python_path)
    with tempfile.TemporaryDirectory(prefix="hostile-") as scratch:
        scratch = Path(scratch)
        built = build_fixtures(scratch / "fx", env, flags_only=args.list)
        sweep = Sweep(built["paths"], scratch / "fx", scratch, programs, env, args.deadline,
                      args.slow, int(args.huge_mb * 1024))  # fmt: skip
        cases = [expand_names(case, sweep.fixtures) for case in all_cases(built["flags"])]
        if args.only:
            cases = [case for case in cases if re.search(args.only, case.name, re.IGNORECASE)]
        if args.list:
            print("\n".join(case.name for case in cases), f"\n{len(cases)} cases", sep="")
            return 0
        results = run_all(cases, sweep, args.jobs)
        latency = latencies(sweep, args.latency_runs) if args.latency_runs > 0 else {}
    seconds = time.monotonic() - started
    print(report(results, latency, seconds))
    write(args, results, latency, seconds)
    return 0


def run_all(cases: list[Case], sweep: Sweep, jobs: int) -> list[dict]:
    """Every case, ``jobs`` at once, each reported on stderr as it ends; in the cases' order."""
    done = 0

    def one(case: Case) -> dict:
        nonlocal done
        result = run_case(case, sweep)
        done += 1
        print(f"[{done}/{len(cases)}] {result['outcome']:<15} {result.get('seconds', 0):6.1f} s "
              f"{case.name!r}", file=sys.stderr, flush=True)  # fmt: skip
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cases))


def write(args: argparse.Namespace, results: list[dict], latency: dict, seconds: float) -> None:
    from lic_dynamics import files

    counts = Counter(result["outcome"] for result in results)
    problems = Counter(problem for result in results for problem in result["problems"])
    files.write_json({
        "benchmark": "hostile_inputs",
        "code": args.python_path or "installed",
        "commit": commit_of(args.python_path),
        "only": args.only,
        "jobs": args.jobs,
        "bounds": {"deadline_s": args.deadline, "slow_refusal_s": args.slow,
                   "huge_allocation_mb": args.huge_mb},
        "load_average": os.getloadavg(),
        "seconds": round(seconds, 1),
        "cases": len(results),
        "outcomes": {key: counts[key] for key in ("ok", *SEVERITY, "skipped") if counts[key]},
        "problems": {key: problems[key] for key in SEVERITY if problems[key]},
        "refusal_latency": latency,
        "results": results,
    }, args.out)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
