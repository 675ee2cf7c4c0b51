"""Hostile checkpoints: the sizes a file declares are checked before they are trusted.

A configuration edited to other widths (and signed again: the checksum is an integrity check, not
a signature), a stride-0 tensor expanded to a million filters, a storage larger than the bytes the
file holds, a pickle that calls a tensor constructor: each is refused with one ``ValueError`` line
naming the file, in well under a second, before a tensor is read, a checksum computed or a model of
the size the file chose built; never an "out of memory" about flags the user did not give. Honest
files of both torch formats (zip, and the legacy one of torch < 1.6) load exactly.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("compressai")

from lic_train.cli import main  # noqa: E402
from lic_train.trainer import checkpoint, loop, models  # noqa: E402
from lic_train.trainer.config import FitConfig  # noqa: E402
from lic_train.trainer.models import build_model, describe  # noqa: E402

ARCH = "bmshj2018-hyperprior"
FAST = 1.0  # seconds: a refusal reads a pickle and builds a model on the meta device at most


def ours(**config: object) -> dict:
    """A checkpoint as ``lic-train fit`` writes one (N = M = 8), its configuration changed by
    ``config`` (as an edit by hand would), before :func:`checkpoint.save` signs it."""
    model = build_model(ARCH, N=8, M=8)
    return {
        "epoch": 0, "state_dict": model.state_dict(), "loss": 1.0, "optimizer": {},
        "aux_optimizer": {}, "lr_scheduler": {}, "step": 1, "random_states": [],
        "final": {"raw": {"loss": 1.0}}, "model": describe(model),
        "config": {**FitConfig(N=8, M=8, device="cpu").to_dict(), **config},
    }  # fmt: skip


def run_folder(root: Path, saved: dict, *, sign: bool = True) -> Path:
    """A run folder whose latest and best checkpoints are ``saved``."""
    root.mkdir()
    for name in (checkpoint.LATEST, checkpoint.BEST):
        if sign:
            checkpoint.save(saved, root / name)
        else:
            torch.save(saved, root / name)
    return root


@pytest.fixture
def no_real_model(monkeypatch):
    """Fail the test if a model is built for real (only shapes-only builds are allowed): the
    refusal must come before a model of the size the file chose exists."""
    real = models.build_model

    def guarded(*args, shapes_only: bool = False, **kwargs):
        assert shapes_only, f"a model was built for real ({args}, {kwargs}) before the refusal"
        return real(*args, shapes_only=shapes_only, **kwargs)

    monkeypatch.setattr(models, "build_model", guarded)


def refused_quickly(call, path: Path, *fragments: str) -> str:
    """The one-line ``ValueError`` of ``call()``: it names ``path`` and each fragment, says
    nothing about memory, and comes within :data:`FAST` seconds."""
    start = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        call()
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert str(path) in message and "\n" not in message, message
    assert "memory" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert elapsed < FAST, f"{elapsed:.2f} s: {message}"
    return message


def paths_of_a_run(folder: Path, tmp_path: Path) -> list:
    """How --resume, eval, export and fit --checkpoint read a run's checkpoint, each with the
    parameter its errors name (the CLI shows it as the flag or argument)."""
    return [
        ("resume", lambda: loop.resume_point(folder)),
        ("target", lambda: checkpoint.load_trained(folder)),
        ("target", lambda: checkpoint.export(folder, tmp_path / "exported.pth.tar")),
        ("checkpoint", lambda: loop.initial_state_dict(str(folder / checkpoint.BEST))),
    ]


@pytest.mark.parametrize(
    ("width", "says"),
    [(100_000, "N must be an integer in [1, 16384]"), (1500, "another architecture")],
)
def test_a_configuration_edited_to_other_widths_is_refused_on_every_path(
    tmp_path, no_real_model, width, says
):
    folder = run_folder(tmp_path / "run", ours(N=width, M=width))  # signed anew
    for parameter, call in paths_of_a_run(folder, tmp_path):
        message = refused_quickly(call, folder, says)
        assert message.startswith(f"{parameter} {folder}/"), message
    assert not (tmp_path / "exported.pth.tar").exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_stride_0_state_dict_is_refused_before_its_view_is_read(tmp_path, no_real_model, legacy):
    weights = build_model(ARCH, N=8, M=8).state_dict()
    weights["g_a.0.weight"] = torch.zeros(1).expand(10**6, 3, 5, 5)  # 300 MB viewed, 4 bytes held
    path = tmp_path / "expanded.pth.tar"
    torch.save(weights, path, _use_new_zipfile_serialization=not legacy)
    says = "views 75000000 elements of a storage of 1"
    refused_quickly(lambda: loop.initial_state_dict(str(path)), path, "checkpoint", says)
    refused_quickly(lambda: checkpoint.load_trained(path, model=ARCH), path, says)


def test_a_stride_0_extra_tensor_is_refused_before_the_checksum_reads_it(tmp_path, no_real_model):
    # 2 GB viewed: the checksum would copy it to hash it. Any checksum will do: it is never read.
    saved = {**ours(), "extra": torch.zeros(1).expand(2**29), checkpoint.CHECKSUM: "0" * 64}
    folder = run_folder(tmp_path / "run", saved, sign=False)
    for _, call in paths_of_a_run(folder, tmp_path):
        refused_quickly(call, folder, "views 536870912 elements of a storage of 1")


def test_weights_1500_wide_are_refused_before_a_model_that_wide_is_built(tmp_path, no_real_model):
    weights = build_model(ARCH, N=8, M=8).state_dict()
    weights["g_a.0.weight"] = torch.zeros(1500, 3, 5, 5)  # real bytes: N = 1500 read off g_a
    path = tmp_path / "wide.pth.tar"
    torch.save(weights, path)
    refused_quickly(lambda: checkpoint.load_trained(path, model=ARCH), path, "another architecture")


# ---- files crafted byte by byte: what torch.save would never write ------------------------------


class Stored:
    """A float32 storage of a crafted file: ``numel`` elements declared, ``data`` written."""

    def __init__(self, numel: int, data: bytes, key: str = "0") -> None:
        self.numel, self.data, self.key = numel, data, key


class View:
    """A tensor of a crafted file: ``size`` and ``stride`` over a :class:`Stored`."""

    def __init__(self, storage: Stored, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class Call:
    """A pickle that calls ``function(*args)`` when loaded."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def write(path: Path, content: object, *, legacy: bool = False, compress: bool = False) -> Path:
    """``content`` as torch.save lays a file out (zip, or the legacy format), its storages as
    :class:`Stored` declare them; ``compress``: its storages' records deflated."""
    storages: dict[str, Stored] = {}

    def persistent_id(obj):
        if not isinstance(obj, Stored):
            return None
        storages[obj.key] = obj
        return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel) + (None,) * legacy

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = persistent_id
    pickler.dump(content)
    if legacy:
        sizes = {"short": 2, "int": 4, "long": 4}
        with path.open("wb") as file:
            info = {"protocol_version": 1001, "little_endian": True, "type_sizes": sizes}
            for header in (torch.serialization.MAGIC_NUMBER, 1001, info):
                pickle.dump(header, file, protocol=2)
            file.write(buffer.getvalue())
            pickle.dump(list(storages), file, protocol=2)
            for stored in storages.values():
                file.write(struct.pack("<q", len(stored.data) // 4) + stored.data)
        return path
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for stored in storages.values():
            archive.writestr(f"archive/data/{stored.key}", stored.data, compress_type=method)
        archive.writestr("archive/version", "3\n")
    return path


SIX = torch.arange(6, dtype=torch.float32).numpy().tobytes()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_crafted_honest_files_load_exactly(tmp_path, legacy):
    six = Stored(6, SIX)  # two views of one storage stay one storage
    content = {"w": View(six, (2, 3), (3, 1)), "v": View(six, (3,), (1,), 3)}
    path = write(tmp_path / "honest.pt", content, legacy=legacy)
    loaded = checkpoint.load(path)
    assert torch.equal(loaded["w"], torch.arange(6.0).reshape(2, 3))
    assert torch.equal(loaded["v"], torch.arange(3.0, 6.0))
    assert loaded["w"].untyped_storage().data_ptr() == loaded["v"].untyped_storage().data_ptr()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"w": View(Stored(2**38, SIX), (2, 3), (3, 1))}, "declare"),  # 1 TiB declared, 24 B held
        ({"w": View(Stored(6, SIX), (10**9,), (1,))}, "reaches 4000000000 bytes"),
        ({"w": View(Stored(6, SIX), (10**9,), (0,))}, "views 1000000000 elements"),
        ({"w": View(Stored(6, SIX), (2, 3), (3, 1), 1)}, "reaches 28 bytes"),  # one past the end
    ],
    ids=["storage-larger-than-the-file", "view-beyond-storage", "stride-0", "offset-past-end"],
)
def test_declared_sizes_beyond_the_file_are_refused(tmp_path, legacy, content, says):
    path = write(tmp_path / "crafted.pt", content, legacy=legacy)
    refused_quickly(lambda: checkpoint.load(path), path, "crafted", says)


def test_a_compressed_record_is_refused_before_it_is_inflated(tmp_path):
    zeros = bytes(2**24)  # 16 MiB that deflate to 16 kB: any size could be declared
    stored = Stored(len(zeros) // 4, zeros)
    path = write(tmp_path / "bomb.pt", {"w": View(stored, (stored.numel,), (1,))}, compress=True)
    assert path.stat().st_size < 2**20
    assert torch.load(path, weights_only=True)["w"].shape == (2**22,)  # torch inflates it
    refused_quickly(lambda: checkpoint.load(path), path, "a record is compressed")


def test_zip_files_two_readers_could_read_differently_are_refused(tmp_path):
    # The layout is read with Python's zipfile, the tensors by torch's own reader (miniz), which
    # finds names ignoring case and takes offsets as written: each file below could show one
    # data.pkl to the first and another to the second.
    honest = write(tmp_path / "honest.pt", {"w": View(Stored(6, SIX), (6,), (1,))})
    other = pickle.dumps({"w": 1}, protocol=2)
    for i, name in enumerate(("archive/data.pkl", "archive/DATA.PKL")):
        path = tmp_path / f"twice{i}.pt"
        path.write_bytes(honest.read_bytes())
        with pytest.warns(UserWarning) if name.islower() else contextlib.nullcontext():
            with zipfile.ZipFile(path, "a") as archive:  # a second record of that name
                archive.writestr(name, other)
        refused_quickly(lambda path=path: checkpoint.load(path), path, "have one name")
    shifted = tmp_path / "shifted.pt"  # Python's zipfile shifts every offset by the 16 bytes
    shifted.write_bytes(b"PK\x03\x04" + bytes(12) + honest.read_bytes())
    assert zipfile.ZipFile(shifted).read("archive/data.pkl")  # Python reads it as if intact
    refused_quickly(lambda: checkpoint.load(shifted), shifted, "not where its end record says")


ALLOCATING = {
    "FloatTensor": Call(torch.FloatTensor, 2**40),
    "Tensor": Call(torch.Tensor, 2**20, 2**20),
    "bytearray": Call(bytearray, 2**40),
    "UntypedStorage": Call(torch.UntypedStorage, 2**40),
}


@pytest.mark.parametrize("payload", ALLOCATING.values(), ids=ALLOCATING.keys())
def test_pickles_that_call_constructors_are_refused_before_allocating(tmp_path, payload):
    # torch's weights_only list allows these calls, each allocating what the file asks (a TiB).
    path = write(tmp_path / "alloc.pt", {"state_dict": {"w": payload}})
    refused_quickly(lambda: checkpoint.load(path), path, "refused, loading it would run code")


def test_crafted_structures_are_refused(tmp_path):
    cycle: list = []
    cycle.append(cycle)
    deep: list = []
    for _ in range(150):
        deep = [deep]
    one_mib = torch.zeros(2**18)
    many = {**ours(), "extra": [one_mib] * 10_000, checkpoint.CHECKSUM: "0" * 64}  # 10 GB hashed
    for name, content, says in (
        ("cycle", {"l": cycle}, "holds itself"),
        ("deep", {"l": deep}, "nested more than"),
        ("many", many, "its checksum would read"),
    ):
        path = tmp_path / f"{name}.pt"
        torch.save(content, path)
        refused_quickly(lambda path=path: checkpoint.load(path), path, says)


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.bfloat16, torch.int64, torch.uint8, torch.bool, torch.complex64,
     torch.uint16, torch.float8_e4m3fn],  # the last two: a byte storage and _rebuild_tensor_v3
    ids=str,
)  # fmt: skip
def test_tensors_of_every_dtype_torch_saves_load_exactly(tmp_path, dtype):
    tensor = torch.arange(6).to(dtype).reshape(2, 3)
    path = tmp_path / "dtype.pt"
    torch.save({"w": tensor, "row": tensor[1], "t": tensor.t()}, path)
    loaded = checkpoint.load(path)
    for name, expected in (("w", tensor), ("row", tensor[1]), ("t", tensor.t())):
        assert loaded[name].dtype == dtype and loaded[name].stride() == expected.stride()
        as_bytes = loaded[name].contiguous().view(torch.uint8)  # float8 has no equality
        assert torch.equal(as_bytes, expected.contiguous().view(torch.uint8))


def test_a_legacy_compressai_state_dict_loads_on_every_path(tmp_path):
    weights = build_model(ARCH, N=8, M=8).state_dict()
    path = tmp_path / "legacy.pth.tar"
    torch.save(weights, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:4] != b"PK\x03\x04"
    _, model = checkpoint.load_trained(path, model=ARCH)
    read = loop.initial_state_dict(str(path))
    for name, value in weights.items():
        assert torch.equal(model.state_dict()[name], value) and torch.equal(read[name], value)


def test_the_cli_refuses_each_hostile_run_in_one_line(tmp_path, capsys):
    folder = run_folder(tmp_path / "run", ours(N=1500, M=1500))
    for argv in (["fit", "--resume", str(folder)], ["eval", str(folder)],
                 ["export", str(folder), str(tmp_path / "out.pth.tar")]):  # fmt: skip
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and str(folder) in lines[0], lines
        assert "another architecture" in lines[0] and "memory" not in lines[0], lines


# Peak memory is per process and only grows: measured in a fresh one, its address space capped
# (so that a regression fails fast rather than swapping a shared machine).
MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    from pathlib import Path
    from lic_train.trainer import checkpoint, loop, models

    models.build_model("bmshj2018-hyperprior", N=8, M=8, shapes_only=True)  # imports, warm-up
    pages = int(Path("/proc/self/statm").read_text().split()[0])
    space = pages * resource.getpagesize() + 2**31  # 2 GiB beyond what the process maps now
    resource.setrlimit(resource.RLIMIT_AS, (space, space))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wide, expanded, extra, g_a = (Path(p) for p in sys.argv[1:])
    calls = [lambda: loop.resume_point(wide), lambda: checkpoint.load_trained(wide),
             lambda: checkpoint.load_trained(expanded, model="bmshj2018-hyperprior"),
             lambda: loop.initial_state_dict(str(expanded)), lambda: checkpoint.load(extra),
             lambda: checkpoint.load_trained(g_a, model="bmshj2018-hyperprior")]
    for call in calls:
        try:
            call()
        except ValueError:
            continue
        raise SystemExit("not refused")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB
""")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc (Linux)")
def test_hostile_checkpoints_are_refused_within_a_few_megabytes(tmp_path):
    wide = run_folder(tmp_path / "wide", ours(N=1500, M=1500))
    weights = build_model(ARCH, N=8, M=8).state_dict()
    expanded, extra, g_a = tmp_path / "expanded.pt", tmp_path / "extra.pt", tmp_path / "g_a.pt"
    torch.save({**weights, "g_a.0.weight": torch.zeros(1).expand(10**6, 3, 5, 5)}, expanded)
    torch.save({**ours(), "extra": torch.zeros(1).expand(2**29), "checksum": "0" * 64}, extra)
    torch.save({**weights, "g_a.0.weight": torch.zeros(1500, 3, 5, 5)}, g_a)
    argv = [sys.executable, "-c", MEMORY_PROBE, *map(str, (wide, expanded, extra, g_a))]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mib = int(done.stdout.split()[-1]) / 1024
    assert grown_mib < 64, f"peak RSS grew by {grown_mib:.0f} MiB while refusing"
