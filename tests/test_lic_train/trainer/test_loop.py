"""The trainer: exact resume (in process, and after SIGKILL at a random moment), atomic checkpoints,
a non-finite loss, the files a run writes, and DDP on two gloo ranks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

from lic_dynamics import files  # noqa: E402
from lic_train.rules import SMAConfig, STDETConfig  # noqa: E402
from lic_train.trainer import checkpoint  # noqa: E402
from lic_train.trainer.checkpoint import load_trained  # noqa: E402
from lic_train.trainer.config import FitConfig  # noqa: E402
from lic_train.trainer.loop import NonFiniteLoss, branch, fit, resume_point  # noqa: E402


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A small image folder: 6 photographs cut from the built-in set (train/ 4, test/ 2)."""
    from PIL import Image

    from lic_train.trainer.data import builtin_images

    root = tmp_path_factory.mktemp("images")
    photos = list(builtin_images().items())[:6]
    for i, (name, image) in enumerate(photos):
        split = "test" if i >= 4 else "train"
        (root / split).mkdir(exist_ok=True)
        array = (image[:, :96, :128].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(root / split / f"{name}.png")
    return root


def tiny(images: Path, **overrides) -> FitConfig:
    base = dict(
        model="bmshj2018-hyperprior", N=8, M=12, data=str(images), patch_size=(64, 64),
        batch_size=2, steps=12, validate_every=4, log_every=2, device="cpu", lmbda=0.01,
        learning_rate=1e-3, sma=SMAConfig(k=2, beta=0.8),
        stdet=STDETConfig(snapshot_every=1, snapshots=3, every=2, samples=100, modes=3,
                          fraction=0.3, max_embedded=0.8),
    )  # fmt: skip
    return FitConfig(**{**base, **overrides})


def weights(run: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(run / "checkpoint.pth.tar")["state_dict"]


def assert_same(x: dict, y: dict) -> None:
    assert x.keys() == y.keys()
    for name in x:
        assert torch.equal(x[name], y[name]), name


def test_a_run_writes_metrics_checkpoints_and_a_summary(images, tmp_path):
    records = []
    summary = fit(tiny(images), tmp_path / "run", on_log=records.append).summary
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == records
    train = [r for r in lines if "split" not in r]
    assert [r["step"] for r in train] == [2, 4, 6, 8, 10, 12]
    # STDET's health: at every event (steps 5, 7, 9, 11: after the fit at 3, every 2) and with
    # every validation once fitted (4, 8, 12); its worst values in the summary.
    health = [r for r in lines if r.get("split") == "stdet"]
    assert [r["step"] for r in health] == [4, 5, 7, 8, 9, 11, 12]
    keys = {"embedded", "still_references", "members_max", "leverage_max", "extrapolation_max",
            "embedded_drift"}  # fmt: skip
    assert all(keys <= r.keys() for r in health) and health[-1]["embedded"] > 0
    val = [r for r in lines if r.get("split") == "val"]
    assert {(r["step"], r["readout"]) for r in val} >= {(12, "raw"), (12, "sma")}
    assert all(np.isfinite(r["loss"]) for r in train + val)
    assert train[-1]["trainable"] < 1.0  # STDET embedded something
    saved = checkpoint.load(run / "checkpoint.pth.tar")
    for key in checkpoint.COMPRESSAI_KEYS:
        assert key in saved
    assert saved["step"] == 12
    assert (run / "checkpoint_best_loss.pth.tar").exists()
    assert list(run.glob("*.tmp")) == []
    written = json.loads((run / "summary.json").read_text())
    assert written["steps"] == 12 and written["final"].keys() == {"raw", "sma"}
    assert written["best"].keys() == {"raw", "sma"} and written["evaluated_readout"] == "sma"
    assert written["best"]["sma"] <= written["final"]["sma"]["loss"]
    assert written["trainable_fraction"] == summary.trainable_fraction < 1.0
    assert written["peak_memory_bytes"] > 0
    last = {k: v for k, v in health[-1].items() if isinstance(v, float)}
    assert written["stdet_health"]["last"] == last
    assert written["stdet_health"]["worst"]["leverage_max"] == max(
        r["leverage_max"] for r in health
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run / "tb")).Reload().Tags()
    assert {"val/raw/reconstruction", "val/sma/reconstruction"} <= set(board["images"])
    assert {"train/loss", "stdet/leverage_max"} <= set(board["scalars"])
    assert any("config" in tag for tag in board["tensors"])
    name, model = load_trained(run)
    assert name == "bmshj2018-hyperprior-sma"
    raw_name, raw = load_trained(run, weights="raw")
    assert raw_name.endswith("-raw")
    assert not all(
        torch.equal(p, q) for p, q in zip(model.parameters(), raw.parameters(), strict=True)
    )


def test_resume_in_process_continues_bit_for_bit(images, tmp_path):
    fit(tiny(images), tmp_path / "whole")
    fit(tiny(images, steps=8), tmp_path / "split")
    fit(tiny(images), tmp_path / "split", resume=True)
    assert_same(weights(tmp_path / "whole"), weights(tmp_path / "split"))
    whole = (tmp_path / "whole" / "metrics.jsonl").read_text()
    resumed = (tmp_path / "split" / "metrics.jsonl").read_text()
    strip = lambda text: [  # noqa: E731 - wall time differs
        {k: v for k, v in json.loads(line).items() if k != "wall_time"}
        for line in text.splitlines()
    ]
    assert strip(whole) == strip(resumed)


def test_ms_ssim_training_reports_the_ms_ssim_distortion(images, tmp_path):
    records = []
    config = tiny(images, metric="ms-ssim", lmbda=10.0, patch_size=(192, 192), steps=2,
                  validate_every=2, log_every=1, sma=None, stdet=None)  # fmt: skip
    fit(config, tmp_path / "run", on_log=records.append)
    train = [r for r in records if "split" not in r]
    assert all("ms-ssim" in r and 0 <= r["ms-ssim"] <= 1 for r in train)
    assert [r["readout"] for r in records if r.get("split") == "val"] == ["raw"]


def test_resume_refuses_another_configuration(images, tmp_path):
    fit(tiny(images, steps=4), tmp_path / "run")
    with pytest.raises(ValueError, match="lmbda differ"):
        fit(tiny(images, lmbda=0.02), tmp_path / "run", resume=True)


CLI = [sys.executable, "-m", "lic_train", "fit"]


def cli_flags(images: Path, out: Path, steps: int = 16) -> list[str]:
    return [
        "--N", "8", "--M", "12", "--data", str(images), "--patch-size", "64", "64",
        "--batch-size", "2", "--steps", str(steps), "--validate-every", "2", "--log-every", "2",
        "--device", "cpu", "--learning-rate", "1e-3", "--sma", "--sma-k", "2", "--stdet",
        "--stdet-snapshot-every", "1", "--stdet-snapshots", "3", "--stdet-every", "2",
        "--stdet-samples", "100", "--stdet-modes", "3", "--stdet-fraction", "0.3",
        "--out", str(out),
    ]  # fmt: skip


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def uninterrupted(images, tmp_path_factory) -> Path:
    whole = tmp_path_factory.mktemp("whole") / "run"
    subprocess.run([*CLI, *cli_flags(images, whole)], check=True, env=ENV, capture_output=True)
    return whole


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_kill_at_a_random_moment_then_resume_gives_the_uninterrupted_weights(
    images, uninterrupted, tmp_path, how
):
    """SIGKILL may leave a temporary file (the next run in the folder removes it); SIGTERM
    cleans up (one line, status 143). Either way the run resumes to the same weights. The signal
    goes to the whole process group, DataLoader workers included, as a scheduler sends it."""
    rng = np.random.default_rng(int(time.time()))
    killed = tmp_path / "killed"
    process = subprocess.Popen([*CLI, *cli_flags(images, killed), "--num-workers", "2"], env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    # Kill once the first checkpoint exists, at a random moment of the run after it.
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pth.tar").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 1.5))
    os.killpg(process.pid, how)
    stderr = process.communicate()[1]
    if not (killed / "summary.json").exists():  # else it finished before the signal came
        if how == signal.SIGTERM:
            assert process.returncode == 143, stderr
            assert stderr.strip().splitlines()[-1] == (
                "lic-train fit: terminated (SIGTERM); resume with --resume"
            ), stderr
            assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
            assert not list(killed.glob("*.tmp")), "SIGTERM left a temporary file"
        else:
            assert process.returncode == -signal.SIGKILL
    checkpoint.load(killed / "checkpoint.pth.tar")  # loadable whenever it was killed
    done = subprocess.run([*CLI, *cli_flags(images, killed), "--resume"], env=ENV,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not list(killed.glob(".*.tmp"))  # stale ones were removed when it reopened
    assert_same(weights(uninterrupted), weights(killed))


def test_a_full_disk_is_one_line_and_resume_continues_from_the_best_checkpoint(
    images, tmp_path, monkeypatch, capsys
):
    """The disk fills while the latest checkpoint of step 4 is written, after the best one of
    step 4: one line, status 1, no temporary file; --resume continues from the best one."""
    import errno

    from lic_dynamics.files import write_atomic
    from lic_train import cli

    run, real = tmp_path / "run", checkpoint.save

    def save(content, path):
        if Path(path).name == checkpoint.LATEST and content["step"] == 4:
            real(content, Path(path).parent / checkpoint.BEST)

            def full(file):
                file.write(b"the first bytes")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

            write_atomic(path, full)
        real(content, path)

    flags = cli_flags(images, run, steps=6)
    flags = flags[: flags.index("--stdet")] + flags[flags.index("--out") :]  # no STDET
    monkeypatch.setattr(checkpoint, "save", save)
    assert cli.main(["fit", *flags]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == f"lic-train fit: error: {run / checkpoint.LATEST}: No space left on device"
    assert not list(run.glob(".*.tmp"))
    assert checkpoint.load(run / checkpoint.LATEST)["step"] == 2
    assert resume_point(run)[0] == run / checkpoint.BEST  # step 4, further on
    monkeypatch.setattr(checkpoint, "save", real)
    assert cli.main(["fit", *flags, "--resume"]) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("split") == "val"] == [2, 2, 4, 4, 6, 6]


def test_a_kill_between_the_last_best_and_latest_writes_resumes_to_the_final_latest(
    images, tmp_path
):
    """Killed after the best checkpoint of the last step was written and before the latest
    one: the resume has no step left to run, and still leaves the final state as the latest."""
    run = tmp_path / "run"
    fit(tiny(images, steps=8, keep_checkpoints=(4,), lr_schedule="multistep"), run)
    final = weights(run)
    shutil.copyfile(run / "checkpoint_step4.pth.tar", run / checkpoint.LATEST)  # never rewritten
    assert resume_point(run)[0] == run / checkpoint.BEST
    fit(tiny(images, steps=8, keep_checkpoints=(4,), lr_schedule="multistep"), run, resume=True)
    assert checkpoint.load(run / checkpoint.LATEST)["step"] == 8
    assert_same(final, weights(run))


def test_a_crash_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pth.tar"
    checkpoint.save({"state_dict": {"w": torch.ones(3)}, "step": 1}, path)
    script = (
        "import os, signal\n"
        "from lic_dynamics.files import write_atomic\n"
        "def write(file):\n"
        "    file.write(b'partial bytes of a new checkpoint')\n"
        "    file.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"write_atomic({str(path)!r}, write)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    assert checkpoint.load(path)["step"] == 1
    (stale,) = tmp_path.glob(".checkpoint.pth.tar.*.tmp")  # what SIGKILL leaves
    checkpoint.save({"state_dict": {"w": torch.ones(3)}, "step": 2}, path)
    assert not stale.exists()  # the next write of the same file removes it


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    images, tmp_path, monkeypatch
):
    """The training loss turns NaN after the first checkpoint (step 4): the run stops with
    NonFiniteLoss and the step-4 checkpoint stays, finite and loadable."""
    import lic_train.trainer.loop as train_module

    run = tmp_path / "run"
    real = train_module.rate_distortion_loss

    def poisoned(lmbda, metric):
        criterion = real(lmbda, metric)

        def loss(out, x):
            result = criterion(out, x)
            if torch.is_grad_enabled() and (run / "checkpoint.pth.tar").exists():
                result["loss"] = result["loss"] * float("nan")
            return result

        return loss

    monkeypatch.setattr(train_module, "rate_distortion_loss", poisoned)
    with pytest.raises(NonFiniteLoss, match="step 5: the loss is nan"):
        fit(tiny(images), run)
    saved = checkpoint.load(run / "checkpoint.pth.tar")
    assert saved["step"] == 4
    assert all(
        torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point()
    )


def _ddp_rank(rank: int, world: int, images: str, out: str, port: int) -> None:
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )  # fmt: skip
    torch.set_num_threads(1)
    import torch.distributed as dist

    try:
        trained = fit(tiny(Path(images), steps=8), Path(out) / "run")
        torch.save(
            {
                "params": {n: p.detach().clone() for n, p in trained.model.named_parameters()},
                "average": trained.sma.state_dict()["average"],
                "kind": trained.stdet.lines.kind.clone(),
                "removed": trained.stdet.removed_tensors(),
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_gloo_ranks_train_identical_models(images, tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_rank, args=(2, str(images), str(tmp_path), port), nprocs=2, join=True)
    zero, one = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert int((zero["kind"] != 0).sum()) > 0
    assert torch.equal(zero["kind"], one["kind"])
    assert zero["removed"] == one["removed"]
    assert_same(zero["params"], one["params"])
    assert_same(zero["average"], one["average"])
    saved = checkpoint.load(tmp_path / "run" / "checkpoint.pth.tar")  # rank 0 wrote it
    raw, average = saved["raw_state_dict"], saved["state_dict"]  # state_dict: the SMA average
    assert_same(zero["params"], {name: raw[name] for name in zero["params"]})
    assert_same(zero["average"], {name: average[name] for name in zero["average"]})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fit_on_cuda_resumes_and_its_checkpoint_loads_on_the_cpu(images, tmp_path):
    """The CUDA path: pinned batches, SMA and STDET on the GPU, a checkpoint the CPU reads."""
    config = tiny(images, device="cuda", num_workers=2)
    fit(config, tmp_path / "whole")
    fit(tiny(images, device="cuda", num_workers=2, steps=8), tmp_path / "split")
    trained = fit(config, tmp_path / "split", resume=True)
    assert next(trained.model.parameters()).is_cuda
    assert trained.summary.memory_kind == "torch.cuda.max_memory_allocated"
    assert trained.summary.peak_memory_bytes > 0
    saved = torch.load(tmp_path / "split" / "checkpoint.pth.tar", map_location="cpu",
                       weights_only=True)  # fmt: skip
    assert saved["step"] == 12
    # GPU kernels need not be bit-reproducible across processes; one process, same kernels:
    whole = weights(tmp_path / "whole")
    for name, value in saved["state_dict"].items():
        assert torch.allclose(value, whole[name], atol=1e-4), name


def test_a_new_run_stopped_before_its_first_checkpoint_leaves_no_folder(
    images, tmp_path, monkeypatch
):
    """It could not be resumed: its log and TensorBoard files would be strays. A folder that
    existed before the run is kept."""
    import lic_train.trainer.loop as loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(images), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(images), tmp_path / "mine")
    assert (tmp_path / "mine").is_dir()

    def diverged(*args, **kwargs):  # a diverged run keeps its log: it shows the divergence
        return {"loss": torch.tensor(float("nan"))}, torch.tensor(0.0)

    monkeypatch.setattr(loop, "train_step", diverged)
    with pytest.raises(NonFiniteLoss):
        fit(tiny(images, log_every=1), tmp_path / "nan")
    assert (tmp_path / "nan").is_dir()


def test_resume_continues_from_the_intact_checkpoint_when_one_is_damaged(images, tmp_path):
    run = tmp_path / "run"
    fit(tiny(images, steps=4, stdet=None), run)
    data = bytearray((run / checkpoint.BEST).read_bytes())
    data[len(data) // 2] ^= 1
    (run / checkpoint.BEST).write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="damaged.*resuming from checkpoint.pth.tar"):
        assert resume_point(run)[0] == run / checkpoint.LATEST
    (run / checkpoint.LATEST).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        resume_point(run)


# ---- budget sweeps: a run branches off another's kept checkpoint -------------------------------


@pytest.mark.parametrize("with_stdet", [False, True], ids=["ema", "stdet+ema"])
def test_a_branch_off_a_kept_checkpoint_is_the_run_of_that_length_bit_for_bit(
    images, tmp_path, with_stdet
):
    # x0.1 at 75%: the trunk of 12 steps decays at 9, a run of 8 steps at 6, where it branches.
    config = tiny(images, lr_schedule="multistep", lr_milestones=(0.75,), validate_every=5,
                  sma=SMAConfig(k=1, beta=0.999, warmup=True))  # fmt: skip
    if not with_stdet:
        config = replace(config, stdet=None)
    fit(replace(config, keep_checkpoints=(6,)), tmp_path / "trunk")
    assert (tmp_path / "trunk" / "checkpoint_step6.pth.tar").is_file()
    branch(tmp_path / "trunk", 6, tmp_path / "branch")
    branched = fit(replace(config, steps=8), tmp_path / "branch", resume=True)
    fresh = fit(replace(config, steps=8), tmp_path / "fresh")
    assert_same(weights(tmp_path / "branch"), weights(tmp_path / "fresh"))
    for name, average in fresh.sma.average.items():  # the EMA too
        assert torch.equal(branched.sma.average[name], average)
    lrs = [r["lr"] for r in files.read_jsonl(tmp_path / "branch" / "metrics.jsonl") if "lr" in r]
    assert lrs[-1] == pytest.approx(1e-4)  # decayed at its own 75%, not the trunk's
    # Its clock includes the trunk's share up to the branch.
    assert branched.summary.wall_time > fresh.summary.wall_time * 0.5


def test_a_branch_after_the_shorter_runs_decay_is_refused(images, tmp_path):
    config = tiny(images, lr_schedule="multistep", lr_milestones=(0.75,), sma=None, stdet=None)
    fit(replace(config, keep_checkpoints=(8,)), tmp_path / "trunk")
    branch(tmp_path / "trunk", 8, tmp_path / "late")
    with pytest.raises(ValueError, match=r"steps.*another length would have decayed"):
        fit(replace(config, steps=8), tmp_path / "late", resume=True)  # decays at 6 < 8
    with pytest.raises(ValueError, match="kept no checkpoint at step 4"):
        branch(tmp_path / "trunk", 4, tmp_path / "other")
    with pytest.raises(ValueError, match="is not empty"):
        branch(tmp_path / "trunk", 8, tmp_path / "late")


@pytest.mark.parametrize("kept", [(0,), (4, 2), (3, 3), (2.5,), "4", (True,)])
def test_keep_checkpoints_must_be_increasing_steps(kept):
    with pytest.raises(ValueError, match="keep_checkpoints must be increasing steps >= 1"):
        FitConfig(lr_schedule="multistep", keep_checkpoints=kept)


def test_keep_checkpoints_is_refused_with_the_plateau_schedule():
    # A kept checkpoint's extra validation would step ReduceLROnPlateau: another training.
    with pytest.raises(ValueError, match="keep_checkpoints must be empty with the plateau"):
        FitConfig(lr_schedule="plateau", keep_checkpoints=(5,))
