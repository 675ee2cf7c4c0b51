"""lic_train.trainer.checkpoint: files that load without running code, that CompressAI's tools take
(``update_model``, ``eval_model -p``, ``examples/train.py --checkpoint``), and CompressAI's files
that we take (``--checkpoint``, ``eval``, ``export``)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from compressai.optimizers import net_aux_optimizer  # noqa: E402

from lic_train.rules import SMAConfig  # noqa: E402
from lic_train.trainer import checkpoint  # noqa: E402
from lic_train.trainer.config import FitConfig  # noqa: E402
from lic_train.trainer.layout import read_layout  # noqa: E402
from lic_train.trainer.loop import build, fit  # noqa: E402
from lic_train.trainer.models import build_model, describe, from_weights  # noqa: E402
from lic_train.trainer.state import layout, load_optimizer_state, optimizer_state  # noqa: E402

CPU = torch.device("cpu")
EXAMPLES = Path(importlib.util.find_spec("compressai").origin).parents[1] / "examples"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """CompressAI's ImageFolder layout: train/ 4 images, test/ 1 (flat, as ImageFolder reads;
    larger than 160 pixels, which eval_model's MS-SSIM needs)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 1)):
        (root / split).mkdir()
        for i in range(count):
            side = 72 if split == "train" else 176
            pixels = rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def sma_run(folder, tmp_path_factory) -> Path:
    """3 steps of the zoo's hyperprior at quality 3 (CompressAI's train.py builds exactly that)
    with SMA: 4 images, batch 2, so 2 steps per epoch and the checkpoint is mid-epoch 1."""
    out = tmp_path_factory.mktemp("run")
    config = FitConfig(
        quality=3, data=str(folder), patch_size=(64, 64), batch_size=2, test_batch_size=2,
        steps=3, validate_every=3, device="cpu", sma=SMAConfig(k=1, beta=0.5), num_workers=0,
    )  # fmt: skip
    fit(config, out)
    return out


def test_a_checkpoint_loads_with_weights_only_and_follows_compressai(sma_run):
    saved = torch.load(sma_run / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0  # steps 0-1 are epoch 0, finished; step 2 is in epoch 1
    # state_dict holds the average (the recommended weights), raw_state_dict the trained ones.
    average = saved["sma"]["average"]
    for name, tensor in average.items():
        assert torch.equal(saved["state_dict"][name], tensor), name
    assert any(not torch.equal(saved["raw_state_dict"][n], t) for n, t in average.items()), (
        "the average should differ from the raw weights after 3 steps"
    )
    assert saved["loss"] == saved["final"]["sma"]["loss"]


def test_optimizer_states_are_in_net_aux_optimizers_order(sma_run):
    saved = checkpoint.load(sma_run / "checkpoint.pth.tar")
    model = build_model("bmshj2018-hyperprior", quality=3)
    model.load_state_dict(saved["state_dict"])
    optimizers = net_aux_optimizer(model, {"net": {"type": "Adam", "lr": 1e-4},
                                           "aux": {"type": "Adam", "lr": 1e-3}})  # fmt: skip
    for key, name in (("optimizer", "net"), ("aux_optimizer", "aux")):
        optimizer = optimizers[name]
        optimizer.load_state_dict(saved[key])
        for p in optimizer.param_groups[0]["params"]:
            assert optimizer.state[p]["exp_avg"].shape == p.shape


def test_a_parameter_out_of_the_optimizer_keeps_the_layout():
    params = [torch.nn.Parameter(torch.full((i + 1,), float(i))) for i in range(3)]
    optimizer = torch.optim.Adam([params[0], params[2]], lr=0.1)  # STDET took params[1] out
    for p in (params[0], params[2]):
        p.grad = torch.ones_like(p)
    optimizer.step()
    saved = optimizer_state(optimizer, params)
    assert saved["param_groups"][0]["params"] == [0, 1, 2] and set(saved["state"]) == {0, 2}
    full = torch.optim.Adam(params, lr=0.1)  # e.g. CompressAI's train.py
    full.load_state_dict(saved)
    assert full.state[params[2]]["exp_avg"].shape == (3,) and params[1] not in full.state
    again = torch.optim.Adam([params[0], params[2]], lr=0.1)
    load_optimizer_state(again, saved, params)
    assert torch.equal(again.state[params[2]]["exp_avg"], optimizer.state[params[2]]["exp_avg"])
    with pytest.raises(ValueError, match="another architecture"):
        load_optimizer_state(again, saved, params[:2])


def test_compressai_tools_take_our_checkpoints(sma_run, folder, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ours = str(sma_run / "checkpoint.pth.tar")

    def run(*argv: str) -> None:
        done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]

    # train.py continues at epoch + 1 = 1 and trains epoch 1 (a crash if the states mismatch).
    run(str(EXAMPLES / "train.py"), "-m", "bmshj2018-hyperprior", "-d", str(folder), "-e", "2",
        "--batch-size", "2", "--test-batch-size", "2", "--patch-size", "64", "64", "-n", "0",
        "--checkpoint", ours)  # fmt: skip
    # update_model writes cwd/checkpoint.pth.tar before renaming it (clobbering train.py's): --dir.
    run("-m", "compressai.utils.update_model", "--architecture", "bmshj2018-hyperprior", ours,
        "--dir", str(tmp_path / "updated"))  # fmt: skip
    assert len(list((tmp_path / "updated").glob("checkpoint-*.pth.tar"))) == 1
    run("-m", "compressai.utils.eval_model", "checkpoint", str(folder / "test"), "-a",
        "bmshj2018-hyperprior", "-p", ours)  # fmt: skip
    # ... and we take train.py's: eval with --model, and fit --checkpoint.
    theirs = tmp_path / "checkpoint.pth.tar"
    name, _ = checkpoint.load_trained(theirs, model="bmshj2018-hyperprior")
    assert name == "bmshj2018-hyperprior-checkpoint"
    state, _ = build(FitConfig(quality=3, checkpoint=str(theirs), device="cpu"), CPU)
    expected = checkpoint.weights_of(checkpoint.load(theirs), theirs)
    for key, value in state.model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_export_writes_the_chosen_weights_in_compressais_keys(sma_run, tmp_path):
    saved = checkpoint.load(sma_run / "checkpoint_best_loss.pth.tar")
    for weights, key in (("sma", "state_dict"), ("raw", "raw_state_dict")):
        out = tmp_path / f"{weights}.pth.tar"
        checkpoint.export(sma_run, out, weights=weights)
        exported = torch.load(out, weights_only=True)
        assert set(exported) == {*checkpoint.COMPRESSAI_KEYS, checkpoint.CHECKSUM}
        assert exported["loss"] == saved["final"][weights]["loss"]
        for name, tensor in saved[key].items():
            assert torch.equal(exported["state_dict"][name], tensor), name
        assert checkpoint.load_trained(out, model="bmshj2018-hyperprior")[0].endswith("checkpoint")


def test_export_writes_weights_of_the_architecture_the_run_is_configured_with(sma_run, tmp_path):
    saved = checkpoint.load(sma_run / "checkpoint_best_loss.pth.tar")
    config = checkpoint.saved_config(saved, sma_run)
    configured = build_model(config.model, quality=config.quality, N=config.N, M=config.M)
    for weights in checkpoint.WEIGHTS:
        out = tmp_path / f"{weights}.pth.tar"
        _, exported = checkpoint.export(sma_run, out, weights=weights)
        # What CompressAI's from_state_dict reads off the file is the run's architecture.
        assert describe(from_weights(config.model, exported["state_dict"])) == saved["model"]
        checkpoint.check_architecture(exported["state_dict"], configured, out)
    # A source whose configuration was edited to other widths and signed again is refused
    # before anything is written.
    edited = tmp_path / "edited.pth.tar"
    changed = {**saved["config"], "quality": None, "N": 16, "M": 16}
    checkpoint.save({**saved, "config": changed}, edited)
    with pytest.raises(ValueError, match=r"another architecture than its own configuration"):
        checkpoint.export(edited, tmp_path / "x.pth.tar")
    assert not (tmp_path / "x.pth.tar").exists()


def test_read_layout_gives_the_shapes_without_the_data(sma_run):
    path = sma_run / "checkpoint.pth.tar"
    layout, saved = read_layout(path), checkpoint.load(path)
    for key in ("state_dict", "raw_state_dict"):
        for name, tensor in saved[key].items():
            shaped = layout[key][name]
            assert shaped.is_meta and (shaped.shape, shaped.dtype) == (tensor.shape, tensor.dtype)
    assert layout["config"] == saved["config"] and layout["step"] == saved["step"]


def test_a_checkpoint_that_would_run_code_is_refused_before_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth.tar"
    evil.write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(ValueError, match="refused"):
        checkpoint.load(evil)
    assert not marker.exists()
    noise = tmp_path / "noise.pth.tar"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match=str(noise)):
        checkpoint.load(noise)


@pytest.mark.parametrize("wrap", ["bare", "network", "model_state_dict", "module."])
def test_weights_are_found_where_eval_model_finds_them(wrap):
    weights = build_model("bmshj2018-factorized", N=8, M=12).state_dict()
    saved = {
        "bare": weights,
        "network": {"network": weights, "epoch": 3},
        "model_state_dict": {"model_state_dict": weights},
        "module.": {"state_dict": {f"module.{k}": v for k, v in weights.items()}},
    }[wrap]
    assert checkpoint.weights_of(saved, "x").keys() == weights.keys()
    with pytest.raises(ValueError, match="no model weights"):
        checkpoint.weights_of({"epoch": 1}, "x")


def test_from_weights_reads_the_widths_off_the_analysis_transform():
    weights = build_model("mbt2018-mean", N=16, M=24).state_dict()
    model = from_weights("mbt2018-mean", weights)
    checkpoint.check_architecture(weights, model, "x")  # same shapes everywhere
    assert (model.N, model.M) == (16, 24)
    with pytest.raises(ValueError, match="another architecture"):
        checkpoint.check_architecture(weights, build_model("mbt2018-mean", N=16, M=32), "x")


def test_layout_is_sorted_by_name_with_the_quantiles_apart():
    model = build_model("bmshj2018-hyperprior", N=8, M=12)
    net, aux = layout(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in net] == sorted(
        n for n, _ in model.named_parameters() if not n.endswith(".quantiles")
    )
    assert [names[id(p)] for p in aux] == ["entropy_bottleneck.quantiles"]


def old_names(state_dict: dict) -> dict:
    """The entropy bottleneck's names as CompressAI 1.1 saved them (``_bias0``, ``_matrix0``...)."""
    renamed = {}
    for name, tensor in state_dict.items():
        for new, old in (("biases.", "_bias"), ("matrices.", "_matrix"), ("factors.", "_factor")):
            name = name.replace(f"entropy_bottleneck.{new}", f"entropy_bottleneck.{old}")
        renamed[name] = tensor
    return renamed


def test_published_checkpoints_with_older_names_load(tmp_path):
    weights = build_model("bmshj2018-hyperprior", N=8, M=12).state_dict()
    path = tmp_path / "old.pth.tar"
    torch.save(old_names(weights), path)
    assert "entropy_bottleneck._bias0" in torch.load(path, weights_only=True)
    _, model = checkpoint.load_trained(path, model="bmshj2018-hyperprior")
    state, _ = build(FitConfig(N=8, M=12, checkpoint=str(path), device="cpu"), CPU)
    for built in (model, state.model):
        for name, value in built.state_dict().items():
            assert torch.equal(value, weights[name]), name


def test_a_foreign_checkpoint_with_its_own_config_is_not_taken_for_ours(tmp_path):
    weights = build_model("bmshj2018-hyperprior", N=8, M=12).state_dict()
    path = tmp_path / "theirs.pth.tar"
    torch.save({"config": {"lr": 1e-4}, "state_dict": weights}, path)
    name, _ = checkpoint.load_trained(path, model="bmshj2018-hyperprior")
    assert name == "bmshj2018-hyperprior-checkpoint"
    with pytest.raises(ValueError, match="not written by lic-train fit"):
        checkpoint.export(path, tmp_path / "x.pth.tar")


def test_export_refuses_a_folder_and_the_checkpoint_it_reads(sma_run, tmp_path):
    with pytest.raises(ValueError, match="a folder"):
        checkpoint.export(sma_run, tmp_path)
    latest = sma_run / "checkpoint.pth.tar"
    for target in (latest, sma_run):  # the file read, or the run's other checkpoint
        with pytest.raises(ValueError, match="a run's own checkpoint"):
            checkpoint.export(target, latest)
    assert checkpoint.is_ours(checkpoint.load(latest))


# The loader under fuzzing: every damaged or foreign file is one ValueError line naming the file,
# or loads exactly what was written; nothing ever runs.


@pytest.fixture(scope="module")
def small_run(folder, tmp_path_factory) -> Path:
    """A real checkpoint small enough to fuzz byte by byte (a hyperprior of 8 channels)."""
    out = tmp_path_factory.mktemp("small")
    config = FitConfig(
        N=8, M=8, data=str(folder), patch_size=(64, 64), batch_size=2, test_batch_size=2,
        steps=2, validate_every=2, device="cpu", sma=SMAConfig(k=1, beta=0.5), num_workers=0,
    )  # fmt: skip
    fit(config, out)
    return out / "checkpoint.pth.tar"


def pickle_span(data: bytes) -> tuple[int, int]:
    """Where the pickle (``data.pkl``) lies inside a torch zip file: (start, end) offsets."""
    import struct
    import zipfile
    from io import BytesIO

    info = next(i for i in zipfile.ZipFile(BytesIO(data)).infolist() if i.filename.endswith(".pkl"))
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 :][:4])
    start = info.header_offset + 30 + name_length + extra_length
    return start, start + info.compress_size


def refused_in_one_line(path: Path) -> bool:
    try:
        checkpoint.load(path)
    except ValueError as error:
        assert str(path) in str(error) and "\n" not in str(error), str(error)
        return True
    return False


@settings(max_examples=max(settings().max_examples, 60))  # 60 bit flips at least
@given(position=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), in_pickle=st.booleans())
def test_a_flipped_bit_is_refused_or_loads_what_was_written(
    small_run, tmp_path_factory, position, bit, in_pickle
):
    data = bytearray(small_run.read_bytes())
    start, end = pickle_span(bytes(data)) if in_pickle else (0, len(data))
    offset = start + int(position * (end - start))
    data[offset] ^= 1 << bit
    damaged = tmp_path_factory.mktemp("flip") / "checkpoint.pth.tar"
    damaged.write_bytes(bytes(data))
    if not refused_in_one_line(damaged):  # a flip in bytes torch never reads (zip metadata)
        assert checkpoint.digest(checkpoint.load(damaged)) == checkpoint.digest(
            checkpoint.load(small_run)
        ), f"byte {offset} bit {bit} loads other content"


@given(length=st.floats(0, 1, exclude_max=True))
def test_a_truncated_checkpoint_is_refused(small_run, tmp_path_factory, length):
    data = small_run.read_bytes()
    cut = tmp_path_factory.mktemp("cut") / "checkpoint.pth.tar"
    cut.write_bytes(data[: int(length * len(data))])
    assert refused_in_one_line(cut)


@given(noise=st.binary(min_size=0, max_size=4096))
def test_random_bytes_are_refused(tmp_path_factory, noise):
    path = tmp_path_factory.mktemp("noise") / "noise.pth.tar"
    path.write_bytes(noise)
    assert refused_in_one_line(path)


def test_the_checksum_covers_every_entry(small_run, tmp_path):
    saved = checkpoint.load(small_run)
    for key in ("state_dict", "optimizer", "config", "step", "random_states"):
        changed = tmp_path / f"{key}.pth.tar"
        content = {**saved}
        content[key] = 7 if key == "step" else {**saved[key]} if isinstance(saved[key], dict) else 0
        if key == "state_dict":
            name = next(iter(content[key]))
            content[key][name] = content[key][name] + 1e-6
        elif key in ("optimizer", "config"):
            content[key]["extra"] = 1
        signed = {**content, checkpoint.CHECKSUM: checkpoint.digest(saved)}  # the old digest
        torch.save(signed, changed)
        assert refused_in_one_line(changed), key
    unsigned = tmp_path / "unsigned.pth.tar"
    torch.save(saved, unsigned)  # ours, without a checksum: damaged or from an older version
    assert refused_in_one_line(unsigned)


class _Reduce:
    """A pickle payload that calls ``function(*args)`` when loaded."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def test_foreign_pickles_are_refused_and_run_nothing(tmp_path):
    import builtins

    marker = tmp_path / "ran"
    payloads = {
        "os.system": _Reduce(os.system, f"touch {marker}"),
        "eval": _Reduce(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": _Reduce(subprocess.call, ["touch", str(marker)]),
        "a class": Path("x"),
        "numpy": {"weights": np.zeros(3)},
    }
    for name, payload in payloads.items():
        for how in ("pickle", "torch.save"):
            path = tmp_path / f"{name}-{how}.pth.tar"
            if how == "pickle":
                path.write_bytes(pickle.dumps(payload))
            else:
                torch.save(payload, path)
            assert refused_in_one_line(path), (name, how)
            assert not marker.exists(), (name, how)
    deep = tmp_path / "deep.pth.tar"
    deep.write_bytes(b"\x80\x02" + b"]" * 200_000 + b".")  # 200k nested lists, no STOP inside
    assert refused_in_one_line(deep)
