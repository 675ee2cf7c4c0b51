"""Checkpoints: written so that a crash cannot leave them half-written
(:mod:`lic_dynamics.files`), read without running any code, refused when damaged, interchangeable
with CompressAI.

Every file :func:`save` writes carries the SHA-256 :func:`digest` of its whole content under
``checksum`` (CompressAI's tools ignore the key); :func:`load` recomputes it and refuses a file whose
content changed after it was written (a flipped bit, a bad copy), and a ``lic-train fit`` checkpoint
that has none. A file from elsewhere, without the key, loads unverified.

A checkpoint of ``lic-train fit`` is CompressAI's ``examples/train.py`` dict (``epoch``,
``state_dict``, ``loss``, ``optimizer``, ``aux_optimizer``, ``lr_scheduler``, as CompressAI means
them: :mod:`lic_train.trainer.state`) plus this trainer's keys. The files CompressAI's tools take
are read here too: a ``train.py`` checkpoint, a dict under ``network``, ``state_dict`` or
``model_state_dict`` (as ``compressai.utils.eval_model`` reads), or a bare state dict
(``update_model``'s output).

A file's declared sizes are checked before they are trusted: :func:`read_layout` reads its
structure, tensor shapes and dtypes without reading or allocating any tensor data, and refuses a
storage larger than the bytes the file holds for it, a tensor that views more elements than its
storage holds (a stride-0 or overlapping view), and a pickle that names anything but tensors and
plain data. A checkpoint of ours is then compared with the architecture its configuration builds
on the ``meta`` device (:func:`lic_train.trainer.models.build_model` with ``shapes_only``); only
then are its tensors read, its checksum computed and a model built.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import hashlib
import io
import pickle
import pickletools
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import torch
from torch import nn

from lic_dynamics.files import check_folder, write_atomic
from lic_dynamics.validation import InvalidValue
from lic_train.trainer.config import FitConfig

COMPRESSAI_KEYS = ("epoch", "state_dict", "loss", "optimizer", "aux_optimizer", "lr_scheduler")
WEIGHTS_KEYS = ("network", "state_dict", "model_state_dict")  # eval_model's, in its order
WEIGHTS = ("sma", "raw")
# A run folder's checkpoints (CompressAI's train.py names): the latest, and the best.
LATEST, BEST = "checkpoint.pth.tar", "checkpoint_best_loss.pth.tar"
CHECKSUM = "checksum"  # the key of the content's digest, the file's last entry

# The checksum hashes a tensor at each reference to it: for a run's checkpoint that is about the
# file's size (0.96 and 0.98 times for an SMA and an STDET + SMA run); more than 4 times is a
# crafted file (a list of a million references to one tensor would hash for hours).
_MAX_READS = 4
_MAX_DEPTH = 100  # containers nested deeper than this are crafted (ours nest fewer than 10)
_ZIP_MAGIC = b"PK\x03\x04"  # as torch.serialization._is_zipfile


def digest(content: Any) -> str:
    """The SHA-256 (hex) of ``content``: tensors (dtype, shape and bytes), numbers, strings and
    containers, in their order (a dict's keys included), each tagged with its type, so that two
    contents digest alike only if they load alike.

    Examples:
        >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.zeros(2)})
        True
        >>> digest({"w": torch.zeros(2)}) == digest({"w": torch.tensor([0.0, 1e-45])})
        False
    """
    hasher = hashlib.sha256()
    _feed(hasher, content)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        hasher.update(f"dict {len(value)};".encode())
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, list | tuple):
        hasher.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            _feed(hasher, item)
    else:  # None, bool, int, float (repr is exact), str, torch.Size, dtype
        text = repr(value)
        hasher.update(f"{type(value).__name__} {len(text)} {text};".encode())


def save(checkpoint: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` atomically (:func:`lic_dynamics.files.write_atomic`), the :func:`digest`
    of ``checkpoint`` added as its last entry, ``checksum``."""
    content = {key: value for key, value in checkpoint.items() if key != CHECKSUM}
    signed = {**content, CHECKSUM: digest(content)}
    write_atomic(path, lambda file: torch.save(signed, file))


def load(
    path: str | Path,
    *,
    parameter: str = "checkpoint",
    check: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """A checkpoint file, on the CPU, read with ``torch.load(weights_only=True)``: tensors,
    numbers, strings and containers only, so that a file from elsewhere never runs code.

    Before any tensor is read, :func:`read_layout` checks the sizes the file declares, a
    checkpoint of ours is checked against the architecture its configuration builds (on the
    ``meta`` device), and ``check`` (if given) is called with the layout (tensors on the ``meta``
    device) to refuse a file by raising. A file :func:`save` wrote is returned without its
    ``checksum`` once that matches the content. Raises ``ValueError`` (one line naming the file)
    when it is missing, truncated, not a torch file, would need code to load, declares more than
    it holds, is not a dict, is damaged (the checksum differs, or a ``lic-train fit`` checkpoint
    has none) or holds weights its own configuration does not build.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidValue(parameter, f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise InvalidValue(parameter, f"{path}: no such file")
    layout = read_layout(path, parameter=parameter)
    if is_ours(layout):
        check_own_architecture(layout, path, parameter=parameter)
    if check is not None:
        check(layout)
    with _refused(path, parameter):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return verified(checkpoint, path, parameter=parameter)


@contextlib.contextmanager
def _refused(path: Path, parameter: str) -> Iterator[None]:
    """Whatever reading ``path`` raises, as one ``InvalidValue`` line naming the file."""
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes: the error below says it
            warnings.simplefilter("ignore", UserWarning)
            yield
    except InvalidValue:
        raise
    except pickle.UnpicklingError as error:
        # torch's message is a paragraph; its reason follows "WeightsUnpickler error:".
        after = str(error).split("WeightsUnpickler error:")[-1].strip()
        reason = after.splitlines()[0] if after else type(error).__name__
        raise InvalidValue(
            parameter,
            f"{path}: refused, loading it would run code or build objects other than "
            f"tensors and plain data ({reason})",
        ) from None
    except Exception as error:  # whatever a foreign file makes the unpickler raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidValue(
            parameter, f"{path}: truncated or not a torch checkpoint ({reason})"
        ) from None


def read_layout(path: str | Path, *, parameter: str = "checkpoint") -> dict[str, Any]:
    """The content of the torch file ``path`` with every tensor on the ``meta`` device (its
    shape, stride and dtype; no data read, nothing allocated), once the sizes it declares are
    known to fit in it: the zip format (torch >= 1.6) and the legacy one. Its pickle is read by
    :class:`_Layout` under the rules of ``torch.load(weights_only=True)``.

    Raises ``ValueError`` (one line naming the file) when ``torch.load(weights_only=True)``
    would refuse it, when its pickle names anything but tensors and plain data, when a storage
    (the bytes tensors view) is larger than what the file holds for it, when a tensor views
    more elements than its storage holds or reaches beyond it (a stride-0, overlapping or
    out-of-bounds view), when the checksum would read more than 4 times the file's bytes, or
    when the content is not a dict.
    """
    path = Path(path)
    with _refused(path, parameter), path.open("rb") as file:
        size = path.stat().st_size
        if file.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:  # torch.load's test of the format
            data, records = _zip_records(file, path, size, parameter)
            storages = _Storages(path, parameter, records)
            layout = _unpickle(io.BytesIO(data), storages)
        else:
            file.seek(0)
            storages = _Storages(path, parameter, None)
            layout = _legacy_layout(_Bounded(file, size), storages)
        storages.check(size)
    if not isinstance(layout, dict):
        raise InvalidValue(parameter, f"{path}: holds a {type(layout).__name__}, not a dict")
    read = _tensor_bytes(layout, {}, 0, lambda detail: _hostile(path, parameter, detail))
    if CHECKSUM in layout and read > _MAX_READS * size:
        _hostile(
            path, parameter, f"its checksum would read {read} bytes of tensors, more than "
            f"{_MAX_READS} times its {size} bytes",
        )  # fmt: skip
    return layout


def _hostile(path: Path, parameter: str, detail: str) -> NoReturn:
    raise InvalidValue(parameter, f"{path}: damaged or crafted, {detail}; refused")


class _Declared:
    """A storage a file declares: its dtype and, on the ``meta`` device, its bytes."""

    def __init__(self, dtype: torch.dtype, nbytes: int) -> None:
        self.dtype, self.untyped = dtype, torch.UntypedStorage(nbytes, device="meta")


class _Storages:
    """The storages a file declares, as ``torch.load`` makes them (the same sharing: torch's rules
    for a key met again) but on the ``meta`` device, each checked against what the file holds:
    its record in the zip format (``records``: name in the archive's folder -> bytes), the file's
    size in all in the legacy one (``records`` None)."""

    def __init__(self, path: Path, parameter: str, records: dict[str, int] | None) -> None:
        self.path, self.parameter, self.records = path, parameter, records
        self.by_key: dict[Any, _Declared] = {}
        self.first: dict[Any, int] = {}  # the bytes of each key's first storage
        self.made: list[tuple[_Declared, int]] = []  # each with its declared bytes

    def load(self, pid: Any) -> _Declared:
        """The storage of a persistent id, ``('storage', type, key, location, numel)`` (zip) or
        ``(..., numel, view)`` (legacy)."""
        legacy = self.records is None
        fields = pid[1:] if isinstance(pid, tuple) and pid[:1] == ("storage",) else ()
        if len(fields) != (5 if legacy else 4) or not isinstance(fields[0], _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:80]}")
        storage_type, key, _, numel = fields[:4]
        if legacy and fields[4] is not None:
            raise pickle.UnpicklingError("storage views (torch < 0.4) are not read")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"a storage of {numel!r} elements")
        nbytes = numel * storage_type.dtype.itemsize
        if legacy:  # torch keeps a key's first storage; for an empty one, makes another empty
            if key in self.by_key and self.first[key]:
                return self.by_key[key]
            nbytes = 0 if key in self.by_key else nbytes
        else:  # torch keeps a storage whose record holds data, and reads the record each time
            name = f"data/{key}"
            if name not in self.records:
                raise pickle.UnpicklingError(f"no record {name} for a storage")
            if nbytes > self.records[name]:
                _hostile(
                    self.path, self.parameter, f"a storage declares {nbytes} bytes and its "
                    f"record {name} holds {self.records[name]}",
                )  # fmt: skip
            if key in self.by_key and self.records[name]:
                return self.by_key[key]
        declared = _Declared(storage_type.dtype, nbytes)
        self.made.append((declared, nbytes))
        self.by_key.setdefault(key, declared)
        self.first.setdefault(key, nbytes)
        return declared

    def check(self, size: int) -> None:
        """Refuse a tensor that reaches beyond its storage, which grows it (``Tensor.set_``: on
        the CPU, ``torch.load`` would allocate what the file chose), and in the legacy format
        storages (allocated, each key's first, before their bytes are read) larger in all than
        the file's ``size`` bytes."""
        for declared, nbytes in self.made:
            if declared.untyped.nbytes() != nbytes:
                _hostile(
                    self.path, self.parameter, f"a tensor reaches {declared.untyped.nbytes()} "
                    f"bytes into a storage of {nbytes}",
                )  # fmt: skip
        total = sum(self.first.values())
        if self.records is None and total > size:
            _hostile(
                self.path, self.parameter, f"its storages declare {total} bytes, more than "
                f"its {size}",
            )  # fmt: skip


class _StorageType:
    """A storage class (``torch.FloatStorage``) as a pickle names it: its dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def __call__(self, *_: Any) -> NoReturn:  # torch would allocate what the file asks
        raise pickle.UnpicklingError(f"a storage ({self.dtype}) made by a call, not by the file")


def _meta_tensor(storage: _Declared, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor`` (and ``_v2``, whose further arguments set autograd
    flags and hooks) on the ``meta`` device: the same ``set_``, which grows a storage that the
    view reaches beyond."""
    if not isinstance(storage, _Declared):
        raise pickle.UnpicklingError("a tensor whose storage is not one of the file's")
    empty = torch.empty((0,), dtype=storage.dtype, device="meta")
    return empty.set_(storage.untyped, offset, size, stride)


def _meta_tensor_v3(
    storage: _Declared, offset: int, size: Any, stride: Any, _: Any, __: Any, dtype: Any, *___: Any
) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v3`` (dtypes without a storage class: uint16, float8...,
    over a byte storage) on the ``meta`` device."""
    if not isinstance(storage, _Declared) or not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError("a tensor whose storage is not one of the file's")
    return torch.empty((0,), dtype=dtype, device="meta").set_(storage.untyped, offset, size, stride)


def _meta_parameter(data: torch.Tensor, requires_grad: bool, *_: Any) -> torch.Tensor:
    """``torch._utils._rebuild_parameter`` on the ``meta`` device."""
    return nn.Parameter(data, requires_grad)


# What each global a checkpoint's pickle may name stands for while its layout is read. torch's
# weights_only list also calls tensor and storage constructors (torch.FloatTensor(n),
# torch.UntypedStorage(n), bytearray(n), quantized tensors), each allocating a size the file
# chooses while it is unpickled: a pickle that names one is refused, and storage classes stand
# for their dtype alone, which cannot be called (a pickle that calls one fails here, before torch
# reads it).
_STORAGE_TYPES = {
    "Double": torch.float64, "Float": torch.float32, "Half": torch.float16,
    "BFloat16": torch.bfloat16, "Long": torch.int64, "Int": torch.int32, "Short": torch.int16,
    "Char": torch.int8, "Byte": torch.uint8, "Bool": torch.bool,
    "ComplexDouble": torch.complex128, "ComplexFloat": torch.complex64,
}  # fmt: skip
_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict, ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device, ("_codecs", "encode"): codecs.encode,
    ("builtins", "set"): set, ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor"): _meta_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _meta_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _meta_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _meta_parameter,
    ("torch.storage", "UntypedStorage"): _StorageType(torch.uint8),  # under _rebuild_tensor_v3
    **{("torch", f"{kind}Storage"): _StorageType(dtype) for kind, dtype in _STORAGE_TYPES.items()},
    **{("torch", name): dtype for name, dtype in vars(torch).items()
       if isinstance(dtype, torch.dtype)},
}  # fmt: skip
# The opcodes torch.load(weights_only=True) reads: a pickle with another is refused, so that
# pickle's own Unpickler reads the layout as torch reads the content.
_OPCODES = frozenset({
    "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK",
    "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE",
    "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT",
    "BINUNICODE", "SHORT_BINSTRING", "BINPERSID", "BINGET", "LONG_BINGET", "BINPUT",
    "LONG_BINPUT", "LONG1", "PROTO", "STOP",
})  # fmt: skip


class _Layout(pickle.Unpickler):
    """pickle's Unpickler with the globals of :data:`_GLOBALS` only, its storages made by
    :class:`_Storages`: a file's content with tensors on the ``meta`` device."""

    def __init__(self, file: BinaryIO, storages: _Storages | None) -> None:
        super().__init__(file, encoding="utf-8")  # torch.load's encoding
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _GLOBALS:
            raise pickle.UnpicklingError(
                f"{module}.{name} is not a tensor, a storage or plain data"
            )
        return _GLOBALS[module, name]

    def persistent_load(self, pid: Any) -> Any:
        if self.storages is None:  # the legacy format's header pickles hold no storage
            raise pickle.UnpicklingError("a storage in a header")
        return self.storages.load(pid)


def _unpickle(file: Any, storages: _Storages | None) -> Any:
    """The next pickle of ``file`` read by :class:`_Layout`, once its opcodes are those
    ``torch.load(weights_only=True)`` reads, each global it names is in :data:`_GLOBALS` and its
    memo indices stay within it (pickle's C Unpickler sizes its memo by the largest index)."""
    start, count = file.tell(), 0
    for opcode, argument, _ in pickletools.genops(file):
        count += 1
        global_ = tuple(argument.split(" ", 1)) if opcode.name == "GLOBAL" else None
        if opcode.name not in _OPCODES or (global_ is not None and global_ not in _GLOBALS):
            what = f"{'.'.join(global_)} is" if global_ else f"the opcode {opcode.name} is"
            raise pickle.UnpicklingError(f"{what} not a tensor, a storage or plain data")
        if opcode.name in ("BINPUT", "LONG_BINPUT") and argument > count:
            raise pickle.UnpicklingError(f"memo index {argument} at opcode {count}")
    end = file.tell()
    file.seek(start)
    data = file.read(end - start)
    return _Layout(io.BytesIO(data), storages).load()


def _zip_records(
    file: BinaryIO, path: Path, size: int, parameter: str
) -> tuple[bytes, dict[str, int]]:
    """The pickle (``data.pkl``) of a zip-format file and its records' bytes (by their names in
    the archive's folder), read by Python's ``zipfile`` once that and torch's own reader (miniz)
    must read the same bytes: no two names alike but for case (miniz ignores case), no compressed
    record (its declared size could be anything; torch.save compresses none), the central
    directory where the end records say (Python's zipfile would shift every offset), and records
    that fit in the file."""
    with zipfile.ZipFile(file) as archive:
        infos = archive.infolist()
        first = infos[0].filename if infos else ""
        if "/" not in first:  # torch's reader: the first record's folder holds the others
            raise RuntimeError("not a torch zip file (no folder)")
        folder = first.split("/", 1)[0] + "/"
        names = [info.filename for info in infos]
        if len({name.lower() for name in names}) != len(names):
            _hostile(path, parameter, "two of its records have one name")
        if any(i.compress_type != zipfile.ZIP_STORED or i.compress_size != i.file_size
               for i in infos):  # fmt: skip
            _hostile(path, parameter, "a record is compressed (torch.save compresses none)")
        if archive.start_dir != _directory_start(file, size):
            _hostile(path, parameter, "its central directory is not where its end record says")
        total = sum(info.file_size for info in infos)
        if total > size:
            _hostile(path, parameter, f"its records declare {total} bytes, more than its {size}")
        records = {i.filename[len(folder) :]: i.file_size for i in infos
                   if i.filename.startswith(folder)}  # fmt: skip
        return archive.read(folder + "data.pkl"), records


def _directory_start(file: BinaryIO, size: int) -> int | None:
    """Where a zip's central directory starts as its end record says (and its zip64 end record,
    which torch writes: the two must agree, and the zip64 one must lie right before its locator,
    where Python's zipfile reads it); None when they do not."""
    tail = min(size, 22 + 0xFFFF)  # the end record and the longest comment
    file.seek(size - tail)
    data = file.read(tail)
    at = data.rfind(b"PK\x05\x06")
    if at < 0 or len(data) - at < 22:
        return None
    (start,) = struct.unpack_from("<L", data, at + 16)
    if at >= 20 and data[at - 20 : at - 16] == b"PK\x06\x07":  # the zip64 locator
        (where,) = struct.unpack_from("<Q", data, at - 12)
        if where != size - tail + at - 20 - 56:
            return None
        file.seek(where)
        record = file.read(56)
        if record[:4] != b"PK\x06\x06":
            return None
        (start64,) = struct.unpack_from("<Q", record, 48)
        if start not in (start64, 0xFFFFFFFF):
            return None
        start = start64
    return start


def _legacy_layout(file: _Bounded, storages: _Storages) -> Any:
    """The legacy format: pickles of the magic number, the protocol, the system, then the
    content (the storages' bytes follow, one after another)."""
    magic, protocol, _ = (_unpickle(file, None) for _ in range(3))
    if (magic, protocol) != (
        torch.serialization.MAGIC_NUMBER,
        torch.serialization.PROTOCOL_VERSION,
    ):
        raise RuntimeError("invalid magic number or protocol")
    return _unpickle(file, storages)


class _Bounded:
    """A file whose reads stop at its end: an unpickler reading a length the file declares
    (``read(n)`` of ``io.BufferedReader``) would allocate all ``n`` bytes first."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size = file, size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self.size - self.file.tell())
        return self.file.read(left if n is None or n < 0 else min(n, left))

    def readline(self, limit: int = -1) -> bytes:
        return self.file.readline(limit)

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, offset: int) -> int:
        return self.file.seek(offset)


def _tensor_bytes(
    value: Any, memo: dict[int, int | None], depth: int, refuse: Callable[[str], NoReturn]
) -> int:
    """The bytes :func:`digest` reads for ``value`` (a tensor's at each reference to it), once
    every tensor in it is a dense view of no more elements than its storage holds; ``refuse``
    (a detail) raises for a crafted content (a cycle, or nesting beyond :data:`_MAX_DEPTH`)."""
    if isinstance(value, torch.Tensor):
        if id(value) not in memo:
            if not value.is_meta or value.layout != torch.strided:
                refuse(f"a {value.layout} tensor on {value.device} that is not a file's storage")
            held = value.untyped_storage().nbytes()
            if value.numel() * value.element_size() > held:
                refuse(
                    f"a tensor of shape {tuple(value.shape)} views {value.numel()} elements of "
                    f"a storage of {held // value.element_size()}"
                )
            memo[id(value)] = value.numel() * value.element_size()
        return memo[id(value)] or 0
    if isinstance(value, dict):
        items: Any = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 0
    if id(value) in memo:
        if memo[id(value)] is None:
            refuse("a container that holds itself")
        return memo[id(value)] or 0
    if depth > _MAX_DEPTH:
        refuse(f"containers nested more than {_MAX_DEPTH} deep")
    memo[id(value)] = None  # being counted: met again below, it is a cycle
    total = sum(_tensor_bytes(item, memo, depth + 1, refuse) for item in items)
    memo[id(value)] = total
    return total


def verified(
    checkpoint: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> dict[str, Any]:
    """``checkpoint`` without its ``checksum``, if that is its content's :func:`digest`; a file
    without one only if it is not ours (ours always have one: a missing one was damaged)."""
    content = {key: value for key, value in checkpoint.items() if key != CHECKSUM}
    if CHECKSUM not in checkpoint:
        if is_ours(checkpoint):
            raise InvalidValue(
                parameter,
                f"{path}: damaged or written by an older lic-train (it has no checksum); refused",
            )
        return content
    try:
        intact = checkpoint[CHECKSUM] == digest(content)
    except Exception:  # a damaged entry that is not a tensor, number, string or container
        intact = False
    if not intact:
        raise InvalidValue(
            parameter,
            f"{path}: damaged, its content no longer matches the checksum it was "
            "written with; refused",
        )
    return content


def is_ours(saved: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint was written by ``lic-train fit`` (other trainers may save a
    ``config`` too: ours also has its step, random states and architecture)."""
    return isinstance(saved.get("config"), dict) and {"step", "random_states", "model"} <= set(
        saved
    )


def saved_config(
    saved: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> FitConfig:
    """The configuration of one of our checkpoints; ``ValueError`` when this version cannot read
    it (a field missing or unknown, a bad value)."""
    try:
        return FitConfig.from_dict(saved["config"])
    except (TypeError, KeyError, ValueError) as error:
        raise InvalidValue(
            parameter, f"{path}: its configuration does not load ({error})"
        ) from None


def weights_of(
    saved: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint, as ``eval_model`` finds them: under ``network``,
    ``state_dict`` or ``model_state_dict``, else the dict itself when every value is a tensor; a
    ``module.`` prefix (DataParallel) is removed. ``ValueError`` when there are none."""
    found = next((saved[key] for key in WEIGHTS_KEYS if isinstance(saved.get(key), dict)), saved)
    if not found or not all(isinstance(v, torch.Tensor) for v in found.values()):
        raise InvalidValue(
            parameter,
            f"{path}: holds no model weights (no {', '.join(WEIGHTS_KEYS)} key, and "
            "not a state dict of tensors)",
        )
    return {name.removeprefix("module."): t for name, t in found.items()}


def check_architecture(
    state_dict: dict[str, torch.Tensor],
    model: torch.nn.Module,
    path: str | Path,
    *,
    parameter: str = "checkpoint",
) -> None:
    """Raise ``ValueError`` naming the first entry that differs between the checkpoint and the
    model: a missing or unexpected key, or a parameter of another shape (another architecture, or
    other N/M). CDF buffers may differ in size: CompressAI's loader resizes them. Only names and
    shapes are read: either side may be on the ``meta`` device."""
    difference = _difference(state_dict, model)
    if difference:
        raise InvalidValue(parameter, f"{path}: another architecture ({difference})")


def _difference(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> str | None:
    """The first entry in which ``state_dict`` and ``model`` differ, in words; None if none."""
    found = {name.removeprefix("module."): t for name, t in state_dict.items()}
    keys = set(model.state_dict())
    missing, unexpected = sorted(keys - set(found)), sorted(set(found) - keys)
    if missing:
        return f"no entry {missing[0]!r}"
    if unexpected:
        return f"unexpected {unexpected[0]!r}"
    for name, p in model.named_parameters():
        held, expected = tuple(found[name].shape), tuple(p.shape)
        if held != expected:
            return f"{name!r} has shape {held}, the model expects {expected}"
    return None


def check_own_architecture(
    saved: dict[str, Any], path: str | Path, *, parameter: str = "checkpoint"
) -> None:
    """Refuse a checkpoint of ours whose weights (``state_dict``, ``raw_state_dict``) are not of
    the architecture its own configuration builds, comparing shapes with a model built on the
    ``meta`` device (no memory): a configuration edited to N = 100000 is refused before a model
    of that size is built. Only names and shapes are read (``saved`` may be a layout)."""
    from lic_train.trainer.models import build_model  # imports CompressAI

    config = saved_config(saved, path, parameter=parameter)
    described = config.model + (
        f", quality {config.quality}" if config.quality is not None else ""
    ) + (f", N={config.N}, M={config.M}" if config.N is not None else "")  # fmt: skip
    try:
        shaped = build_model(
            config.model, quality=config.quality, N=config.N, M=config.M, shapes_only=True
        )
    except Exception as error:  # a configuration the model's own code refuses
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidValue(
            parameter, f"{path}: its configuration ({described}) builds no model ({reason})"
        ) from None
    for key in ("state_dict", "raw_state_dict"):
        if key not in saved and key == "raw_state_dict":
            continue  # a run without an average has one set of weights
        weights = saved.get(key)
        if not isinstance(weights, dict) or not all(
            isinstance(t, torch.Tensor) for t in weights.values()
        ):
            raise InvalidValue(parameter, f"{path}: its {key} is not a state dict of tensors")
        difference = _difference(weights, shaped)
        if difference:
            raise InvalidValue(
                parameter,
                f"{path}: its {key} is another architecture than its own configuration "
                f"({described}) builds ({difference}); damaged or edited, refused",
            )


def run_checkpoint(target: str | Path) -> Path:
    """A checkpoint file, or a run folder's best checkpoint (else its latest); ``InvalidValue``
    about ``target`` for an empty path (which ``Path`` would read as the current folder)."""
    if not str(target).strip():
        raise InvalidValue("target", "'': an empty path (give a run folder or a checkpoint file)")
    target = Path(target)
    if target.is_dir():
        best = target / BEST
        return best if best.exists() else target / LATEST
    return target


def chosen_weights(saved: dict, weights: str | None, path: Path) -> tuple[str, dict]:
    """The weights of a ``lic-train fit`` checkpoint: ``sma`` (the average, the default when the
    run has one) or ``raw``; returns the choice and the state dict."""
    has_average = "raw_state_dict" in saved
    weights = weights or ("sma" if has_average else "raw")
    if weights not in WEIGHTS:
        raise InvalidValue("weights", f"must be sma or raw, got {weights!r}")
    if weights == "sma" and not has_average:
        raise InvalidValue(
            "weights", f"sma: {path} holds no SMA average (train with --sma or --ema)"
        )
    return weights, saved["raw_state_dict"] if weights == "raw" and has_average else saved[
        "state_dict"
    ]


def model_for(
    state_dict: dict[str, torch.Tensor],
    path: str | Path,
    *,
    model: str | None,
    parameter: str = "checkpoint",
    shapes_only: bool = False,
) -> nn.Module:
    """The model of a checkpoint not written by ``lic-train fit``: architecture ``model`` (a
    CompressAI name), its widths read off the weights by CompressAI's ``from_state_dict``. The
    weights are compared with the model built on the ``meta`` device first (``state_dict`` may
    be a layout's): a model of the size the file chose is built for real (unless
    ``shapes_only``) only once every parameter has the shape the file holds."""
    from lic_train.trainer.models import current_names, from_weights  # imports CompressAI

    if model is None:
        raise InvalidValue(
            "model",
            f"missing: {path} was not written by lic-train fit, so it does not say its "
            "architecture; give it (e.g. bmshj2018-hyperprior)",
        )
    try:
        shaped = from_weights(model, state_dict, shapes_only=True)
    except InvalidValue as error:
        if error.parameter == "name":  # the name given (--model), not the file
            raise
        raise InvalidValue(parameter, f"{path}: not {model} weights ({error})") from None
    except Exception as error:  # widths the model's own code refuses
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidValue(parameter, f"{path}: not {model} weights ({reason})") from None
    check_architecture(current_names(state_dict, shaped), shaped, path, parameter=parameter)
    return shaped if shapes_only else from_weights(model, state_dict)


def load_trained(
    target: str | Path, *, weights: str | None = None, model: str | None = None
) -> tuple[str, nn.Module]:
    """The model of a run folder (its best checkpoint, else its latest) or of a checkpoint file.

    A ``lic-train fit`` checkpoint gives the SMA average (``weights="sma"``, the default when the
    run has one) or the raw weights; any other CompressAI checkpoint gives its weights, in the
    architecture ``model``. Returns a name for reports (``ARCH-WEIGHTS``) and the model on the CPU.
    Errors about the file name the parameter ``target``; every check of the architecture is made
    before the file's tensors are read and before the model is built.
    """
    from lic_train.trainer.models import build_model  # imports CompressAI

    path, where = run_checkpoint(target), {"parameter": "target"}

    def fits(layout: dict[str, Any]) -> None:
        if is_ours(layout):
            config = saved_config(layout, path, **where)
            if model is not None and model != config.model:
                raise InvalidValue("model", f"{model}: {path} holds a {config.model} model")
            chosen_weights(layout, weights, path)
        elif weights == "sma":
            raise InvalidValue("weights", f"sma: {path} was not written by lic-train fit")
        else:
            model_for(weights_of(layout, path, **where), path, model=model, shapes_only=True,
                      **where)  # fmt: skip

    saved = load(path, check=fits, **where)
    if not is_ours(saved):
        state_dict = weights_of(saved, path, **where)
        built = model_for(state_dict, path, model=model, **where)
        built.load_state_dict(state_dict)  # CompressAI's loader renames older names itself
        return f"{model}-checkpoint", built
    config = saved_config(saved, path, **where)
    weights, state_dict = chosen_weights(saved, weights, path)
    built = build_model(config.model, quality=config.quality, N=config.N, M=config.M)
    check_architecture(state_dict, built, path, **where)
    built.load_state_dict(state_dict)
    return f"{config.model}-{weights}", built


def export(target: str | Path, out: str | Path, *, weights: str | None = None) -> tuple[str, dict]:
    """Write the ``weights`` (``sma`` or ``raw``; default: the recommended ones) of a run or
    ``lic-train fit`` checkpoint to ``out`` as CompressAI's ``examples/train.py`` writes its
    checkpoints (:data:`COMPRESSAI_KEYS` only): ``eval_model -p``, ``update_model`` and
    ``train.py --checkpoint`` take it. ``loss`` is the validation loss of those weights. The
    source's weights are checked against the architecture its configuration builds
    (:func:`load`), so the file written holds weights of that architecture; a source edited to
    say other widths is refused. Returns the choice and the dict written."""
    path, out = run_checkpoint(target), Path(out)
    if out.is_dir():
        raise InvalidValue(
            "out", f"{out}: a folder; give the file to write (e.g. {out / 'model.pth.tar'})"
        )
    if out.exists() and (out.resolve() == path.resolve() or out.name in (LATEST, BEST)):
        raise InvalidValue(
            "out", f"{out}: a run's own checkpoint (its resume needs it); write another file"
        )
    try:
        check_folder(out.parent, "out")  # before reading a large checkpoint
    except InvalidValue as error:
        raise InvalidValue("out", f"{out}: cannot be written there ({error.detail})") from None

    def choosable(layout: dict[str, Any]) -> None:  # before the tensors are read
        if not is_ours(layout):
            raise InvalidValue(
                "target", f"{path}: not written by lic-train fit (nothing to choose from)"
            )
        chosen_weights(layout, weights, path)

    saved = load(path, parameter="target", check=choosable)
    weights, state_dict = chosen_weights(saved, weights, path)
    final = saved.get("final", {}).get(weights, {})
    exported = {
        **{key: saved[key] for key in COMPRESSAI_KEYS},
        "state_dict": state_dict,
        "loss": final.get("loss", saved["loss"]),
    }
    try:
        save(exported, out)
    except OSError as error:
        raise InvalidValue("out", f"{out}: cannot be written ({error.strerror or error})") from None
    return weights, exported
