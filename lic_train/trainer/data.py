"""Training and test images for the trainer: the built-in photographs, any folder of images, and
reproducible patches (CompressAI's ``examples/train.py`` and ``ImageFolder``; docs/trainer.md).

* **Images** are ``(3, H, W)`` float32 tensors in [0, 1], whatever the file held: grayscale is
  repeated to three channels, alpha is dropped, 16-bit files keep their precision.
* **The built-in set** (``data=None``) is the nine photographs that ship inside scikit-image and
  matplotlib, so the trainer runs on machines that cannot download a data set.
* **A folder** is read as CompressAI's ``ImageFolder`` reads it (``train/`` and ``test/``), or, when
  it has neither, split by a fixed rule (:func:`find_images`).
* **Patches** follow CompressAI's ``examples/train.py``: random crops for training, centre crops for
  testing, of ``patch_size = (height, width)`` like its ``--patch-size``. A side smaller than the
  patch is reflect-padded first (torchvision's ``RandomCrop(pad_if_needed=True,
  padding_mode="reflect")``). Unlike torchvision, a training crop is a pure function of
  ``(seed, epoch, index)``, so that a resumed run, any number of DataLoader workers and every DDP
  rank see the same crops (:class:`PatchDataset`).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import numbers
import os
import signal
import stat
import struct
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from lic_dynamics import validation
from lic_dynamics.validation import InvalidValue

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MIN_PATCH = 16

# Every built-in photograph, in a fixed order (sizes as H x W). scikit-image 0.26: astronaut 512x512,
# chelsea 300x451, coffee 400x600, rocket 427x640, hubble_deep_field 872x1000, retina 1411x1411,
# motorcycle_left/right 500x741; matplotlib: grace_hopper 600x512. All public domain or CC0.
_BUILTIN = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "grace_hopper",
)
# The stereo pair shows one scene from two viewpoints: both stay on the training side, since testing
# on one half of a pair trained on the other would measure memory, not compression.
BUILTIN_TEST: tuple[str, ...] = ("grace_hopper", "coffee")
BUILTIN_TRAIN: tuple[str, ...] = tuple(name for name in _BUILTIN if name not in BUILTIN_TEST)

# PIL raises any of these on a file it cannot decode (truncated, corrupt, not an image, too large).
_PIL_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)
_EXIF_ORIENTATION = 0x0112


class SkippedImage(UserWarning):
    """An image file left out (unreadable, too small for the patch, not a regular file), or a
    sub-folder of the data that cannot be read; the message names the file or folder and why."""


def builtin_images() -> dict[str, torch.Tensor]:
    """Every built-in photograph, by name (:data:`BUILTIN_TRAIN` + :data:`BUILTIN_TEST`), as a
    ``(3, H, W)`` float32 tensor in [0, 1].

    scikit-image's astronaut, chelsea, coffee, rocket, hubble_deep_field, retina and the two halves
    of ``stereo_motorcycle()`` (``motorcycle_left``, ``motorcycle_right``), and matplotlib's
    ``grace_hopper.jpg``. Both packages bundle these files, so nothing is downloaded
    (``skimage.data.data_dir``, the download cache, is never used). Each call builds new tensors.

    The fixed split: :data:`BUILTIN_TEST` = grace_hopper and coffee, every other image trains (the
    stereo pair stays together on the training side, as it is one scene).
    """
    try:
        import skimage.data
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the built-in images need scikit-image: install the train extra, pip install -e ".[train]"'
        ) from error
    from matplotlib import cbook

    left, right, _disparity = skimage.data.stereo_motorcycle()
    arrays = {
        "astronaut": skimage.data.astronaut(),
        "chelsea": skimage.data.chelsea(),
        "coffee": skimage.data.coffee(),
        "rocket": skimage.data.rocket(),
        "hubble_deep_field": skimage.data.hubble_deep_field(),
        "retina": skimage.data.retina(),
        "motorcycle_left": left,
        "motorcycle_right": right,
    }
    images = {name: to_tensor(array) for name, array in arrays.items()}
    images["grace_hopper"] = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {name: images[name] for name in _BUILTIN}


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """A ``(3, H, W)`` float32 tensor in [0, 1] (a new one, never sharing the array's memory).

    Args:
        array: ``(H, W)`` or ``(H, W, 1)`` grayscale (repeated to three channels), ``(H, W, 2)``
            grayscale + alpha (the gray channel is kept), ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (the
            RGB channels are kept as stored; alpha is dropped, not composited onto a background).
            dtype uint8 (divided by 255), uint16 of either byte order (divided by 65535), bool
            (False -> 0, True -> 1) or floating (finite, clipped to [0, 1]).

    Raises:
        ValueError: any other shape or dtype, an empty image, or non-finite floats.
    """
    if not isinstance(array, np.ndarray):
        raise ValueError(f"array must be a numpy array, got {type(array).__name__}")
    shape = array.shape
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 2, 3, 4))):
        raise ValueError(
            "array must have shape (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4), "
            f"got shape {shape}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"array must hold at least one pixel, got shape {shape}")
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "u" and size in (1, 2):
        # float32 division by 255 or 65535 is correctly rounded: 257 / 65535 == 1 / 255 exactly.
        values = array.astype(np.float32) / np.float32(255 if size == 1 else 65535)
    elif kind == "b":
        values = array.astype(np.float32)
    elif kind == "f":
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ValueError("array must hold finite values, got NaN or infinity")
        np.clip(values, 0.0, 1.0, out=values)
    else:
        raise ValueError(f"array dtype must be uint8, uint16, bool or floating, got {array.dtype}")
    if values.ndim == 2:
        values = values[:, :, None]
    if values.shape[2] == 2:
        values = values[:, :, :1]
    elif values.shape[2] == 4:
        values = values[:, :, :3]
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))


def _pil_array(image: Image.Image) -> np.ndarray:
    """The pixels of a PIL image as an array :func:`to_tensor` takes, at the file's precision."""
    mode = image.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA") or mode.startswith("I;16"):
        return np.asarray(image)  # bool, uint8 or uint16 (I;16B gives big-endian uint16)
    if mode == "I":
        # 32-bit integers: what older Pillow versions (and TIFF) give 16-bit grayscale.
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError("32-bit integer pixels outside [0, 65535]")
        return values.astype(np.uint16)
    if mode == "F":
        return np.asarray(image)
    # Palette images may carry transparency, which PIL refuses to drop silently: go through RGBA.
    return np.asarray(image.convert("RGBA" if mode in ("P", "PA") else "RGB"))


def read_image(path: str | Path) -> torch.Tensor:
    """One image file as a ``(3, H, W)`` float32 tensor in [0, 1] (see :func:`to_tensor`).

    Read with PIL and turned upright by its EXIF orientation. 16-bit grayscale files (PIL modes
    ``I;16*`` and ``I``) keep their 16 bits, as the conversion goes through numpy, not PIL's 8-bit
    ``convert``; note that PIL itself reads 16-bit RGB PNGs as 8-bit RGB. Palette, CMYK, YCbCr and
    other modes become RGB; 32-bit float (``F``) pixels are clipped to [0, 1].

    Raises:
        ValueError: ``"{path}: not a readable image ({reason})"`` on anything PIL cannot open or
            decode, and on pixels :func:`to_tensor` rejects.
    """
    return to_tensor(read_array(path))


def read_array(path: str | Path) -> np.ndarray:
    """The pixels of one image file at the file's precision, upright (EXIF orientation), as
    :func:`to_tensor` takes them: what :func:`read_image` converts, for cropping before the
    conversion to float32.

    Raises:
        ValueError: ``"{path}: not a readable image ({reason})"``, as :func:`read_image`.
    """
    with _opened(path) as image:
        return _pil_array(ImageOps.exif_transpose(image))


def read_crop(
    path: str | Path, box: Callable[[int, int], tuple[int, int, int, int]]
) -> tuple[np.ndarray, tuple[int, int]]:
    """The pixels of one box of an image file, upright, at the file's precision (as
    :func:`read_array` gives them, cropped), and the whole image's ``(height, width)``.

    ``box(height, width)`` returns ``(top, left, bottom, right)`` (bottom and right exclusive,
    within the image); what it raises passes through. The file is decoded once and only the box is
    converted to an array, so a patch costs a decode, not a conversion of the whole image.

    Raises:
        ValueError: ``"{path}: not a readable image ({reason})"``, as :func:`read_image`.
    """
    try:
        with _opened(path) as image:
            # exif_transpose copies even an upright image: call it only for a real rotation.
            turned = image.getexif().get(_EXIF_ORIENTATION, 1) not in (0, 1)
            upright = ImageOps.exif_transpose(image) if turned else image
            width, height = upright.size
            top, left, bottom, right = _box_outside(box, height, width)
            return _pil_array(upright.crop((left, top, right, bottom))), (height, width)
    except _BoxError as error:
        raise error.cause from None


class _BoxError(Exception):
    """Carries an error of the caller's ``box`` past :func:`read_crop`'s PIL error handling."""

    def __init__(self, cause: Exception) -> None:
        self.cause = cause


def _box_outside(
    box: Callable[[int, int], tuple[int, int, int, int]], height: int, width: int
) -> tuple[int, int, int, int]:
    try:
        return box(height, width)
    except Exception as error:  # re-raised unchanged by read_crop
        raise _BoxError(error) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, upright, from its header alone (nothing is decoded).

    The EXIF orientation turns the size as :func:`read_array` would (orientations 5 to 8 swap
    it). PIL already reports a TIFF's size upright. A PNG's orientation is read only from an
    ``eXIf`` chunk before the pixels (asking PIL for a later one would decode the image).

    Raises:
        ValueError: ``"{path}: not a readable image ({reason})"`` when PIL cannot open it.
    """
    with _opened(path) as image:
        width, height = image.size
        if image.format == "TIFF":
            return height, width
        if image.format == "PNG":
            exif = Image.Exif()
            if "exif" in image.info:
                exif.load(image.info["exif"])
        else:
            exif = image.getexif()
        # EXIF orientations 5 to 8 turn the image by 90 degrees (PIL's exif_transpose).
        if exif.get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
            height, width = width, height
        return height, width


class _NotRegular(OSError):
    """A path that is not a regular file (a FIFO, a device, ...): never opened, or not read."""


def _check_regular(path: str | Path) -> None:
    """Raise :class:`_NotRegular` unless ``path`` is a regular file after following links; an
    ``OSError`` when it cannot be looked at. Nothing is opened: opening a device can act (a
    watchdog starts, a tape rewinds), and opening a FIFO waits for a writer."""
    kind = _kind(os.stat(path).st_mode)
    if kind is not None:
        raise _NotRegular(f"{kind[0]}, not a regular file")


# O_NONBLOCK: a FIFO put in the file's place after the check opens at once instead of waiting for a
# writer (fstat then refuses it). O_NOCTTY: a terminal never becomes this process's.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _open_regular(path: str | Path) -> BinaryIO:
    """``path`` opened for reading, refused with :class:`_NotRegular` unless it is a regular file,
    both before opening it (:func:`_check_regular`) and once open, since the path may have been
    replaced in between: no read ever waits on a FIFO, socket or device."""
    _check_regular(path)
    descriptor = os.open(path, _OPEN_FLAGS)
    try:
        kind = _kind(os.fstat(descriptor).st_mode)
        if kind is not None:
            raise _NotRegular(f"{kind[0]}, not a regular file")
        if _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(descriptor, True)  # a regular file: ordinary reads from here on
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


@contextlib.contextmanager
def _opened(path: str | Path) -> Iterator[Image.Image]:
    """The image file at ``path`` opened by PIL (:func:`_open_regular`), for the block's reading.

    PIL's warnings while it reads (a "decompression bomb" over ``Image.MAX_IMAGE_PIXELS``, corrupt
    EXIF data) name no file: each is given again, once per process, prefixed with the path.

    Raises:
        ValueError: ``"{path}: not a readable image ({reason})"`` on anything PIL raises while
            opening or decoding (and on a path that is not a regular file).
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _open_regular(path) as file, Image.open(file) as image:
                yield image
    except _PIL_ERRORS as error:
        raise ValueError(f"{path}: not a readable image ({_reason(error)})") from error
    finally:
        for warning in caught:
            message = " ".join(str(warning.message).split())
            _warn_once(f"{path}: {message}", warning.category)


def _reason(error: BaseException) -> str:
    """Why a file is not a readable image, in one line, without repeating its path."""
    if isinstance(error, _NotRegular):
        return str(error)
    if isinstance(error, UnidentifiedImageError):
        # PIL names the file object it was given, not the path, which the message starts with.
        return "UnidentifiedImageError: not an image format PIL can read"
    if isinstance(error, OSError) and error.strerror:
        return f"{type(error).__name__}: {error.strerror}"
    return _one_line(error)


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _patch_size(patch_size: object) -> tuple[int, int]:
    """``patch_size`` as ``(height, width)``, two integers >= 16; else raise."""
    if (
        isinstance(patch_size, Sequence)
        and not isinstance(patch_size, str)
        and len(patch_size) == 2
        and all(
            isinstance(side, numbers.Integral) and not isinstance(side, bool) and side >= MIN_PATCH
            for side in patch_size
        )
    ):
        return int(patch_size[0]), int(patch_size[1])
    raise ValueError(
        f"patch_size must be two integers >= {MIN_PATCH} (height, width), got {patch_size!r}"
    )


def _pads(size: int, patch: int) -> tuple[int, int]:
    """Reflect padding (before, after) that brings ``size`` up to ``patch``: split evenly, the odd
    pixel at the end."""
    total = max(0, patch - size)
    return total // 2, total - total // 2


def _min_side(patch: int) -> int:
    """The smallest side that can be reflect-padded to ``patch``.

    torch's reflect padding needs each pad < size. The larger pad is ``ceil((patch - size) / 2)``,
    and ``ceil(x / 2) <= size - 1`` is ``x <= 2 size - 2``, so the condition is
    ``3 size >= patch + 2``, i.e. ``size >= ceil((patch + 2) / 3)``.
    """
    return (patch + 4) // 3


def fits(shape: Sequence[int], patch_size: tuple[int, int]) -> bool:
    """Whether an image of ``shape`` (..., H, W) can be reflect-padded to ``patch_size``."""
    return shape[-2] >= _min_side(patch_size[0]) and shape[-1] >= _min_side(patch_size[1])


def _too_small(shape: Sequence[int], patch_size: tuple[int, int]) -> str:
    """Why an image of ``shape`` (..., H, W) cannot be reflect-padded to ``patch_size``."""
    (height, width), (patch_h, patch_w) = shape[-2:], patch_size
    return (
        f"{height}x{width} (HxW) is too small to be reflect-padded to the {patch_h}x{patch_w} "
        f"patch (needs at least {_min_side(patch_h)}x{_min_side(patch_w)})"
    )


def _image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, symbolic links followed once), sorted by
    relative path; hidden files and folders (name starting with ".") are left out, so that
    ``._photo.jpg`` (macOS metadata) and ``.ipynb_checkpoints`` are not mistaken for images.

    Only regular files are images: a FIFO, socket or device with an image suffix (after following
    links), or a broken link, would block or fail its reader, so each folder's are left out with
    one :class:`SkippedImage` warning; so is a sub-folder that cannot be read, named in its own.
    Nothing is opened: types come from the directory entries (``stat`` where they do not say).
    """
    found: list[Path] = []
    visited: set[str] = set()
    pending = [str(folder)]
    while pending:
        directory = pending.pop()
        real = os.path.realpath(directory)
        if real in visited:  # a link back up the tree: do not loop
            continue
        visited.add(real)
        entries = _entries(directory)
        if entries is None:
            continue
        special: list[tuple[str, str]] = []  # (name, kind) of each non-regular image entry
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if _is_folder(entry):
                folders.append(entry.path)
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                kind = _not_regular(entry)
                if kind is None:
                    found.append(Path(entry.path))
                else:
                    special.append((entry.name, kind))
        if special:
            _warn_once(_special_entries(directory, special), SkippedImage)
        pending.extend(reversed(folders))  # depth first, in name order
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def _entries(directory: str) -> list[os.DirEntry] | None:
    """The entries of ``directory`` sorted by name, or None, with a :class:`SkippedImage` warning
    naming it, when it cannot be listed or searched."""
    # Listing a folder needs read permission, and looking at its entries search (x) permission.
    if not os.access(directory, os.X_OK):
        _warn_once(f"{directory}: a folder that cannot be read (permission denied); skipped")
        return None
    try:
        with os.scandir(directory) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except OSError as error:
        _warn_once(f"{directory}: a folder that cannot be read ({_why(error)}); skipped")
        return None


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links, as os.walk(followlinks=True)
    except OSError:  # e.g. a link into a folder this process cannot search: not a folder
        return False


# What a non-regular file is, (singular, plural), by its stat mode.
_KINDS = (
    (stat.S_ISFIFO, ("a FIFO", "FIFOs")),
    (stat.S_ISSOCK, ("a socket", "sockets")),
    (stat.S_ISCHR, ("a character device", "character devices")),
    (stat.S_ISBLK, ("a block device", "block devices")),
    (stat.S_ISDIR, ("a folder", "folders")),
)
_BROKEN_LINK = ("a broken link", "broken links")
_NO_STAT = ("an entry that cannot be read", "entries that cannot be read")
_OTHER = ("a special file", "special files")


def _kind(mode: int) -> tuple[str, str] | None:
    """What a file of ``stat`` mode ``mode`` is, (singular, plural); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((names for test, names in _KINDS if test(mode)), _OTHER)


def _not_regular(entry: os.DirEntry) -> tuple[str, str] | None:
    """What ``entry`` is when, after following links, it is not a regular file; else None."""
    try:
        if entry.is_file():  # the entry's type (no system call), or stat for a link
            return None
        return _kind(os.stat(entry.path).st_mode)
    except OSError:
        return _BROKEN_LINK if entry.is_symlink() else _NO_STAT


def _special_entries(directory: str, special: Sequence[tuple[str, tuple[str, str]]]) -> str:
    """The one warning for the non-regular image entries of ``directory``: the path itself for
    one, else how many of each kind and the first name."""
    if len(special) == 1:
        name, (kind, _plural) = special[0]
        return f"{os.path.join(directory, name)}: not a regular file ({kind}); skipped"
    counts: dict[tuple[str, str], int] = {}
    for _name, kind in special:
        counts[kind] = counts.get(kind, 0) + 1
    kinds = ", ".join(one if n == 1 else f"{n} {many}" for (one, many), n in counts.items())
    return (
        f"{directory}: {len(special)} entries are not regular files ({kinds}; the first: "
        f"{special[0][0]}); skipped"
    )


def _why(error: OSError) -> str:
    """An OS error's reason, lower case, as the module's messages give it."""
    reason = error.strerror or _one_line(error)
    return reason[:1].lower() + reason[1:]


# Warnings given in this process: each once, though the data is listed once per use (--epochs
# lists it twice) and a file is read each epoch.
_WARNED: set[tuple[str, type[Warning]]] = set()


def _warn_once(message: str, category: type[Warning] | None = None) -> None:
    """``warnings.warn(message, category)`` (:class:`SkippedImage` by default), unless this
    process already gave it; the module's own record, since Python's is reset whenever a
    ``warnings.catch_warnings`` block ends."""
    key = (message, category or SkippedImage)
    if key not in _WARNED:
        warnings.warn(message, key[1], stacklevel=3)
        _WARNED.add(key)


@dataclass(frozen=True)
class Images:
    """The images of one split, named and not yet decoded.

    Attributes:
        names: each image's name for reports: its path relative to the folder it was found in
            (``/``-separated), or a built-in photograph's name.
        sources: a file path (decoded when an item is read) or a ``(3, H, W)`` float32 tensor
            (the built-in photographs, already in memory), one per name.
        where: where the images come from, for messages: their folder, or the built-in set.
        parameter: the parameter that named the folder (``data``, ``test_data``), which errors
            about these images name (:class:`~lic_dynamics.validation.InvalidValue`); None for
            the built-in set.
    """

    names: tuple[str, ...]
    sources: tuple[str | torch.Tensor, ...]
    where: str
    parameter: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, keep: Sequence[int]) -> Images:
        return replace(
            self,
            names=tuple(self.names[i] for i in keep),
            sources=tuple(self.sources[i] for i in keep),
        )

    def error(self, detail: str) -> ValueError:
        """An error about these images: ``WHERE: detail``, about their parameter if any."""
        if self.parameter is None:
            return ValueError(f"{self.where}: {detail}")
        return InvalidValue(self.parameter, f"{self.where}: {detail}")


def _folder(data: str | Path, parameter: str) -> Path:
    """``data`` as an existing folder, else raise ``InvalidValue`` about ``parameter``."""
    root = Path(data)
    if not str(data):
        raise InvalidValue(parameter, "'': an empty path (give a folder)")
    if not root.exists():
        raise InvalidValue(parameter, f"{root}: no such folder")
    if not root.is_dir():
        raise InvalidValue(parameter, f"{root}: not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise InvalidValue(parameter, f"{root}: not readable (permission denied)")
    return root


def _listed(folder: Path, parameter: str) -> Images:
    """Every image file under ``folder`` (:func:`_image_files`), none decoded; raise
    ``InvalidValue`` about ``parameter`` when there is none, or when ``folder`` (a ``train/`` or
    ``test/`` too) cannot be read."""
    files = _image_files(_folder(folder, parameter))
    if not files:
        raise InvalidValue(parameter, f"{folder}: no image files ({' '.join(IMAGE_SUFFIXES)})")
    names = tuple(path.relative_to(folder).as_posix() for path in files)
    return Images(names, tuple(str(path) for path in files), str(folder), parameter)


def find_images(
    data: str | Path | None, test_data: str | Path | None = None
) -> tuple[Images, Images]:
    """The (train, test) images of a run, listed without decoding anything (so that a folder of
    any size costs only its listing).

    Layouts:

    * ``data=None``: the built-in photographs (:func:`builtin_images`; split
      :data:`BUILTIN_TRAIN` / :data:`BUILTIN_TEST`).
    * ``data`` with ``train/`` and ``test/`` subfolders: the images under each (the layout of
      CompressAI's ``ImageFolder``).
    * ``data`` with neither: its images, sorted by relative path, split by a fixed rule: every
      5th (indices 4, 9, 14, ...) tests, the rest train; with 2 to 4 images the last one tests; a
      single image is used for both (with a ``UserWarning``, as its test score is then a training
      score). The rule counts image files, readable or not (nothing is decoded to decide it).
    * ``test_data`` given: it holds the test images (all the images under it), and the training
      images are those under ``data/train/`` when it exists, else every image under ``data``
      (the built-in training photographs when ``data`` is None): e.g. COCO to train, Kodak to test.

    Images are found recursively, by suffix (:data:`IMAGE_SUFFIXES`, any case), hidden files and
    folders left out, named by their path relative to the folder they were found in, in sorted
    order. Only regular files are images: FIFOs, sockets, devices and broken links are left out,
    and so are sub-folders that cannot be read, with a :class:`SkippedImage` warning per folder
    (:func:`_image_files`). Unreadable and too-small files are found when they are first read
    (:class:`PatchDataset`).

    Raises:
        ValueError: a folder that does not exist, is not a folder or cannot be read; only one of
            ``train/`` and ``test/``; a split without image files. An ``InvalidValue`` about
            ``data`` or ``test_data``.
    """
    if data is None:
        images = builtin_images()
        builtin = "the built-in photographs"
        train = Images(BUILTIN_TRAIN, tuple(images[n] for n in BUILTIN_TRAIN), builtin)
        test = Images(BUILTIN_TEST, tuple(images[n] for n in BUILTIN_TEST), builtin)
        if test_data is not None:
            test = _listed(_folder(test_data, "test_data"), "test_data")
        return train, test
    root = _folder(data, "data")
    train_dir, test_dir = root / "train", root / "test"
    if test_data is not None:
        test = _listed(_folder(test_data, "test_data"), "test_data")
        return _listed(train_dir if train_dir.is_dir() else root, "data"), test
    if train_dir.is_dir() != test_dir.is_dir():
        has, lacks = ("train", "test") if train_dir.is_dir() else ("test", "train")
        raise InvalidValue("data", f"{root}: has a {has}/ folder but no {lacks}/ folder")
    if train_dir.is_dir():
        return _listed(train_dir, "data"), _listed(test_dir, "data")
    images = _listed(root, "data")
    if len(images) == 1:
        warnings.warn(
            f"{root}: a single image, {images.names[0]}, used both to train and to test",
            UserWarning,
            stacklevel=2,
        )
    train, test = _split(list(range(len(images))))
    return images.subset(train), images.subset(test)


def validation_images(test: Images, patch_size: tuple[int, int]) -> Images:
    """The test images that validate on centre crops of ``patch_size``: each file's header is
    read (not its pixels); unreadable files are left out with a :class:`SkippedImage` warning,
    and images too small to be reflect-padded to the patch are left out of validation (``eval``
    codes them whole).

    Raises:
        ValueError: no test image is left.
    """
    patch, keep, readable, unreadable = _patch_size(patch_size), [], 0, []
    for i, source in enumerate(test.sources):
        try:
            shape = tuple(source.shape) if isinstance(source, torch.Tensor) else image_size(source)
        except ValueError as error:
            unreadable.append(str(error))
            continue
        readable += 1
        if fits(shape, patch):
            keep.append(i)
    if not readable:  # one line, not a warning per file before it
        raise test.error(
            f"no readable test image ({len(test)} image files; the first: {unreadable[0]})"
        )
    for reason in unreadable:
        warnings.warn(f"{reason}; skipped", SkippedImage, stacklevel=2)
    if not keep:
        raise InvalidValue(
            "patch_size",
            f"{patch[0]} {patch[1]}: no test image of {test.where} is "
            f"large enough to validate on patches of this size (it needs "
            f"{_min_side(patch[0])}x{_min_side(patch[1])} pixels or more)",
        )
    return test.subset(keep)


def load_eval_images(data: str | Path | None) -> list[tuple[str, torch.Tensor]]:
    """The images to code for evaluation, whole: the built-in test photographs (``data=None``), the
    images under ``data/test/`` when it exists, else every image under ``data`` (as CompressAI's
    ``eval_model`` does). Unreadable files are skipped with :class:`SkippedImage`; no size limit.

    Raises:
        ValueError: ``data`` does not exist or is not a folder, or holds no readable image.
    """
    if data is None:
        images = builtin_images()
        return [(name, images[name]) for name in BUILTIN_TEST]
    root = _folder(data, "data")
    listed = _listed(root / "test" if (root / "test").is_dir() else root, "data")
    decoded, unreadable = [], []
    for name, path in zip(listed.names, listed.sources, strict=True):
        try:
            decoded.append((name, read_image(path)))
        except ValueError as error:
            unreadable.append(str(error))
    if not decoded:  # one line, not a warning per file before it
        raise InvalidValue(
            "data",
            f"{root}: no readable images ({len(listed)} image files; the first: {unreadable[0]})",
        )
    for reason in unreadable:
        warnings.warn(f"{reason}; skipped", SkippedImage, stacklevel=2)
    return decoded


def _split(items: list) -> tuple[list, list]:
    """The fixed (train, test) split of one sorted list: indices 4, 9, 14, ... test; with 2 to 4
    items the last one tests; a single item is both."""
    if len(items) == 1:
        return items, items
    if len(items) < 5:
        return items[:-1], items[-1:]
    return (
        [item for i, item in enumerate(items) if i % 5 != 4],
        [item for i, item in enumerate(items) if i % 5 == 4],
    )


class Item(NamedTuple):
    """One item of a :class:`PatchDataset`: the patch, and the files skipped to find it."""

    patch: torch.Tensor  # (C, ph, pw) float32
    skipped: tuple[str, ...]  # "{path}: {why}" for each file that could not give a patch


class NoReadableImage(InvalidValue):
    """No image of a data set can give a patch (all unreadable or too small); about the
    parameter that named the data set."""


class PatchDataset(torch.utils.data.Dataset):
    """Fixed-size patches of a list of images, decoded when an item is read: random crops (train)
    or centre crops (test).

    Item ``index`` is a patch of image ``index % len(sources)``; ``repeats`` makes an epoch visit
    every image that many times. A side shorter than the patch is first reflect-padded to it
    (split evenly, the odd pixel at the end), as ``torch.nn.functional.pad(..., mode="reflect")``
    does; the other side is cropped. A file is decoded at the file's precision and cropped before
    the conversion to float32, so an item costs one decode and a patch-sized conversion.

    Training crops are drawn by a ``torch.Generator`` seeded from ``(seed, epoch, index)`` alone
    (through ``numpy.random.SeedSequence``, not Python's salted ``hash``), never from a global
    random state: the crop of an item is the same in a resumed run, in any DataLoader worker and on
    any DDP rank, and changes from epoch to epoch. Test crops are the centre (offset
    ``(size - patch) // 2``), the same every epoch.

    **Bad files are found when read.** An image that cannot be decoded, or (for training) is too
    small to be reflect-padded to the patch (a side shorter than ``ceil((patch + 2) / 3)``), is
    replaced by the next one in order that can (wrapping around), with the same crop generator,
    and named in :attr:`Item.skipped`; the data set is never decoded up front. When no image can
    give a patch, :class:`NoReadableImage` is raised.

    The epoch is :meth:`set_epoch`'s, or comes with the index: ``dataset[(epoch, index)]``, which
    is how :class:`TrainBatches` reads, so that DataLoader workers need no epoch state (a worker
    keeps the dataset copy it started with, which :meth:`set_epoch` in the main process would not
    reach).

    Args:
        sources: file paths, or ``(C, H, W)`` floating tensors (kept without copying when float32).
        patch_size: ``(height, width)``, integers >= 16.
        train: random crops (True) or centre crops (False); keyword only.
        seed: >= 0, the crops' seed.
        repeats: >= 1, items per image per epoch.
        where: the data set's folder, for the :class:`NoReadableImage` message.
        parameter: what that message is about (``data``: ``--data`` on the command line).

    Raises:
        ValueError: a bad argument, or a tensor too small to be reflect-padded to the patch.

    Example:
        >>> import torch
        >>> patches = PatchDataset([torch.rand(3, 100, 80)], (64, 64), train=True, seed=1)
        >>> item = patches[0]
        >>> tuple(item.patch.shape), item.skipped
        ((3, 64, 64), ())
        >>> bool((patches[0].patch == item.patch).all())  # a function of (seed, epoch, index)
        True
    """

    def __init__(
        self,
        sources: Sequence[str | Path | torch.Tensor],
        patch_size: tuple[int, int],
        *,
        train: bool,
        seed: int = 0,
        repeats: int = 1,
        where: str = "the data set",
        parameter: str = "sources",
    ) -> None:
        self.patch_size = _patch_size(patch_size)
        if not isinstance(train, bool):
            raise ValueError(f"train must be True or False, got {train!r}")
        self.train = train
        self.seed = validation.integer("seed", seed, minimum=0)
        self.repeats = validation.integer("repeats", repeats, minimum=1)
        self.where, self.parameter = where, parameter
        self.epoch = 0
        if len(sources) == 0:
            raise ValueError("sources must hold at least one image, got none")
        self.sources: list[str | torch.Tensor] = []
        for i, source in enumerate(sources):
            if isinstance(source, str | Path):
                self.sources.append(str(source))
                continue
            if not isinstance(source, torch.Tensor):
                raise ValueError(
                    f"sources[{i}] must be a path or a tensor, got {type(source).__name__}"
                )
            if source.ndim != 3:
                raise ValueError(f"sources[{i}] must be (C, H, W), got shape {tuple(source.shape)}")
            if not source.is_floating_point():
                raise ValueError(f"sources[{i}] must be floating, got {source.dtype}")
            if not fits(source.shape, self.patch_size):
                raise ValueError(f"sources[{i}]: {_too_small(source.shape, self.patch_size)}")
            self.sources.append(source.float())

    def set_epoch(self, epoch: int) -> None:
        """Draw the training crops of ``epoch`` (an integer >= 0) from now on."""
        self.epoch = validation.integer("epoch", epoch, minimum=0)

    def at_epoch(self, epoch: int) -> PatchDataset:
        """This dataset drawing the crops of ``epoch`` (a shallow copy; the images are shared)."""
        if epoch == self.epoch:
            return self
        other = copy.copy(self)
        other.set_epoch(epoch)
        return other

    def __len__(self) -> int:
        return len(self.sources) * self.repeats

    def _generator(self, index: int) -> torch.Generator:
        """A generator that depends on (seed, epoch, index) only."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(state[0]))

    def __getitem__(self, index: int | tuple[int, int]) -> Item:
        """Item ``index`` (negative counts from the end) of the current epoch, or of ``epoch``
        when ``index`` is ``(epoch, index)``: a new ``(C, ph, pw)`` float32 patch and the files
        skipped to find it."""
        if isinstance(index, tuple):
            epoch, index = index
            return self.at_epoch(epoch)[index]
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index must be in [{-length}, {length}), got {index}")
        index %= length
        first, skipped = index % len(self.sources), []
        for attempt in range(len(self.sources)):
            source = self.sources[(first + attempt) % len(self.sources)]
            try:
                return Item(self._patch(source, index), tuple(skipped))
            except ValueError as error:
                skipped.append(str(error))
        raise NoReadableImage(
            self.parameter,
            f"{self.where}: none of its {len(self.sources)} images can give a "
            f"{self.patch_size[0]}x{self.patch_size[1]} patch (the first: {skipped[0]})",
        )

    def _patch(self, source: str | torch.Tensor, index: int) -> torch.Tensor:
        """The patch of item ``index`` cut from ``source``; ``ValueError`` when the file cannot
        be decoded or is too small."""
        patch_h, patch_w = self.patch_size

        def box(height: int, width: int) -> tuple[int, int, int, int]:
            """The crop, in the image before padding: the patch's box in the reflect-padded image
            (a padded side is exactly the patch, so its offset is 0), clipped to the image."""
            if not fits((height, width), self.patch_size):
                raise ValueError(f"{source}: {_too_small((height, width), self.patch_size)}")
            span_h, span_w = max(height, patch_h) - patch_h + 1, max(width, patch_w) - patch_w + 1
            if self.train:
                generator = self._generator(index)
                top = int(torch.randint(span_h, (1,), generator=generator))
                left = int(torch.randint(span_w, (1,), generator=generator))
            else:
                top, left = (span_h - 1) // 2, (span_w - 1) // 2
            return top, left, min(top + patch_h, height), min(left + patch_w, width)

        # Crop before padding: padding acts on one axis at a time, so this equals padding the
        # whole image and cropping it, without copying a large image to pad a narrow one.
        if isinstance(source, torch.Tensor):
            height, width = source.shape[-2:]
            top, left, bottom, right = box(height, width)
            patch = source[:, top:bottom, left:right]
        else:
            pixels, (height, width) = read_crop(source, box)
            patch = to_tensor(pixels)
        (pad_top, pad_bottom), (pad_left, pad_right) = _pads(height, patch_h), _pads(width, patch_w)
        if pad_top or pad_bottom or pad_left or pad_right:
            return F.pad(patch, (pad_left, pad_right, pad_top, pad_bottom), mode="reflect")
        return patch.clone(memory_format=torch.contiguous_format)  # not a view of the whole image


def collate(items: Sequence[Item]) -> Item:
    """The DataLoader's ``collate_fn`` for :class:`PatchDataset`: the ``(B, C, ph, pw)`` batch and
    every file skipped to make it."""
    return Item(
        torch.stack([item.patch for item in items]),
        tuple(note for item in items for note in item.skipped),
    )


class _Epochs(torch.utils.data.Sampler):
    """``(epoch, index)`` pairs, epoch after epoch without end, from item ``start`` on: each epoch
    is the first ``per_epoch`` indices of a ``DistributedSampler`` shuffled for that epoch (the
    rest of an epoch that does not fill a batch is dropped, as ``drop_last`` would).

    Carrying the epoch in each index keeps the dataset free of epoch state, so one DataLoader
    iterator, and its workers, serve the whole run, however small an epoch is.
    """

    def __init__(self, sampler: torch.utils.data.DistributedSampler, per_epoch: int) -> None:
        self.sampler, self.per_epoch, self.start = sampler, per_epoch, 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = divmod(self.start, self.per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            for index in itertools.islice(iter(self.sampler), skip, self.per_epoch):
                yield epoch, index
            epoch, skip = epoch + 1, 0


def _quiet_on_sigterm(worker_id: int) -> None:
    """A DataLoader worker exits with status 0 on SIGTERM. Killed by the signal, as by default,
    its death makes torch's SIGCHLD handler raise a second error in the main process, in the
    middle of the main process's own clean-up, when SIGTERM goes to the whole process group (a
    scheduler, ``kill -TERM -PGID``). Unlike ignoring it (torch's choice for SIGINT), the
    loader's ``terminate()`` of a worker that does not stop still works."""
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))


class TrainBatches:
    """The training batches of a run, from any step on: each rank's share of every epoch of
    ``images``, in the order of a ``DistributedSampler`` (shuffled by ``(seed, epoch)``,
    ``drop_last``), ``batch_size`` patches per step, decoded by ``num_workers`` DataLoader workers.

    The batch of a step depends on the step alone (and the files), whatever ``num_workers``: a
    resumed run draws exactly the batches an uninterrupted one would. One epoch is
    :func:`batches_per_epoch` steps. Files skipped while reading (:class:`PatchDataset`) are
    reported once each with a :class:`SkippedImage` warning.

    Example:
        >>> import torch
        >>> images = Images(("a", "b"), (torch.rand(3, 80, 80), torch.rand(3, 90, 70)), "two")
        >>> batches = TrainBatches(images, (64, 64), batch_size=2, seed=0)
        >>> batches.per_epoch, tuple(next(batches.from_step(0)).shape)
        (1, (2, 3, 64, 64))
    """

    def __init__(
        self, images: Images, patch_size: tuple[int, int], *, batch_size: int, seed: int,
        world: int = 1, rank: int = 0, num_workers: int = 0, pin_memory: bool = False,
    ) -> None:  # fmt: skip
        self.batch_size = validation.integer("batch_size", batch_size, minimum=1)
        images = training_images(images, patch_size)
        self.per_epoch = batches_per_epoch(len(images), batch_size, world)
        repeats = repeats_per_epoch(len(images), batch_size, world)
        self.dataset = PatchDataset(
            images.sources, patch_size, train=True, seed=seed, repeats=repeats,
            where=images.where, parameter=images.parameter or "sources",
        )  # fmt: skip
        self.sampler = _Epochs(
            torch.utils.data.DistributedSampler(
                self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                drop_last=True,
            ),
            self.per_epoch * batch_size,
        )  # fmt: skip
        self.loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=batch_size, sampler=self.sampler, num_workers=num_workers,
            collate_fn=collate, pin_memory=pin_memory, drop_last=True,
            # Its own generator for the workers' base seed: drawing it from torch's global one
            # when the loader starts would shift the training noise of a resumed run.
            generator=torch.Generator().manual_seed(seed), worker_init_fn=_quiet_on_sigterm,
        )  # fmt: skip
        self.reported: set[str] = set()

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def from_step(self, step: int) -> Iterator[torch.Tensor]:
        """The ``(batch_size, C, H, W)`` batches of optimizer steps ``step``, ``step + 1``, ...
        (counted from 0), without end."""
        self.sampler.start = step * self.batch_size
        for batch in self.loader:  # one pass without end: the workers start once
            report_skipped(batch.skipped, self.reported)
            yield batch.patch


def training_images(images: Images, patch_size: tuple[int, int], *, warn: bool = True) -> Images:
    """``images`` without the in-memory ones (the built-in photographs) too small for the patch,
    each left out with a :class:`SkippedImage` warning unless ``warn`` is False (files are
    checked when read)."""
    patch, keep = _patch_size(patch_size), []
    for i, (name, source) in enumerate(zip(images.names, images.sources, strict=True)):
        if isinstance(source, torch.Tensor) and not fits(source.shape, patch):
            if warn:
                message = f"{name}: {_too_small(source.shape, patch)}; skipped"
                warnings.warn(message, SkippedImage, stacklevel=3)
        else:
            keep.append(i)
    if not keep:
        raise InvalidValue(
            "patch_size",
            f"{patch[0]} {patch[1]}: every training image of {images.where} is too small for it",
        )
    return images.subset(keep)


def report_skipped(skipped: Sequence[str], reported: set[str]) -> None:
    """One :class:`SkippedImage` warning for each file in ``skipped`` not yet in ``reported``."""
    for note in skipped:
        if note not in reported:
            reported.add(note)
            warnings.warn(f"{note}; skipped", SkippedImage, stacklevel=3)


def validation_loader(
    images: Images, patch_size: tuple[int, int], *, batch_size: int, num_workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:  # fmt: skip
    """Centre crops of ``images`` (:func:`validation_images`), ``batch_size`` per batch, in order
    (items are :class:`Item` batches), read afresh by each pass, as CompressAI's ``train.py``
    validates: memory does not grow with the test set."""
    dataset = PatchDataset(
        images.sources, patch_size, train=False, where=images.where,
        parameter=images.parameter or "sources",
    )  # fmt: skip
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
        num_workers=min(num_workers, math.ceil(len(dataset) / batch_size)), pin_memory=pin_memory,
        generator=torch.Generator(),  # not torch's global one, which the training noise draws on
    )  # fmt: skip


def repeats_per_epoch(train_images: int, batch_size: int, world: int = 1) -> int:
    """How many times an epoch visits each training image: enough for one global batch."""
    return max(1, math.ceil(batch_size * world / train_images))


def batches_per_epoch(train_images: int, batch_size: int, world: int = 1) -> int:
    """Steps in one epoch: the training images are repeated until one epoch holds at least one
    global batch, and each rank takes ``len // world`` of them (DistributedSampler, drop_last)."""
    repeats = repeats_per_epoch(train_images, batch_size, world)
    return (train_images * repeats // world) // batch_size
