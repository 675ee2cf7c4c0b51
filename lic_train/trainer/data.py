"""Training and test images for the trainer: the built-in photographs, any folder of images, and
reproducible patches (CompressAI's ``examples/train.py`` and ``ImageFolder``; README, "The
command line").

* **Images** are ``(3, H, W)`` float32 tensors in [0, 1], whatever the file held: grayscale is
  repeated to three channels, alpha is dropped, 16-bit files keep their precision.
* **The built-in set** (``data=None``) is the nine photographs that ship inside scikit-image and
  matplotlib, so the trainer runs on machines that cannot download a data set.
* **A folder** is read as CompressAI's ``ImageFolder`` reads it (``train/`` and ``test/``), or, when
  it has neither, split by a fixed rule (:func:`load_split`).
* **Patches** follow CompressAI's ``examples/train.py``: random crops for training, centre crops for
  testing, of ``patch_size = (height, width)`` like its ``--patch-size``. A side smaller than the
  patch is reflect-padded first (torchvision's ``RandomCrop(pad_if_needed=True,
  padding_mode="reflect")``). Unlike torchvision, a training crop is a pure function of
  ``(seed, epoch, index)``, so that a resumed run, any number of DataLoader workers and every DDP
  rank see the same crops (:class:`PatchDataset`).
"""

from __future__ import annotations

import math
import numbers
import os
import struct
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from lic_dynamics import validation

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


class SkippedImage(UserWarning):
    """An image file that :func:`load_split` left out; the message names the file and why."""


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
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return to_tensor(_pil_array(upright))
    except _PIL_ERRORS as error:
        reason = " ".join(f"{type(error).__name__}: {error}".split())  # one line
        raise ValueError(f"{path}: not a readable image ({reason})") from error


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
    ``._photo.jpg`` (macOS metadata) and ``.ipynb_checkpoints`` are not mistaken for images."""
    found, visited = [], set()
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in visited:  # a link back up the tree: do not loop
            subdirectories[:] = []
            continue
        visited.add(real)
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        found.extend(
            Path(directory, name)
            for name in files
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


class _Folder:
    """The readable images under one folder, with what was skipped (:class:`SkippedImage`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        files = _image_files(folder)
        self.found = len(files)
        self.unreadable = 0
        self.images: list[tuple[str, str, torch.Tensor]] = []  # (name, path, image)
        for path in files:
            try:
                image = read_image(path)
            except ValueError as error:
                self.unreadable += 1
                warnings.warn(f"{error}; skipped", SkippedImage, stacklevel=3)  # at the caller
                continue
            self.images.append((path.relative_to(folder).as_posix(), str(path), image))

    def counts(self) -> str:
        """How many image files were found and how many could not be read."""
        if self.found == 0:
            return f"no image files ({' '.join(IMAGE_SUFFIXES)}) under {self.folder}"
        return f"{self.found} image files under {self.folder}, {self.unreadable} unreadable"


def load_split(
    data: str | Path | None, patch_size: tuple[int, int]
) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """The (train, test) images, each a list of ``(name, image)``, image ``(3, H, W)`` float32.

    Args:
        data: ``None``: the built-in photographs (:func:`builtin_images`; split
            :data:`BUILTIN_TRAIN` / :data:`BUILTIN_TEST`). A folder with ``train/`` and ``test/``
            subfolders: the images under each (the layout of CompressAI's ``ImageFolder``). A
            folder with neither: its images, sorted by relative path, split by a fixed rule: every
            5th (indices 4, 9, 14, ...) tests, the rest train; with 2 to 4 images the last one
            tests; a single image is used for both (with a ``UserWarning``, as its test score is
            then a training score). The rule counts only the images that could be read. Images
            are found recursively, by suffix (:data:`IMAGE_SUFFIXES`, any case), hidden files
            and folders left out, and named by their path relative to the folder (to ``train/``
            or ``test/`` in that layout), in sorted order.
        patch_size: ``(height, width)`` of the training crops, integers >= 16 (a hyperprior
            model also needs multiples of 64; that is the trainer's check).

    Unreadable files, and training images too small to be reflect-padded to the patch (a side
    shorter than ``ceil((patch + 2) / 3)``), are skipped with a :class:`SkippedImage` warning
    naming the file and why. Test images are kept whatever their size.

    Raises:
        ValueError: a bad ``patch_size``; ``data`` does not exist or is not a folder; only one of
            ``train/`` and ``test/`` exists; no training image is left; no test image.
    """
    patch = _patch_size(patch_size)
    if data is None:
        where = "(not given: the built-in images)"
        images = builtin_images()
        train = [(name, name, images[name]) for name in BUILTIN_TRAIN]
        test = [(name, name, images[name]) for name in BUILTIN_TEST]
        train_counts = f"{len(train)} built-in training images"
        test_counts = "no built-in test images"
    else:
        root = Path(data)
        where = str(root)
        if not root.exists():
            raise ValueError(f"--data {where}: no such folder")
        if not root.is_dir():
            raise ValueError(f"--data {where}: not a folder")
        train_dir, test_dir = root / "train", root / "test"
        if train_dir.is_dir() != test_dir.is_dir():
            has, lacks = ("train", "test") if train_dir.is_dir() else ("test", "train")
            raise ValueError(f"--data {where}: has a {has}/ folder but no {lacks}/ folder")
        if train_dir.is_dir():
            train_folder, test_folder = _Folder(train_dir), _Folder(test_dir)
            train, test = train_folder.images, test_folder.images
            train_counts, test_counts = train_folder.counts(), test_folder.counts()
        else:
            folder = _Folder(root)
            train, test = _split(folder.images)
            if len(folder.images) == 1:
                warnings.warn(
                    f"--data {where}: a single image, {folder.images[0][0]}, used both to train "
                    "and to test",
                    UserWarning,
                    stacklevel=2,
                )
            train_counts = test_counts = folder.counts()
    fitting = []
    for name, path, image in train:
        if fits(image.shape, patch):
            fitting.append((name, image))
        else:
            message = f"{path}: {_too_small(image.shape, patch)}; skipped"
            warnings.warn(message, SkippedImage, stacklevel=2)
    if not fitting:
        if train:
            train_counts += f", {len(train)} too small for the {patch[0]}x{patch[1]} patch"
        raise ValueError(f"--data {where}: no training images left ({train_counts})")
    if not test:
        raise ValueError(f"--data {where}: no test images ({test_counts})")
    return fitting, [(name, image) for name, _path, image in test]


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
    root = Path(data)
    if not root.exists():
        raise ValueError(f"--data {root}: no such folder")
    if not root.is_dir():
        raise ValueError(f"--data {root}: not a folder")
    folder = _Folder(root / "test" if (root / "test").is_dir() else root)
    if not folder.images:
        raise ValueError(f"--data {root}: no readable images ({folder.counts()})")
    return [(name, image) for name, _path, image in folder.images]


def _split(images: list) -> tuple[list, list]:
    """The fixed (train, test) split of one sorted list: indices 4, 9, 14, ... test; with 2 to 4
    items the last one tests; a single item is both."""
    if len(images) == 1:
        return images, images
    if len(images) < 5:
        return images[:-1], images[-1:]
    return (
        [item for i, item in enumerate(images) if i % 5 != 4],
        [item for i, item in enumerate(images) if i % 5 == 4],
    )


class PatchDataset(torch.utils.data.Dataset):
    """Fixed-size patches of a list of images: random crops (train) or centre crops (test).

    Item ``index`` is a patch of image ``index % len(images)``; ``repeats`` makes an epoch visit
    every image that many times. A side shorter than the patch is first reflect-padded to it
    (split evenly, the odd pixel at the end), as ``torch.nn.functional.pad(..., mode="reflect")``
    does; the other side is cropped.

    Training crops are drawn by a ``torch.Generator`` seeded from ``(seed, epoch, index)`` alone
    (through ``numpy.random.SeedSequence``, not Python's salted ``hash``), never from a global
    random state: the crop of an item is the same in a resumed run, in any DataLoader worker and on
    any DDP rank, and changes from epoch to epoch. Test crops are the centre (offset
    ``(size - patch) // 2``), the same every epoch.

    Call :meth:`set_epoch` before iterating each epoch. A DataLoader with ``persistent_workers=True``
    keeps the dataset copies its workers started with, so the epoch would not reach them: use the
    default ``persistent_workers=False`` (workers copy the dataset at each epoch's first batch).

    Args:
        images: ``(C, H, W)`` floating tensors (float32 for :func:`load_split`'s images, which are
            kept without copying), each side at least ``ceil((patch + 2) / 3)``.
        patch_size: ``(height, width)``, integers >= 16.
        train: random crops (True) or centre crops (False); keyword only.
        seed: >= 0, the crops' seed.
        repeats: >= 1, items per image per epoch.

    Raises:
        ValueError: a bad argument, or an image too small to be reflect-padded to the patch.
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        patch_size: tuple[int, int],
        *,
        train: bool,
        seed: int = 0,
        repeats: int = 1,
    ) -> None:
        self.patch_size = _patch_size(patch_size)
        if not isinstance(train, bool):
            raise ValueError(f"train must be True or False, got {train!r}")
        self.train = train
        self.seed = validation.integer("seed", seed, minimum=0)
        self.repeats = validation.integer("repeats", repeats, minimum=1)
        self.epoch = 0
        if len(images) == 0:
            raise ValueError("images must hold at least one (C, H, W) tensor, got none")
        self.images = []
        for i, image in enumerate(images):
            if not isinstance(image, torch.Tensor):
                raise ValueError(f"images[{i}] must be a tensor, got {type(image).__name__}")
            if image.ndim != 3:
                raise ValueError(f"images[{i}] must be (C, H, W), got shape {tuple(image.shape)}")
            if not image.is_floating_point():
                raise ValueError(f"images[{i}] must be floating, got {image.dtype}")
            if not fits(image.shape, self.patch_size):
                raise ValueError(f"images[{i}]: {_too_small(image.shape, self.patch_size)}")
            self.images.append(image.float())

    def set_epoch(self, epoch: int) -> None:
        """Draw the training crops of ``epoch`` (an integer >= 0) from now on."""
        self.epoch = validation.integer("epoch", epoch, minimum=0)

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def _generator(self, index: int) -> torch.Generator:
        """A generator that depends on (seed, epoch, index) only."""
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(state[0]))

    def __getitem__(self, index: int) -> torch.Tensor:
        """Patch ``index`` (negative counts from the end): a new ``(C, ph, pw)`` float32 tensor."""
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"index must be in [{-length}, {length}), got {index}")
        index %= length
        image = self.images[index % len(self.images)]
        (height, width), (patch_h, patch_w) = image.shape[-2:], self.patch_size
        # Offsets into the padded image; a padded side is exactly the patch, so its offset is 0.
        span_h, span_w = max(height, patch_h) - patch_h + 1, max(width, patch_w) - patch_w + 1
        if self.train:
            generator = self._generator(index)
            top = int(torch.randint(span_h, (1,), generator=generator))
            left = int(torch.randint(span_w, (1,), generator=generator))
        else:
            top, left = (span_h - 1) // 2, (span_w - 1) // 2
        # Crop before padding: padding acts on one axis at a time, so this equals padding the
        # whole image and cropping it, without copying a large image to pad a narrow one.
        patch = image[:, top : top + patch_h, left : left + patch_w]
        (pad_top, pad_bottom), (pad_left, pad_right) = _pads(height, patch_h), _pads(width, patch_w)
        if pad_top or pad_bottom or pad_left or pad_right:
            return F.pad(patch, (pad_left, pad_right, pad_top, pad_bottom), mode="reflect")
        return patch.clone(memory_format=torch.contiguous_format)  # not a view of the whole image


class Batches:
    """The training batches of a run, step by step: each rank's share of every epoch of
    ``dataset``, in the order of a ``DistributedSampler`` (shuffled by ``(seed, epoch)``,
    ``drop_last``), ``batch_size`` patches per step.

    ``batch(step)`` depends on the step alone, so a resumed run draws exactly the batches an
    uninterrupted one would. One epoch is :func:`batches_per_epoch` steps.
    """

    def __init__(
        self, images: Sequence[torch.Tensor], patch_size: tuple[int, int], *, batch_size: int,
        seed: int, world: int = 1, rank: int = 0,
    ) -> None:  # fmt: skip
        self.batch_size = batch_size
        self.per_epoch = batches_per_epoch(len(images), batch_size, world)
        repeats = repeats_per_epoch(len(images), batch_size, world)
        self.dataset = PatchDataset(images, patch_size, train=True, seed=seed, repeats=repeats)
        self.sampler = torch.utils.data.DistributedSampler(
            self.dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self._epoch, self._indices = -1, []

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def batch(self, step: int) -> torch.Tensor:
        """The ``(batch_size, C, H, W)`` batch of optimizer step ``step`` (counted from 0)."""
        epoch = self.epoch_of(step)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self.dataset.set_epoch(epoch)
            self._epoch, self._indices = epoch, list(self.sampler)
        position = step % self.per_epoch
        chunk = self._indices[position * self.batch_size : (position + 1) * self.batch_size]
        return torch.stack([self.dataset[i] for i in chunk])


def repeats_per_epoch(train_images: int, batch_size: int, world: int = 1) -> int:
    """How many times an epoch visits each training image: enough for one global batch."""
    return max(1, math.ceil(batch_size * world / train_images))


def batches_per_epoch(train_images: int, batch_size: int, world: int = 1) -> int:
    """Steps in one epoch: the training images are repeated until one epoch holds at least one
    global batch, and each rank takes ``len // world`` of them (DistributedSampler, drop_last)."""
    repeats = repeats_per_epoch(train_images, batch_size, world)
    return (train_images * repeats // world) // batch_size
