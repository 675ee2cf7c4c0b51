"""Bad input, table-driven, for both command lines: every row is one line on stderr naming the flag
(or, for a positional argument, the value), exit status 2, no traceback, nothing written, and no
training or simulation started.

The table grows with the CLI: :func:`test_every_flag_has_a_row` fails when a subcommand gains a
flag that takes a value and no row tries a bad one.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

import lic_train.cli  # noqa: E402
import nqm.cli  # noqa: E402

TINY = {"--N": ["8"], "--M": ["8"], "--patch-size": ["64", "64"], "--batch-size": ["2"],
        "--test-batch-size": ["2"], "--device": ["cpu"], "--num-workers": ["0"]}  # fmt: skip

# (command line, what the error line must name): "{name}" is a fixture file of `files` below.
LIC_TRAIN: list[tuple[str, str]] = [
    # fit: the model
    ("fit --model nosuchmodel", "--model"),
    ("fit --quality 0", "--quality"),
    ("fit --quality 9", "--quality"),
    ("fit --N 0 --M 8", "--N"),
    ("fit --N 8", "--M"),
    ("fit --quality 3 --N 8 --M 8", "--quality"),
    ("fit --N x", "--N"),
    ("fit --N 8 --M -1", "--M"),
    # fit: loss and optimizers
    ("fit --lambda nan", "--lambda"),
    ("fit --lambda -1", "--lambda"),
    ("fit --lambda inf", "--lambda"),
    ("fit --metric psnr", "--metric"),
    ("fit --learning-rate 0", "--learning-rate"),
    ("fit -lr 1e300", "--learning-rate"),  # beyond float32
    ("fit --aux-learning-rate 1e300", "--aux-learning-rate"),
    ("fit -lr nan", "--learning-rate"),
    ("fit --aux-learning-rate -1", "--aux-learning-rate"),
    ("fit --clip_max_norm -1", "--clip_max_norm"),
    ("fit --clip_max_norm nan", "--clip_max_norm"),
    ("fit --lr-schedule cosine", "--lr-schedule"),
    ("fit --lr-schedule multistep --lr-milestones 1.5", "--lr-milestones"),
    ("fit --lr-milestones 0.5 0.2", "--lr-milestones"),
    ("fit --lr-gamma 0", "--lr-gamma"),
    ("fit --lr-gamma 2", "--lr-gamma"),
    ("fit --warmup-steps -1", "--warmup-steps"),
    ("fit --warmup-steps 5", "--warmup-steps"),  # the plateau schedule has no warm-up
    ("fit --checkpoint {missing}", "--checkpoint"),
    ("fit --checkpoint {noise}", "--checkpoint"),
    ("fit --checkpoint {folder}", "--checkpoint"),
    ("fit --checkpoint {evil}", "--checkpoint"),
    ("fit --checkpoint {foreign}", "--checkpoint"),  # another architecture
    ("fit --checkpoint {flipped}", "--checkpoint"),  # a damaged checkpoint of ours
    # fit: data
    ("fit --data {missing}", "--data"),
    ("fit --data ''", "--data"),
    ("fit --data {text}", "--data"),
    ("fit --data {empty}", "--data"),
    ("fit --data {corrupt}", "--data"),  # one line, not a warning per file first
    ("fit --data {images}/train --test-data {corrupt}", "--test-data"),
    ("fit --data {images}/train --test-data {empty}", "--test-data"),
    ("fit --data {images}/train --test-data {missing}", "--test-data"),
    ("fit --patch-size 100 100", "--patch-size"),
    ("fit --patch-size 0 0", "--patch-size"),
    ("fit --patch-size 64", "--patch-size"),
    ("fit --batch-size 0", "--batch-size"),
    ("fit --test-batch-size 0", "--test-batch-size"),
    ("fit --num-workers -1", "--num-workers"),
    ("fit --num-workers 1000000", "--num-workers"),
    # fit: the run
    ("fit --steps 0", "--steps"),
    ("fit --steps 1e3", "--steps"),
    ("fit --steps １２", "--steps"),  # full-width digits: ASCII decimal only
    ("fit --batch-size ٣", "--batch-size"),  # an Arabic-Indic digit
    ("fit --lambda 1_0", "--lambda"),
    ("fit -lr -inf", "--learning-rate"),  # a value, not a flag
    ("fit --checkpoint-ev 3", "--checkpoint-ev"),  # unknown: named by fit, not by lic-train
    ("fit --data {newline}", "--data"),  # a newline in a name: still one line
    ("fit --epochs 0", "--epochs"),
    ("fit --epochs 10000000000000000", "--epochs"),  # more than 2**53
    ("fit --epochs 1 --steps 1", "--steps"),
    ("fit --validate-every 0", "--validate-every"),
    ("fit --checkpoint-every 7", "--checkpoint-every"),
    ("fit --checkpoint-every 0", "--checkpoint-every"),
    ("fit --log-every 0", "--log-every"),
    ("fit --seed -1", "--seed"),
    ("fit --device tpu", "--device"),
    ("fit --out {text}", "--out"),
    ("fit --out {text}/run", "--out"),
    ("fit --out /proc/run", "--out"),
    ("fit --out {run}", "--out"),  # already holds a run
    ("fit --out ''", "--out"),
    ("fit --out {tmp}/" + "x" * 300, "--out"),  # a name longer than the file system allows
    ("fit --resume {run} --out {tmp}/other", "--out"),
    ("fit --resume {empty}", "--resume"),
    ("fit --resume {missing}", "--resume"),
    ("fit --resume {foreign_run}", "--resume"),
    ("fit --resume {damaged_run}", "--resume"),
    ("fit --resume {run} --lambda 0.5", "--lambda 0.5"),
    ("fit --resume {run} --steps 0", "--steps"),
    # fit: SMA and STDET, sub-flags with or without their switch
    ("fit --sma-k 0", "--sma-k"),
    ("fit --sma --sma-k 0", "--sma-k"),
    ("fit --sma-beta 1.5", "--sma-beta"),
    ("fit --sma-beta nan", "--sma-beta"),
    ("fit --ema-decay 2", "--ema-decay"),
    ("fit --ema --ema-decay nan", "--ema-decay"),
    ("fit --sma --ema", "--sma"),
    ("fit --sma-k 10", "--sma-k"),  # valid, but without --sma it would be ignored
    ("fit --sma-feedback", "--sma-feedback"),
    ("fit --ema --sma-k 3", "--sma-k"),
    ("fit --sma --ema-decay 0.5", "--ema-decay"),
    ("fit --lr-gamma 0.5", "--lr-gamma"),  # the plateau schedule
    ("fit --lr-milestones 0.5", "--lr-milestones"),
    ("fit --stdet-variant true", "--stdet-variant"),
    ("fit --stdet-snapshot-every 0", "--stdet-snapshot-every"),
    ("fit --stdet-snapshots 0", "--stdet-snapshots"),
    ("fit --stdet-every 0", "--stdet-every"),
    ("fit --stdet-modes 0", "--stdet-modes"),
    ("fit --stdet --stdet-modes 300", "--stdet-modes"),
    ("fit --stdet-samples 0", "--stdet-samples"),
    ("fit --stdet-fraction 2", "--stdet-fraction"),
    ("fit --stdet-max-embedded 2", "--stdet-max-embedded"),
    ("fit --stdet-max-embedded nan", "--stdet-max-embedded"),
    ("fit --stdet-min-r2 2", "--stdet-min-r2"),
    ("fit --stdet-keep-sensitive 2", "--stdet-keep-sensitive"),
    ("fit --stdet-sensitivity-quantile 2", "--stdet-sensitivity-quantile"),
    ("fit --stdet-variant x", "--stdet-variant"),
    ("fit --stdet-granularity x", "--stdet-granularity"),
    ("fit --stdet-trajectory x", "--stdet-trajectory"),
    ("fit --stdet-max-amplification -1", "--stdet-max-amplification"),
    ("fit --stdet-max-amplification inf", "--stdet-max-amplification"),
    ("fit --stdet-release-beyond nan", "--stdet-release-beyond"),
    # eval
    ("eval {missing}", "{missing}"),
    ("eval {noise}", "{noise}"),
    ("eval {evil}", "{evil}"),
    ("eval {empty}", "{empty}"),
    ("eval {flipped}", "{flipped}"),
    ("eval {foreign}", "--model"),  # not ours: the architecture is needed
    ("eval {foreign} --model nosuchmodel", "--model"),
    ("eval {run} --model bmshj2018-factorized", "--model"),
    ("eval {run} --data {empty}", "--data"),
    ("eval {run} --data {missing}", "--data"),
    ("eval {run} --data {corrupt}", "--data"),
    ("eval ''", "target ''"),
    ("eval {run} --weights x", "--weights"),
    ("eval {run} --weights sma", "--weights"),  # the run has no average
    ("eval {run} --device tpu", "--device"),
    # export
    ("export {missing} {tmp}/out.pth.tar", "{missing}"),
    ("export '' {tmp}/out.pth.tar", "target ''"),
    ("export {foreign} {tmp}/out.pth.tar", "{foreign}"),
    ("export {run} {empty}", "{empty}"),
    ("export {run} {run}/checkpoint.pth.tar", "checkpoint.pth.tar"),
    ("export {run} /proc/out.pth.tar", "/proc/out.pth.tar"),
    ("export {run} {text}/out.pth.tar", "out.pth.tar"),
    ("export {run} {tmp}/out.pth.tar --weights x", "--weights"),
    ("export {run} {tmp}/out.pth.tar --weights sma", "--weights"),
    # compare
    ("compare --preset x", "--preset"),
    ("compare --out {text}", "--out"),
    ("compare --out /proc/compare", "--out"),
    ("compare --out ''", "--out"),
    ("compare --data {corrupt}", "--data"),
    ("compare --data {missing}", "--data"),
    ("compare --data {empty}", "--data"),
    ("compare --seeds -1", "--seeds"),
    ("compare --seeds 0 0", "--seeds"),
    ("compare --seeds x", "--seeds"),
    ("compare --lambdas 0.01 nan", "--lambdas"),
    ("compare --lambdas 0.01 0.01", "--lambdas"),
    ("compare --lambdas -1", "--lambdas"),
    ("compare --methods foo", "--methods"),
    ("compare --methods adam adam", "--methods"),
    ("compare --methods sma", "--methods"),  # no baseline
    ("compare --methods adam sma:k=0", "--methods"),
    ("compare --methods adam sma:nope=1", "--methods"),
    ("compare --methods adam sma:k=1,k=2", "--methods"),
    ("compare --jobs 0", "--jobs"),
    ("compare --steps 0", "--steps"),
    ("compare --device tpu", "--device"),
]
if not torch.cuda.is_available():  # CUDA asked for where there is none
    LIC_TRAIN += [(f"{command} --device cuda", "--device") for command in ("fit", "compare")]
    LIC_TRAIN += [("eval {run} --device cuda", "--device")]

NQM: list[tuple[str, str]] = [
    ("verify --out {text}", "--out"),
    ("verify --out ''", "--out"),
    ("verify --out /proc/report", "--out"),
    ("verify --seed -1", "--seed"),
    ("steady --rule x --lr 0.5 --h 1", "--rule"),
    ("steady --rule sgd --lr 0 --h 1", "--lr"),
    ("steady --rule sgd --lr nan --h 1", "--lr"),
    ("steady --rule sma --lr 0.5 --h 1 --k 0", "--k"),
    ("steady --rule ema --lr 0.5 --h 1 --beta 1.5", "--beta"),
    ("steady --rule lookahead --lr 0.5 --h 1 --alpha 2", "--alpha"),
    ("steady --rule momentum --lr 0.5 --h 1 --mu 1", "--mu"),
    ("steady --rule sgd --lr 0.5 --h 1 --batch 0", "--batch"),
    ("steady --rule sgd --lr 0.5 --h 0", "--h"),
    ("steady --rule sgd --lr 0.5 --h 1 --c -1", "--c"),
    ("steady --rule polyak --lr 0.5 --h 1 --window 0", "--window"),
    ("simulate --rule x --lr 0.5", "--rule"),
    ("simulate --rule sgd --lr -1", "--lr"),
    ("simulate --rule sma --lr 0.5 --k 0", "--k"),
    ("simulate --rule sma --lr 0.5 --beta 1", "--beta"),
    ("simulate --rule lookahead --lr 0.5 --alpha 0", "--alpha"),
    ("simulate --rule momentum --lr 0.5 --mu 1", "--mu"),
    ("simulate --rule sgd --lr 0.5 --batch 0", "--batch"),
    ("simulate --rule sgd --lr 0.5 --dim 0", "--dim"),
    ("simulate --rule sgd --lr 0.5 --steps -1", "--steps"),
    ("simulate --rule sgd --lr 0.5 --chains 1", "--chains"),
    ("simulate --rule sgd --lr 0.5 --chains 1e9", "--chains"),
    ("simulate --rule sgd --lr 0.5 --seed -1", "--seed"),
    ("simulate --rule sgd --lr 0.5 --points 1", "--points"),
    ("simulate --rule polyak --lr 0.5 --window 5", "--window"),  # named by simulate
    ("steady --rule sgd --lr ٣ --h 1", "--lr"),
    ("steady --rule sgd --lr -inf --h 1", "--lr"),
    ("simulate --rule sgd --lr 3 --steps 5000", "--steps"),  # no steady state: overflows by ~700
    ("steady --rule sgd --lr 0.5 --h 1 --precondition 1.5", "--precondition"),
    ("simulate --rule sma --lr 0.5 --precondition -0.5", "--precondition"),
    ("scaling --rules adam", "--rules"),
    ("scaling --rules sgd sgd", "--rules"),
    ("scaling --target 0", "--target"),
    ("scaling --target nan", "--target"),
    ("scaling --batch 0", "--batch"),
    ("scaling --batch 4 4", "--batch"),
    ("scaling --batch x", "--batch"),
    ("scaling --precondition 2", "--precondition"),
    ("scaling --dim 0", "--dim"),
    ("scaling --dim 100000000", "--dim"),
    ("scaling --bins 1", "--bins"),
    ("scaling --dim 50 --bins 100", "--bins"),
    ("scaling --workers 0", "--workers"),
    ("scaling --out {text}", "--out"),
    ("scaling --out ''", "--out"),
]

# Flags that take a value yet cannot be bad on their own.
NO_BAD_VALUE: set[tuple[str, str, str]] = set()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The files the rows name: a tiny run of ours, foreign and damaged checkpoints, folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 1)):
        (root / "images" / split).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (72, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / split / f"{i}.png")
    run = root / "run"
    tiny = [word for flag, values in TINY.items() for word in (flag, *values)]
    argv = ["fit", *tiny, "--data", str(root / "images"), "--steps", "1", "--out", str(run)]
    assert lic_train.cli.main(argv) == 0
    (root / "empty").mkdir()
    (root / "new\nline").mkdir()  # holds no image
    for name in ("a.png", "b.png"):  # image files that do not decode
        (root / "corrupt" / name).parent.mkdir(exist_ok=True)
        (root / "corrupt" / name).write_bytes(rng.bytes(100))
    (root / "text").write_text("not a checkpoint\n")
    (root / "noise.pth.tar").write_bytes(rng.bytes(3000))
    from lic_train.trainer.models import build_model

    foreign = root / "foreign.pth.tar"
    torch.save({"state_dict": build_model("bmshj2018-factorized", N=8, M=8).state_dict()}, foreign)
    (root / "foreign_run").mkdir()
    torch.save({"state_dict": {}}, root / "foreign_run" / "checkpoint.pth.tar")
    evil = root / "evil.pth.tar"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(root / "ran").encode() + b"'\ntR.")
    data = bytearray((run / "checkpoint.pth.tar").read_bytes())
    data[len(data) // 2] ^= 0x10  # in a tensor's bytes
    (root / "flipped.pth.tar").write_bytes(bytes(data))
    (root / "damaged_run").mkdir()
    (root / "damaged_run" / "checkpoint.pth.tar").write_bytes(bytes(data))
    names = ("images", "run", "empty", "corrupt", "text", "noise.pth.tar", "foreign.pth.tar", "foreign_run",
             "evil.pth.tar", "flipped.pth.tar", "damaged_run")  # fmt: skip
    paths = {name.split(".")[0]: str(root / name) for name in names}
    return {**paths, "missing": str(root / "missing"), "folder": str(root / "empty"),
            "newline": str(root / "new\nline")}  # fmt: skip


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.fixture
def nothing_expensive(monkeypatch):
    """Bad input must be refused before any training, coding or simulation starts."""

    def started(*args, **kwargs):
        raise AssertionError("expensive work started before the input was checked")

    import importlib

    import lic_train.trainer.evaluate
    import lic_train.trainer.loop
    import nqm.montecarlo
    import nqm.scaling
    import nqm.verify

    compare = importlib.import_module("lic_train.experiments.compare")  # not the function
    monkeypatch.setattr(lic_train.trainer.loop, "train_step", started)
    monkeypatch.setattr(compare, "train_all", started)
    monkeypatch.setattr(lic_train.trainer.evaluate, "evaluate", started)
    monkeypatch.setattr(nqm.montecarlo, "simulate", started)
    monkeypatch.setattr(nqm.verify, "run", started)
    monkeypatch.setattr(nqm.scaling, "sweep", started)


def _check(main, prefix: str, argv: list[str], named: str, files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything written by accident lands here
    root = Path(files["run"]).parent
    before = _tree(root)
    argv = [word.format(**files, tmp=tmp_path) for word in argv]
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (argv, err)
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith(f"{prefix} {argv[0]}: error: "), lines[0]
    assert named.format(**files, tmp=tmp_path) in lines[0], (argv, lines[0])
    assert "Traceback" not in err and out == "", (argv, out)
    assert list(tmp_path.iterdir()) == [], f"{argv} left {list(tmp_path.iterdir())}"
    assert _tree(root) == before, f"{argv} wrote {_tree(root) - before}"
    assert not (root / "ran").exists()


@pytest.mark.parametrize(("row", "named"), LIC_TRAIN, ids=[row for row, _ in LIC_TRAIN])
def test_lic_train_bad_input(
    row, named, files, tmp_path, monkeypatch, capsys, nothing_expensive
):  # fmt: skip
    argv = shlex.split(row)
    if argv[0] == "fit" and "--resume" not in argv:  # a tiny model, local data and folder
        defaults = {**TINY, "--out": [str(tmp_path / "run")], "--data": ["{images}"]}
        if {"--quality", "--model", "--N", "--M"} & set(argv):
            del defaults["--N"], defaults["--M"]
        aliases = {"-n": "--num-workers", "-lr": "--learning-rate", "-e": "--epochs"}
        given = {aliases.get(word, word) for word in argv}
        for flag, values in defaults.items():
            if flag not in given:
                argv += [flag, *values]
    _check(lic_train.cli.main, "lic-train", argv, named, files, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize(("row", "named"), NQM, ids=[row for row, _ in NQM])
def test_nqm_bad_input(row, named, files, tmp_path, monkeypatch, capsys, nothing_expensive):
    _check(nqm.cli.main, "nqm", shlex.split(row), named, files, tmp_path, monkeypatch, capsys)


def _value_flags(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """Each subcommand -> its flags that take a value (longest option string), and its
    positional arguments."""
    found: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = {
                    max(a.option_strings, key=len) if a.option_strings else a.dest
                    for a in sub._actions
                    if a.nargs != 0 and not isinstance(a, argparse._HelpAction)
                }
    return found


def _tried(rows: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Each subcommand -> the flags its rows give, with every option string's longest form."""
    tried: dict[str, set[str]] = {}
    for row, _ in rows:
        command, *words = shlex.split(row)
        tried.setdefault(command, set()).update(w for w in words if w.startswith("-"))
        positionals = [w for w in words if not w.startswith("-")]
        if command in ("eval", "export") and positionals:  # TARGET [OUT]: tried in every row
            tried[command].update({"target", "out"} if command == "export" else {"target"})
    return tried


@pytest.mark.parametrize(
    ("cli", "rows"), [(lic_train.cli, LIC_TRAIN), (nqm.cli, NQM)], ids=["lic-train", "nqm"]
)
def test_every_flag_has_a_row(cli, rows):
    parser = cli.build_parser()
    longest = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for a in sub._actions:
                    for option in a.option_strings:
                        longest[option] = max(a.option_strings, key=len)
    tried = {
        command: {longest.get(flag, flag) for flag in flags}
        for command, flags in _tried(rows).items()
    }
    for command, flags in _value_flags(parser).items():
        missing = sorted(
            flags - tried.get(command, set()) - {f for c, f, _ in NO_BAD_VALUE if c == command}
        )
        assert not missing, f"{command}: no bad-input row for {missing}"


def test_the_evil_pickle_of_the_table_would_run_code(files):
    """The table's evil checkpoint is a real attack: plain pickle runs it."""
    import pickle

    marker = Path(files["run"]).parent / "ran"
    with open(files["evil"], "rb") as file:
        pickle.load(file)  # the point of this test
    assert marker.exists()
    os.remove(marker)
