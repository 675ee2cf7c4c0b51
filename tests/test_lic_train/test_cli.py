"""``lic-train``: every bad input is one line on stderr naming the problem, exit status 2, no
traceback; ``fit`` and ``eval`` work end to end on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from lic_train.cli import main  # noqa: E402
from lic_train.trainer import checkpoint  # noqa: E402

TINY = ["--N", "8", "--M", "12", "--patch-size", "64", "64", "--batch-size", "2",
        "--device", "cpu"]  # fmt: skip


def write_image(path: Path, height: int, width: int, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for i in range(3):
        write_image(root / "train" / f"{i}.png", 80, 96, seed=i)
    write_image(root / "test" / "t.png", 80, 96, seed=9)
    return root


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    code = main(["fit", *TINY, "--data", str(folder), "--steps", "4", "--validate-every", "2",
                 "--sma", "--sma-k", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    return out


def one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line]
    assert code == 2, err
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err)
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_fit_and_eval_end_to_end(run, folder, capsys):
    assert (run / "summary.json").exists()
    assert main(["eval", str(run), "--data", str(folder), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "bmshj2018-hyperprior-sma"
    for key in ("psnr-rgb", "ms-ssim-rgb", "bpp", "encoding_time", "decoding_time"):
        assert len(report["results"][key]) == 1
    assert report["results"]["bpp"][0] > 0
    assert main(["eval", str(run / "checkpoint.pth.tar"), "--weights", "raw", "--data",
                 str(folder)]) == 0  # fmt: skip
    assert "bpp (estimated" in capsys.readouterr().out


def test_resume_extends_a_run(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["fit", "--resume", "--steps", "6", "--out", str(copy)]) == 0
    assert checkpoint.load(copy / "checkpoint.pth.tar")["step"] == 6
    assert main(["fit", "--resume", str(copy), "--steps", "8"]) == 0  # --resume RUN
    assert checkpoint.load(copy / "checkpoint.pth.tar")["step"] == 8


@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--model", "bmshj2018-hyperprio"], ("model", "bmshj2018-hyperprior")),
        (["--model", "bmshj2018-hyperprior", "--quality", "9"], ("quality", "[1, 8]")),
        (["--model", "cheng2020-anchor", "--quality", "7"], ("quality", "[1, 6]")),
        (["--lambda", "-0.01"], ("--lambda", "(0, 3.4e38)", "-0.01")),
        (["--lambda", "nan"], ("--lambda", "nan")),
        (["--learning-rate=-1e-4"], ("--learning-rate", "(0, 3.4e38)")),
        (["--learning-rate", "nan"], ("--learning-rate",)),
        (["--aux-learning-rate", "0"], ("--aux-learning-rate",)),
        (["--sma", "--sma-k", "0"], ("--sma-k", "[1,")),
        (["--sma", "--sma-beta", "1.0"], ("--sma-beta", "[0, 1)")),
        (["--sma", "--sma-beta", "-0.5"], ("--sma-beta", "[0, 1)")),
        (["--stdet", "--stdet-fraction", "0"], ("--stdet-fraction", "(0, 1]")),
        (["--stdet", "--stdet-variant", "both"], ("--stdet-variant", "both")),
        (["--patch-size", "100", "100"], ("--patch-size", "multiples of 64")),
        (["--batch-size", "0"], ("--batch-size",)),
        (["--steps", "0"], ("--steps",)),
        (["--steps", "abc"], ("--steps", "abc")),
        (["--validate-every", "4", "--checkpoint-every", "6"], ("--checkpoint-every", "multiple")),
        (["--metric", "ms-ssim"], ("--patch-size", "160")),
        (
            ["--stdet", "--stdet-snapshot-every", "5", "--stdet-every", "1"],
            ("--stdet-every must be at least snapshot_every (5), got 1",),
        ),
        (["--stdet", "--stdet-modes", "300"], ("--stdet-modes must be an integer in [1, 256]",)),
        (["--stdet", "--seed", "-1"], ("--seed must be an integer in [0,",)),
        (["--model", "bmshj2018-hyperprio"], ("--model must be a CompressAI image model",)),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(flags, fragments, folder, tmp_path, capsys):
    argv = ["fit", "--N", "8", "--M", "12", "--patch-size", "64", "64", "--device", "cpu",
            "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "run")]  # fmt: skip
    if "--model" in flags:
        argv = ["fit", "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "run")]
    one_line_error(capsys, [*argv, *flags], *fragments)


def test_bad_data_folders(tmp_path, capsys):
    base = ["fit", *TINY, "--steps", "1", "--out", str(tmp_path / "run")]
    one_line_error(capsys, [*base, "--data", str(tmp_path / "missing")], "--data", "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, [*base, "--data", str(empty)], "--data", "empty")
    text = tmp_path / "text"
    text.mkdir()
    (text / "notes.png").write_text("not an image")
    line = one_line_error(capsys, [*base, "--data", str(text)], "--data")
    assert "notes.png" in capsys.readouterr().err or "no" in line
    small = tmp_path / "small"
    write_image(small / "tiny.png", 10, 12)
    one_line_error(capsys, [*base, "--data", str(small)], "--patch-size 64 64", str(small))


def test_an_unreadable_file_is_skipped_with_a_warning_naming_it(folder, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "train" / "broken.png").write_text("not an image")
    # Files are found bad when first read: one step reads 2 of the 4 files, and not broken.png
    # (no warning); one epoch (2 steps) reads every file.
    argv = ["fit", *TINY, "--data", str(data), "--out", str(tmp_path / "run")]
    assert main([*argv, "--steps", "1"]) == 0
    assert "broken.png" not in capsys.readouterr().err
    assert main([*argv, "--steps", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "broken.png" in err, err


def test_resume_takes_only_steps_epochs_and_device(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    one_line_error(
        capsys, ["fit", "--resume", "--lambda", "0.5", "--out", str(copy)], "--resume",
        "--lambda 0.5 (the run's: 0.01)",
    )  # fmt: skip
    # Only the flags given are compared, each with the run's own value; the run's own flags pass.
    one_line_error(
        capsys, ["fit", "--resume", "--sma", "--sma-k", "3", "--batch-size", "2", "--out", str(copy)],
        "differ from it: --sma-k 3 (the run's: 1)",
    )  # fmt: skip
    one_line_error(capsys, ["fit", "--resume", "--sma-k", "0", "--out", str(copy)], "--sma-k")
    one_line_error(capsys, ["fit", "--resume", str(copy), "--out", str(tmp_path / "other")],
                   "--out", "give one")  # fmt: skip
    # 3 training images, batch 2: one batch per epoch (the last image waits for the next epoch).
    # The run's own --out may be given with --resume RUN.
    assert main(["fit", "--resume", str(copy), "--epochs", "6", "--out", str(copy)]) == 0
    assert checkpoint.load(copy / "checkpoint.pth.tar")["step"] == 6


def test_eval_codes_every_image_of_a_plain_folder(run, tmp_path, capsys):
    for i in range(6):
        write_image(tmp_path / "flat" / f"{i}.png", 40 + 8 * i, 48, seed=i)  # small sizes too
    assert main(["eval", str(run), "--data", str(tmp_path / "flat")]) == 0
    assert "mean over 6 images" in capsys.readouterr().out


def test_registry_models_train_without_a_quality():
    from lic_train.trainer.config import FitConfig

    assert FitConfig(model="elic2022-official").quality is None
    assert FitConfig(model="bmshj2018-hyperprior").quality == 3


def test_out_naming_a_file_is_refused(folder, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    one_line_error(capsys, ["fit", *TINY, "--data", str(folder), "--steps", "1", "--out",
                            str(file)], "--out", "not a folder")  # fmt: skip


def test_out_holding_a_run_needs_resume(run, capsys):
    one_line_error(capsys, ["fit", *TINY, "--steps", "1", "--out", str(run)], "--resume")


def test_eval_refuses_truncated_and_foreign_checkpoints(run, tmp_path, capsys):
    raw = (run / "checkpoint.pth.tar").read_bytes()
    truncated = tmp_path / "truncated.pth.tar"
    truncated.write_bytes(raw[: len(raw) // 2])
    one_line_error(capsys, ["eval", str(truncated)], "truncated", "truncated.pth.tar")
    saved = checkpoint.load(run / "checkpoint.pth.tar")
    saved["config"] = {**saved["config"], "N": 16, "M": 24}  # the weights are N=8, M=12
    foreign = tmp_path / "foreign.pth.tar"
    checkpoint.save(saved, foreign)
    one_line_error(capsys, ["eval", str(foreign)], "another architecture")
    one_line_error(capsys, ["eval", str(tmp_path / "nothing.pth.tar")], "no such file")


def test_compare_bad_input_is_one_line(run, tmp_path, capsys):
    one_line_error(capsys, ["compare", "--steps", "0", "--out", str(tmp_path / "c")], "--steps")
    (tmp_path / "held" / "runs").mkdir(parents=True)
    one_line_error(capsys, ["compare", "--out", str(tmp_path / "held")], "--out", "already holds")
    one_line_error(
        capsys,
        ["compare", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")],
        "--data",
    )
    one_line_error(
        capsys, ["compare", "--methods", "adam", "stdet:k=5", "--out", str(tmp_path / "e")],
        "--methods", "stdet:k=5",
    )  # fmt: skip
    one_line_error(capsys, ["compare", "--jobs", "0", "--out", str(tmp_path / "f")], "--jobs")


def test_bad_trainer_inputs_of_the_streaming_trainer_are_one_line(folder, tmp_path, capsys):
    base = ["fit", *TINY, "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "run")]
    one_line_error(capsys, [*base, "--num-workers", "-1"], "--num-workers", "-1")
    one_line_error(capsys, [*base, "--checkpoint-ev", "3"], "no such flag", "--checkpoint-ev")
    empty = tmp_path / "kodak"
    empty.mkdir()
    one_line_error(capsys, [*base, "--test-data", str(empty)], "--test-data", "no image files")
    one_line_error(capsys, [*base, "--lr-schedule", "multistep", "--lr-milestones", "0.9", "0.5"],
                   "--lr-milestones")  # fmt: skip
    one_line_error(capsys, [*base, "--warmup-steps", "5"], "--warmup-steps", "plateau")
    one_line_error(capsys, [*base, "--ema", "--ema-decay", "1.5"], "--ema-decay")
    one_line_error(capsys, [*base, "--ema", "--sma"], "--sma and --ema")


def test_foreign_checkpoints_are_one_line_errors(folder, tmp_path, capsys):
    import torch

    from lic_train.trainer.models import build_model

    other = tmp_path / "other.pth.tar"  # a bare state dict of another architecture
    torch.save(build_model("mbt2018-mean", N=8, M=12).state_dict(), other)
    base = ["fit", *TINY, "--data", str(folder), "--steps", "1", "--out", str(tmp_path / "run")]
    one_line_error(capsys, [*base, "--checkpoint", str(other)], "another architecture")
    # A CompressAI train.py checkpoint (no configuration) passed to --resume.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    model = build_model("bmshj2018-hyperprior", N=8, M=12)
    torch.save({"epoch": 0, "state_dict": model.state_dict(), "loss": 1.0},
               theirs / "checkpoint.pth.tar")  # fmt: skip
    one_line_error(capsys, ["fit", "--resume", str(theirs)], "--resume", "--checkpoint")
    # ... which --checkpoint takes, and eval takes with --model.
    assert main([*base, "--checkpoint", str(theirs / "checkpoint.pth.tar")]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["eval", str(theirs / "checkpoint.pth.tar")], "--model")
    assert main(["eval", str(theirs / "checkpoint.pth.tar"), "-m", "bmshj2018-hyperprior"]) == 0


def test_progress_lines_in_a_log_and_export(folder, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["fit", *TINY, "--data", str(folder), "--steps", "3", "--validate-every", "3",
            "--ema", "--lr-schedule", "multistep", "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err  # not a terminal: lines, not a bar
    assert "fit step 3/3: loss" in err and "ETA" in err and "\r" not in err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in records if "lr" in r] == [pytest.approx(1e-5)]  # x0.1 at 90%
    assert main(["export", str(run), str(tmp_path / "model.pth.tar"), "--weights", "raw"]) == 0
    assert "raw weights" in capsys.readouterr().out
    assert main(["export", str(run), str(tmp_path / "ema.pth.tar")]) == 0  # EMA: sma weights
    assert "the sma weights" in capsys.readouterr().out


def test_compare_runs_report_their_progress_from_their_processes(tmp_path, capfd):
    out = tmp_path / "compare"
    argv = [
        "compare",
        "--steps",
        "4",
        "--seeds",
        "0",
        "--methods",
        "adam",
        "sma",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert (out / "report.md").exists()
    err = capfd.readouterr().err
    assert "[2/2]" in err


def test_progress_prints_a_line_per_period_and_at_the_end(capsys):
    import pickle

    from lic_train.cli import Progress

    progress = pickle.loads(pickle.dumps(Progress("run-a", 10, every=3600.0)))
    record = {"loss": 1.5, "bpp": 0.25, "psnr": 20.0, "trainable": 1.0}
    for step in (2, 4, 10):
        progress({**record, "step": step, "wall_time": float(step)})
    lines = capsys.readouterr().err.splitlines()
    # The first record prints (none before it), then nothing for an hour, then the last step.
    assert lines == [
        "run-a step 2/10: loss 1.5000 bpp 0.2500 PSNR 20.00 dB, ETA 0m08s",
        "run-a step 10/10: loss 1.5000 bpp 0.2500 PSNR 20.00 dB, ETA 0m00s",
    ]


def test_a_bare_resume_keeps_the_runs_device_and_a_multistep_run_its_length(
    folder, tmp_path, capsys
):
    from lic_train.trainer.checkpoint import load

    run, decayed = tmp_path / "run", tmp_path / "decayed"
    argv = ["fit", *TINY, "--data", str(folder), "--steps", "2", "--validate-every", "1"]
    assert main([*argv, "--out", str(run)]) == 0
    assert main(["fit", "--resume", str(run), "--steps", "3"]) == 0
    assert load(run / "checkpoint.pth.tar")["config"]["device"] == "cpu"  # not --device's auto
    # Decayed at step 1 of 2; a length of 4 would have decayed at step 2.
    multistep = ["--lr-schedule", "multistep", "--lr-milestones", "0.5"]
    assert main([*argv, *multistep, "--out", str(decayed)]) == 0
    capsys.readouterr()
    one_line_error(
        capsys, ["fit", "--resume", str(decayed), "--steps", "4"], "--steps", "multistep"
    )


def test_no_room_for_a_checkpoint_is_refused_before_training(folder, tmp_path, capsys, monkeypatch):
    import shutil

    import lic_train.trainer.loop as loop

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(loop.shutil, "disk_usage", lambda path: usage._replace(free=10_000))
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: pytest.fail("training started"))
    out = tmp_path / "run"
    one_line_error(capsys, ["fit", *TINY, "--data", str(folder), "--out", str(out)], "--out",
                   "0.0 MiB free")  # fmt: skip
    assert not out.exists()


def test_a_batch_too_large_for_memory_is_one_line(folder, tmp_path, capsys, monkeypatch):
    import lic_train.trainer.loop as loop

    def allocate(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 40000000000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(loop, "train_step", allocate)
    code = main(["fit", *TINY, "--data", str(folder), "--out", str(tmp_path / "run")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert lines == [
        "lic-train fit: error: out of memory allocating 37.3 GiB; lower --batch-size or "
        "--patch-size, or the model's size (--quality, --N, --M; and --test-batch-size, --jobs)"
    ]
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_a_checkpoint_of_another_version_is_one_line(run, tmp_path, capsys):
    """A configuration field missing or unknown (a checkpoint of another lic-train version)."""
    import shutil

    for change in ("missing", "unknown"):
        copy = tmp_path / change
        shutil.copytree(run, copy)
        for name in (checkpoint.LATEST, checkpoint.BEST):
            saved = checkpoint.load(copy / name)
            if change == "missing":
                del saved["config"]["warmup_steps"]
            else:
                saved["config"]["future_field"] = 1
            checkpoint.save(saved, copy / name)  # a valid checksum: only the version differs
        line = one_line_error(capsys, ["fit", "--resume", str(copy)], "--resume", change[:4])
        assert ("warmup_steps" if change == "missing" else "future_field") in line
        one_line_error(capsys, ["eval", str(copy)], str(copy), "configuration does not load")


def test_compare_workers_warn_in_one_line_and_torch_jit_is_silent(folder, tmp_path):
    """Warnings from a comparison's run processes use the CLI's one-line format, and CompressAI's
    torch.jit.script deprecation reaches no one (neither the CLI nor its workers). In a fresh
    process: the workers fork from a server that keeps the stderr of the process that started
    it."""
    import shutil
    import subprocess
    import sys

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    (data / "train" / "broken.png").write_text("not an image")
    argv = ["compare", "--steps", "2", "--seeds", "0", "--methods", "adam", "--data", str(data),
            "--out", str(tmp_path / "compare")]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "lic_train", *argv], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "lic-train: warning: " in err and "broken.png" in err, err
    assert "Warning" not in err.replace("lic-train: warning:", ""), err  # no Python-format lines
    assert "jit" not in err


# ---- one writer per run folder; a full disk ----------------------------------------------------


def test_two_fits_on_one_folder_one_trains_and_the_other_is_refused(folder, tmp_path):
    out = tmp_path / "run"
    argv = ["fit", *TINY, "--data", str(folder), "--steps", "12", "--validate-every", "4",
            "--num-workers", "0", "--out", str(out)]  # fmt: skip
    script = "import sys; from lic_train.cli import main; sys.exit(main(sys.argv[1:]))"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, *argv], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and refused[0].startswith(f"lic-train fit: error: --out {out}")
    assert "in use by process" in refused[0] or "already holds a run" in refused[0]
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if "split" not in r]  # fmt: skip
    assert steps == sorted(set(steps)) and steps[-1] == 12  # one run's log, not two mixed


def test_a_folder_in_use_refuses_fit_resume_compare_and_export(
    run, folder, tmp_path, holder, capsys
):
    import shutil

    held = tmp_path / "held"
    holder(held)
    line = one_line_error(capsys, ["fit", *TINY, "--data", str(folder), "--steps", "2",
                                   "--out", str(held)], "--out", "in use by process")  # fmt: skip
    assert line.startswith(f"lic-train fit: error: --out {held}: in use by process ")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    holder(copy)
    one_line_error(capsys, ["fit", "--resume", str(copy), "--steps", "6"], "--resume", "in use")
    assert checkpoint.load(copy / checkpoint.LATEST)["step"] == 4  # untouched
    one_line_error(capsys, ["export", str(copy), str(copy / "model.pth.tar")], "in use")
    assert not (copy / "model.pth.tar").exists()
    one_line_error(capsys, ["compare", "--steps", "2", "--seeds", "0", "--methods", "adam",
                            "--data", str(folder), "--out", str(held)], "--out", "in use")  # fmt: skip
    assert list(held.iterdir()) == []


def test_a_real_full_disk_during_a_checkpoint_is_one_line_naming_it(
    folder, small_disk, fill, capsys, monkeypatch
):
    """The kernel's ENOSPC, through torch's zip writer (a RuntimeError), while the latest
    checkpoint of step 4 is written: one line naming it, status 1, the step-2 one intact."""
    out, real = small_disk / "run", checkpoint.save

    def save(content, path):
        if Path(path).name == checkpoint.LATEST and content["step"] == 4:
            fill(small_disk)
        real(content, path)

    monkeypatch.setattr(checkpoint, "save", save)
    argv = ["fit", *TINY, "--data", str(folder), "--steps", "4", "--validate-every", "2",
            "--num-workers", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"lic-train fit: error: {out / checkpoint.LATEST}: No space left on device"
    assert "Traceback" not in "\n".join(err)
    assert not list(out.glob(".*.tmp"))
    assert checkpoint.load(out / checkpoint.LATEST)["step"] == 2


# ---- answers before torch; SIGTERM at any moment ------------------------------------------------

NO_MODEL_NEEDED = [
    ["fit", "--batch-size", "-1"],
    ["fit", "--sma-k", "0", "--sma"],
    ["fit", "--stdet", "--stdet-fraction", "2"],
    ["fit", "-lr", "nan"],
    ["fit", "--lr-schedule", "multistep", "--lr-milestones", "0.5", "0.2"],
    ["fit", "--patch-size", "100", "64"],
    ["fit", "--steps", "１２"],
    ["eval", "run", "--device", "gpu"],
    ["compare", "--jobs", "0"],
    ["compare", "--steps", "-1"],
    ["compare", "--methods", "adam", "stdet:k=5"],
    ["fit", "--epochs", "0"],
    ["compare", "--seeds", "-1"],
    ["compare", "--lambdas", "1e300"],
]


def test_a_bad_flag_that_needs_no_model_is_refused_before_torch_is_imported():
    script = (
        "import json, sys\n"
        "from lic_train.cli import main\n"
        f"codes = [main(argv) for argv in {NO_MODEL_NEEDED!r}]\n"
        "print(json.dumps([codes, 'torch' in sys.modules, 'compressai' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    codes, torch_imported, compressai_imported = json.loads(done.stdout)
    assert codes == [2] * len(NO_MODEL_NEEDED), done.stderr
    assert len(done.stderr.strip().splitlines()) == len(NO_MODEL_NEEDED), done.stderr
    assert (torch_imported, compressai_imported) == (False, False)


def test_sigterm_while_torch_loads_is_one_line_and_status_143(folder, tmp_path):
    import signal
    import time

    script = "import sys; from lic_train.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["fit", *TINY, "--data", str(folder), "--steps", "2", "--out", str(tmp_path / "run")]
    process = subprocess.Popen([sys.executable, "-c", script, *argv], stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    time.sleep(1.0)  # the flags are checked; torch and CompressAI are loading
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    assert process.stderr.read().strip().splitlines() == ["lic-train fit: terminated (SIGTERM)"]
    assert not (tmp_path / "run").exists()
