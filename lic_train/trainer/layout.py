"""A torch file's layout: its content with every tensor on the ``meta`` device (shape, stride,
dtype; no data read, nothing allocated), read once the sizes the file declares are known to fit in
it, so that a checkpoint's word on its own sizes is checked before it is trusted
(:mod:`lic_train.trainer.checkpoint` reads the content only after :func:`read_layout`).

The pickle is read by pickle's own Unpickler under the rules of ``torch.load(weights_only=True)``
(its opcodes, its globals) with each global standing for a builder of ``meta`` tensors; what that
list would call to allocate a size the file chooses (``torch.FloatTensor(n)``, ``bytearray(n)``)
is refused. Both formats are read: the zip one (torch >= 1.6; no compressed or ambiguous record)
and the legacy one.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
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

from lic_dynamics.validation import InvalidValue

# The checksum hashes a tensor at each reference to it: for a run's checkpoint that is about the
# file's size (0.96 and 0.98 times for an SMA and an STDET + SMA run); more than 4 times is a
# crafted file (a list of a million references to one tensor would hash for hours).
_MAX_READS = 4
_MAX_DEPTH = 100  # containers nested deeper than this are crafted (ours nest fewer than 10)
_ZIP_MAGIC = b"PK\x03\x04"  # as torch.serialization._is_zipfile


@contextlib.contextmanager
def refused(path: Path, parameter: str) -> Iterator[None]:
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


def read_layout(
    path: str | Path, *, parameter: str = "checkpoint", checksum_key: str | None = None
) -> dict[str, Any]:
    """The content of the torch file ``path`` with every tensor on the ``meta`` device (its
    shape, stride and dtype; no data read, nothing allocated), once the sizes it declares are
    known to fit in it: the zip format (torch >= 1.6) and the legacy one. Its pickle is read by
    :class:`_Layout` under the rules of ``torch.load(weights_only=True)``.

    Raises ``ValueError`` (one line naming the file) when ``torch.load(weights_only=True)``
    would refuse it, when its pickle names anything but tensors and plain data, when a storage
    (the bytes tensors view) is larger than what the file holds for it, when a tensor views
    more elements than its storage holds or reaches beyond it (a stride-0, overlapping or
    out-of-bounds view), when a checksum under ``checksum_key`` would make its verification read
    more than 4 times the file's bytes, or when the content is not a dict.
    """
    path = Path(path)
    with refused(path, parameter), path.open("rb") as file:
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
    if checksum_key in layout and read > _MAX_READS * size:
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
