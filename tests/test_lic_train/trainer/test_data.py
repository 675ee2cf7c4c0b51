"""lic_train.trainer.data: the built-in photographs, array and file conversion (16-bit included),
header-only image sizes, the folder layouts and their split rule (``find_images``), validation
images, the lazily decoded, reproducible, reflect-padded patches, files skipped when read, and the
resumable training batches."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import socket
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

import PIL.Image  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from lic_train.trainer import data  # noqa: E402
from lic_train.trainer.data import (  # noqa: E402
    BUILTIN_TEST,
    BUILTIN_TRAIN,
    Images,
    Item,
    NoReadableImage,
    PatchDataset,
    SkippedImage,
    TrainBatches,
    batches_per_epoch,
    builtin_images,
    collate,
    find_images,
    image_size,
    load_eval_images,
    read_array,
    read_crop,
    read_image,
    to_tensor,
    validation_images,
    validation_loader,
)

NAMES = {
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "grace_hopper",
}


def write_png(path, height: int, width: int, seed: int) -> np.ndarray:
    """A random RGB PNG at ``path`` (parents created); returns its uint8 pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def write_text(path, text: str = "not an image\n"):
    """A file with an image suffix that holds text (unreadable); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(3, H, W) float32 with distinct values, so that a window is identified by its contents."""
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def reflect_pads(size: int, patch: int) -> tuple[int, int]:
    """The padding the spec asks for: split evenly, the odd pixel at the end."""
    total = max(0, patch - size)
    return total // 2, total - total // 2


def padded(image: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """``image`` reflect-padded up to ``patch`` by torch itself."""
    (top, bottom), (left, right) = (
        reflect_pads(image.shape[1], patch[0]),
        reflect_pads(image.shape[2], patch[1]),
    )
    return F.pad(image, (left, right, top, bottom), mode="reflect")


def centre(image: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """The centre crop of ``image`` reflect-padded to ``patch``, computed independently."""
    big = padded(image, patch)
    top, left = (big.shape[1] - patch[0]) // 2, (big.shape[2] - patch[1]) // 2
    return big[:, top : top + patch[0], left : left + patch[1]]


def windows(big: torch.Tensor, crop: torch.Tensor) -> list[tuple[int, int]]:
    """Every (top, left) at which ``crop`` is an exact sub-array of ``big``."""
    _, ph, pw = crop.shape
    candidates = torch.nonzero(
        big[0, : big.shape[1] - ph + 1, : big.shape[2] - pw + 1] == crop[0, 0, 0]
    )
    return [
        (top, left)
        for top, left in candidates.tolist()
        if torch.equal(big[:, top : top + ph, left : left + pw], crop)
    ]


def same_batches(first: list[torch.Tensor], second: list[torch.Tensor]) -> bool:
    return len(first) == len(second) and all(
        torch.equal(a, b) for a, b in zip(first, second, strict=True)
    )


def take(batches: TrainBatches, step: int, count: int) -> list[torch.Tensor]:
    """``count`` batches of ``batches`` from ``step`` on."""
    return list(itertools.islice(batches.from_step(step), count))


@pytest.fixture
def no_decoding(monkeypatch):
    """Any attempt to open an image file fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"an image file was opened: {args}")

    monkeypatch.setattr(PIL.Image, "open", refuse)


@pytest.fixture(scope="module")
def builtin():
    return builtin_images()


# ---- the built-in set --------------------------------------------------------------------------


def test_builtin_images_are_the_named_rgb_photographs_in_unit_range(builtin):
    assert set(builtin) == NAMES
    for name, image in builtin.items():
        assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3, name
        assert 0 <= image.min() and image.max() <= 1, name
        assert image.max() - image.min() > 0.5, name  # a photograph, not a blank
        assert not torch.equal(image[0], image[1]), name  # colour, not gray repeated
    assert builtin["chelsea"].shape == (3, 300, 451)
    assert builtin["grace_hopper"].shape == (3, 600, 512)
    assert not torch.equal(builtin["motorcycle_left"], builtin["motorcycle_right"])


def test_builtin_split_is_fixed_and_disjoint(builtin):
    assert set(BUILTIN_TEST) == {"grace_hopper", "coffee"}
    assert not set(BUILTIN_TRAIN) & set(BUILTIN_TEST)
    assert set(BUILTIN_TRAIN) | set(BUILTIN_TEST) == NAMES
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = find_images(None)
    assert train.names == BUILTIN_TRAIN and test.names == BUILTIN_TEST
    assert len(train) == len(BUILTIN_TRAIN) and train.where == test.where
    for images in (train, test):
        for name, source in zip(images.names, images.sources, strict=True):
            assert isinstance(source, torch.Tensor) and torch.equal(source, builtin[name])


def test_builtin_test_images_are_validated_by_their_size():
    _, test = find_images(None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert validation_images(test, (256, 256)).names == BUILTIN_TEST
        # coffee is 400 px tall: a 1472 patch needs ceil(1474 / 3) = 492; grace_hopper is 600x512.
        assert validation_images(test, (1472, 1472)).names == ("grace_hopper",)
    # grace_hopper is 512 px wide: a 1536 patch needs 513.
    with pytest.raises(ValueError, match=r"^patch_size 1536 1536: .*513x513"):
        validation_images(test, (1536, 1536))


# ---- to_tensor -------------------------------------------------------------------------------


def test_to_tensor_uint8_rgb_is_divided_by_255():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = to_tensor(pixels)
    assert image.shape == (3, 5, 7) and image.dtype == torch.float32
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    assert torch.equal(image, expected)


@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 1)])
def test_to_tensor_gray_is_repeated_to_three_channels(shape):
    pixels = np.arange(24, dtype=np.uint8).reshape(shape)
    image = to_tensor(pixels)
    assert image.shape == (3, 4, 6)
    for channel in image:
        assert torch.equal(channel, torch.arange(24.0).reshape(4, 6) / 255)


def test_to_tensor_gray_alpha_keeps_gray():
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    alpha = np.full((4, 6), 7, dtype=np.uint8)
    image = to_tensor(np.stack([gray, alpha], axis=2))
    assert torch.equal(image, to_tensor(gray))


def test_to_tensor_rgba_drops_alpha():
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    assert torch.equal(to_tensor(rgba), to_tensor(rgba[:, :, :3].copy()))


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_to_tensor_uint16_is_divided_by_65535(byte_order):
    pixels = np.array([[0, 1, 257, 65535]], dtype=f"{byte_order}u2")
    image = to_tensor(pixels)
    assert image[0, 0, 3].item() == 1.0
    assert image[0, 0, 2].item() == np.float32(257) / np.float32(65535)
    # 257 / 65535 is 1 / 255: the 16-bit and 8-bit scales agree exactly.
    assert image[0, 0, 2] == to_tensor(np.array([[1]], dtype=np.uint8))[0, 0, 0]
    assert 0 < image[0, 0, 1] < 1 / 255  # the low byte is not lost


def test_to_tensor_bool_and_float():
    assert torch.equal(to_tensor(np.array([[False, True]]))[1], torch.tensor([[0.0, 1.0]]))
    floats = np.array([[-0.5, 0.25, 1.5]], dtype=np.float64)
    assert torch.equal(to_tensor(floats)[2], torch.tensor([[0.0, 0.25, 1.0]]))


def test_to_tensor_does_not_share_the_callers_memory():
    pixels = np.zeros((3, 3, 3), dtype=np.float32)
    image = to_tensor(pixels)
    pixels[:] = 1
    assert image.max() == 0


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4,), np.uint8), r"shape \(4,\)"),
        (np.zeros((4, 4, 5), np.uint8), r"shape \(4, 4, 5\)"),
        (np.zeros((1, 4, 4, 3), np.uint8), r"shape \(1, 4, 4, 3\)"),
        (np.zeros((0, 4, 3), np.uint8), r"shape \(0, 4, 3\)"),
        (np.zeros((4, 4), np.int32), "int32"),
        (np.zeros((4, 4), np.uint32), "uint32"),
        (np.full((4, 4), np.nan), "finite"),
        ([[0, 1]], "numpy array"),
    ],
)
def test_to_tensor_rejects_other_shapes_and_dtypes(array, match):
    with pytest.raises(ValueError, match=match):
        to_tensor(array)


# ---- read_image ------------------------------------------------------------------------------


def test_read_image_keeps_16_bit_precision(tmp_path):
    pixels = np.array([[0, 1, 257, 12345], [40000, 65534, 65535, 3]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")  # the file really is 16-bit
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 2, 4)
    expected = torch.from_numpy(pixels.astype(np.float32)) / 65535
    for channel in image:
        assert torch.equal(channel, expected)


def test_read_image_32_bit_integer_tiff(tmp_path):
    pixels = np.array([[0, 1, 257, 65535]], dtype=np.int32)
    Image.fromarray(pixels).save(tmp_path / "wide.tif")
    assert torch.equal(read_image(tmp_path / "wide.tif")[0], to_tensor(pixels.astype(np.uint16))[0])
    Image.fromarray(pixels * 2).save(tmp_path / "over.tif")
    with pytest.raises(ValueError, match=r"over\.tif: not a readable image .*65535"):
        read_image(tmp_path / "over.tif")


def test_read_image_palette_with_transparency_becomes_rgb(tmp_path):
    rgb = write_png(tmp_path / "rgb.png", 6, 5, seed=2)
    palette = Image.fromarray(rgb).quantize(colors=8)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "palette.png")
    expected = np.asarray(palette.convert("RGB"))
    assert torch.equal(image, to_tensor(expected))


def test_read_image_of_a_text_file_names_the_path(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    with pytest.raises(ValueError, match=r"notes\.png: not a readable image \(") as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---- read_array and image_size ---------------------------------------------------------------


def test_read_array_keeps_the_files_precision_and_channels(tmp_path):
    deep = np.array([[0, 1, 257, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    array = read_array(tmp_path / "deep.png")
    assert array.dtype == np.uint16 and np.array_equal(array, deep)
    rgba = np.random.default_rng(3).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    array = read_array(tmp_path / "rgba.png")
    assert array.dtype == np.uint8 and np.array_equal(array, rgba)
    for name in ("deep.png", "rgba.png"):
        assert torch.equal(read_image(tmp_path / name), to_tensor(read_array(tmp_path / name)))
    write_text(tmp_path / "notes.png")
    with pytest.raises(ValueError, match=r"notes\.png: not a readable image \("):
        read_array(tmp_path / "notes.png")


@pytest.mark.parametrize("orientation", [1, 6, 3])
def test_read_crop_is_the_box_of_read_array_upright(tmp_path, orientation):
    pixels = np.random.default_rng(1).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    for path in save_formats(tmp_path, pixels, exif=exif).values():
        whole = read_array(path)
        crop, size = read_crop(path, lambda h, w: (2, 3, h - 4, w - 1))
        assert size == whole.shape[:2]
        assert np.array_equal(crop, whole[2 : size[0] - 4, 3 : size[1] - 1]), path.name


def test_read_crop_lets_the_boxs_own_error_through(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")

    def refuse(height, width):
        raise ValueError(f"too small: {height}x{width}")

    with pytest.raises(ValueError, match=r"^too small: 8x8$"):
        read_crop(tmp_path / "a.png", refuse)
    write_text(tmp_path / "notes.png")
    with pytest.raises(ValueError, match="not a readable image"):
        read_crop(tmp_path / "notes.png", refuse)


def save_formats(tmp_path, pixels: np.ndarray, exif=None) -> dict:
    """``pixels`` saved as PNG, JPEG, BMP, TIFF and WebP (with ``exif`` where given)."""
    paths = {}
    for suffix in (".png", ".jpg", ".bmp", ".tif", ".webp"):
        path = tmp_path / f"image{suffix}"
        if exif is None:
            Image.fromarray(pixels).save(path)
        elif suffix != ".bmp":  # BMP has no EXIF
            Image.fromarray(pixels).save(path, exif=exif)
        else:
            continue
        paths[suffix] = path
    return paths


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp"])
def test_image_size_is_the_decoded_shape(tmp_path, suffix):
    pixels = np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    path = save_formats(tmp_path, pixels)[suffix]
    assert image_size(path) == read_array(path).shape[:2] == (30, 41)


def test_image_size_of_a_16_bit_grayscale_png(tmp_path):
    Image.fromarray(np.zeros((7, 9), dtype=np.uint16)).save(tmp_path / "deep.png")
    assert image_size(tmp_path / "deep.png") == read_array(tmp_path / "deep.png").shape == (7, 9)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_image_size_follows_the_exif_rotation(tmp_path, suffix):
    # Stored 30 high and 40 wide; EXIF orientation 6 (rotate 90 degrees) shows it 40 x 30.
    pixels = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    path = save_formats(tmp_path, pixels, exif)[suffix]
    assert read_array(path).shape[:2] == (40, 30)  # the decoded image really is upright
    assert image_size(path) == (40, 30)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_image_size_reads_the_header_only(tmp_path, suffix):
    # The second half of the file (pixels) is cut off: the header still gives the size, while
    # decoding fails.
    pixels = np.random.default_rng(2).integers(0, 256, (60, 50, 3), dtype=np.uint8)
    path = save_formats(tmp_path, pixels)[suffix]
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="not a readable image"):
        read_array(path)
    assert image_size(path) == (60, 50)


def test_image_size_of_a_text_file_names_the_path(tmp_path):
    path = write_text(tmp_path / "notes.jpg")
    with pytest.raises(ValueError, match=r"notes\.jpg: not a readable image \(") as info:
        image_size(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ---- find_images on folders --------------------------------------------------------------------


def test_train_and_test_folders_are_listed_without_decoding(tmp_path, monkeypatch):
    a = write_png(tmp_path / "train" / "b.png", 70, 80, seed=1)
    b = write_png(tmp_path / "train" / "a" / "z.PNG", 64, 64, seed=2)
    c = write_png(tmp_path / "test" / "c.jpeg", 30, 20, seed=3)  # small test images are listed
    write_text(tmp_path / "train" / "readme.txt", "ignored: not an image suffix")
    write_png(tmp_path / "train" / ".hidden" / "x.png", 64, 64, seed=4)
    (tmp_path / "train" / "._b.png").write_bytes(b"macOS metadata, ignored")
    write_text(tmp_path / "train" / "broken.png")  # listed: found unreadable only when read
    with warnings.catch_warnings(), monkeypatch.context() as patched:
        warnings.simplefilter("error")
        patched.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("a file was opened"))
        train, test = find_images(tmp_path)
    assert isinstance(train, Images) and isinstance(test, Images)
    assert train.names == ("a/z.PNG", "b.png", "broken.png")
    assert train.sources == tuple(
        str(tmp_path / "train" / name) for name in ("a/z.PNG", "b.png", "broken.png")
    )
    assert train.where == f"{tmp_path / 'train'}"
    assert test.where == f"{tmp_path / 'test'}"
    assert torch.equal(read_image(train.sources[0]), to_tensor(b))
    assert torch.equal(read_image(train.sources[1]), to_tensor(a))
    assert test.names == ("c.jpeg",) and test.sources == (str(tmp_path / "test" / "c.jpeg"),)
    decoded = read_image(test.sources[0])
    assert decoded.shape == (3, 30, 20)
    with Image.open(tmp_path / "test" / "c.jpeg") as jpeg:  # lossy: compare with PIL's decoding
        assert torch.equal(decoded, to_tensor(np.asarray(jpeg)))
    assert np.abs(decoded.numpy().transpose(1, 2, 0) - c / 255).mean() < 0.2


@pytest.mark.parametrize(
    ("count", "test_indices"),
    [(1, [0]), (2, [1]), (4, [3]), (5, [4]), (9, [4]), (10, [4, 9]), (12, [4, 9])],
)
def test_flat_folder_every_fifth_image_tests(tmp_path, count, test_indices):
    # Names chosen so that sorting by relative path differs from creation order.
    names = sorted(f"{'sub/' if i % 3 == 0 else ''}img{i:02d}.png" for i in range(count))
    for i, name in enumerate(names):
        write_png(tmp_path / name, 20, 20, seed=i)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = find_images(tmp_path)
    assert list(test.names) == [names[i] for i in test_indices]
    assert test.sources == tuple(str(tmp_path / name) for name in test.names)
    assert train.where == test.where == f"{tmp_path}"
    if count == 1:
        assert list(train.names) == names
        assert len(caught) == 1 and "both to train and to test" in str(caught[0].message)
    else:
        assert list(train.names) == [n for i, n in enumerate(names) if i not in test_indices]
        assert not caught


def test_flat_folder_split_counts_unreadable_files_too(tmp_path, no_decoding):
    # Six image files, the second one unreadable: the split is that of six files.
    names = [f"img{i}.png" for i in range(6)]
    for name in names:
        write_text(tmp_path / name, "pixels are never read by find_images")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = find_images(tmp_path)
    assert test.names == ("img4.png",)
    assert train.names == ("img0.png", "img1.png", "img2.png", "img3.png", "img5.png")


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ("missing", "no such folder"),
        ("file", "not a folder"),
        ("empty", "no image files"),
        ("train only", "has a train/ folder but no test/ folder"),
        ("test only", "has a test/ folder but no train/ folder"),
        ("empty test", "no image files"),
        ("only text files", "no image files"),
    ],
)
def test_folder_errors_name_data_and_the_path(tmp_path, layout, match):
    data_dir = tmp_path / "data"
    if layout == "file":
        data_dir.write_text("")
    elif layout == "empty":
        data_dir.mkdir()
    elif layout == "train only":
        write_png(data_dir / "train" / "a.png", 20, 20, seed=0)
    elif layout == "test only":
        write_png(data_dir / "test" / "a.png", 20, 20, seed=0)
    elif layout == "empty test":
        write_png(data_dir / "train" / "a.png", 20, 20, seed=0)
        (data_dir / "test").mkdir()
    elif layout == "only text files":
        write_text(data_dir / "notes.txt")
    with pytest.raises(ValueError, match=match) as info:
        find_images(data_dir)
    assert str(info.value).startswith(f"data {data_dir}")
    assert info.value.parameter == "data"  # the CLI names --data


def test_an_empty_path_is_refused_naming_the_flag(tmp_path):
    write_png(tmp_path / "a.png", 20, 20, seed=0)
    with pytest.raises(ValueError, match=r"^data '': an empty path"):
        find_images("")
    with pytest.raises(ValueError, match=r"^test_data '': an empty path"):
        find_images(tmp_path, "")
    with pytest.raises(ValueError, match=r"^test_data '': an empty path"):
        find_images(None, "")


@pytest.mark.parametrize("layout", ["train and test", "train only", "flat with a test folder"])
def test_test_data_holds_the_test_images(tmp_path, layout, no_decoding):
    kodak = tmp_path / "kodak"
    for name in ("kodim02.png", "kodim01.png", "more/kodim03.png"):
        write_text(kodak / name)  # not decoded
    root = tmp_path / "coco"
    if layout == "train and test":
        write_text(root / "train" / "a.png")
        write_text(root / "test" / "ignored.png")
        expected, where = ("a.png",), root / "train"
    elif layout == "train only":  # no test/ folder needed: the tests come from --test-data
        write_text(root / "train" / "a.png")
        write_text(root / "train" / "sub" / "b.png")
        expected, where = ("a.png", "sub/b.png"), root / "train"
    else:  # no train/: every image under --data trains, the ones under test/ included
        write_text(root / "x.png")
        write_text(root / "test" / "y.png")
        expected, where = ("test/y.png", "x.png"), root
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = find_images(root, kodak)
    assert train.names == expected and train.where == f"{where}"
    assert train.sources == tuple(str(where / name) for name in expected)
    assert test.names == ("kodim01.png", "kodim02.png", "more/kodim03.png")
    assert test.where == f"{kodak}" and test.sources[0] == str(kodak / "kodim01.png")


def test_test_data_with_a_single_training_image_does_not_warn(tmp_path):
    write_text(tmp_path / "train" / "one.png")
    write_text(tmp_path / "test" / "t.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = find_images(tmp_path / "train", tmp_path / "test")
    assert train.names == ("one.png",) and test.names == ("t.png",)


def test_test_data_with_the_builtin_training_photographs(tmp_path, builtin):
    write_text(tmp_path / "kodim01.png")
    train, test = find_images(None, tmp_path)
    assert train.names == BUILTIN_TRAIN
    assert all(torch.equal(s, builtin[n]) for n, s in zip(train.names, train.sources, strict=True))
    assert test.names == ("kodim01.png",) and test.where == f"{tmp_path}"


@pytest.mark.parametrize(
    ("layout", "match"),
    [("empty", "no image files"), ("missing", "no such folder"), ("file", "not a folder")],
)
@pytest.mark.parametrize("builtin_train", [False, True])
def test_test_data_errors_name_test_data(tmp_path, layout, match, builtin_train):
    write_png(tmp_path / "coco" / "a.png", 20, 20, seed=0)
    kodak = tmp_path / "kodak"
    if layout == "empty":
        write_text(kodak / "readme.txt")
    elif layout == "file":
        kodak.write_text("")
    with pytest.raises(ValueError, match=match) as info:
        find_images(None if builtin_train else tmp_path / "coco", kodak)
    assert str(info.value).startswith(f"test_data {kodak}: ")
    assert info.value.parameter == "test_data"  # the CLI names --test-data


def test_test_data_does_not_hide_a_bad_data_folder(tmp_path):
    write_png(tmp_path / "kodak" / "a.png", 20, 20, seed=0)
    with pytest.raises(ValueError, match=r"^data .*: no such folder"):
        find_images(tmp_path / "missing", tmp_path / "kodak")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^data .*empty: no image files"):
        find_images(tmp_path / "empty", tmp_path / "kodak")


# ---- validation_images -----------------------------------------------------------------------


def kodak_images(tmp_path, files: dict) -> Images:
    """The test images of ``--data coco --test-data kodak``, ``files`` written under kodak/
    (name: (height, width), or None for a text file)."""
    write_text(tmp_path / "coco" / "a.png")
    for name, size in files.items():
        if size is None:
            write_text(tmp_path / "kodak" / name)
        else:
            write_png(tmp_path / "kodak" / name, *size, seed=len(name))
    return find_images(tmp_path / "coco", tmp_path / "kodak")[1]


def test_validation_images_drop_unreadable_files_with_a_warning(tmp_path):
    # 64 needs >= 22 per side: small.png is left out, silently (eval codes it whole).
    sizes = {"a.png": (64, 70), "broken.png": None, "edge.jpg": (22, 22), "small.png": (21, 64)}
    test = kodak_images(tmp_path, sizes)
    kodak = tmp_path / "kodak"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = validation_images(test, (64, 64))
    assert kept.names == ("a.png", "edge.jpg") and kept.where == f"{kodak}"
    assert kept.sources == (str(kodak / "a.png"), str(kodak / "edge.jpg"))
    assert [w.category for w in caught] == [SkippedImage]
    message = str(caught[0].message)
    assert message.startswith(f"{kodak / 'broken.png'}: not a readable image (")
    assert message.endswith("; skipped")


def test_validation_images_all_too_small_is_an_error_naming_the_patch_size(tmp_path):
    test = kodak_images(tmp_path, {"broken.png": None, "small.png": (21, 64)})
    with pytest.warns(SkippedImage, match="broken"), pytest.raises(ValueError) as info:
        validation_images(test, (64, 64))
    message = str(info.value)
    assert message.startswith("patch_size 64 64: ") and str(tmp_path / "kodak") in message
    assert "22x22" in message
    assert validation_images(test.subset([1]), (32, 32)).names == ("small.png",)


def test_validation_images_all_unreadable_is_an_error_naming_the_folder(tmp_path):
    test = kodak_images(tmp_path, {"x.png": None, "y.jpg": None})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one error line, no warning per file before it
        with pytest.raises(ValueError) as info:
            validation_images(test, (64, 64))
    assert str(info.value).startswith(f"test_data {tmp_path / 'kodak'}: no readable test image")
    assert "the first: " in str(info.value)


@pytest.mark.parametrize(
    "patch_size", [(8, 64), (64, 15), (64,), (64, 64, 64), (64.0, 64), (True, 64), 64, "64"]
)
def test_patch_size_must_be_two_integers_of_at_least_16(patch_size):
    images = Images(("a",), (random_image(64, 64),), "one")
    with pytest.raises(ValueError, match=r"patch_size must be two integers >= 16 .*got"):
        validation_images(images, patch_size)
    with pytest.raises(ValueError, match="patch_size must be"):
        PatchDataset([random_image(64, 64)], patch_size, train=True)


# ---- PatchDataset ----------------------------------------------------------------------------


def test_patches_have_the_patch_shape_and_length_counts_repeats():
    images = [random_image(100, 120, 0), random_image(70, 64, 1)]
    dataset = PatchDataset(images, (64, 48), train=True, repeats=3)
    assert len(dataset) == 6
    for index in range(len(dataset)):
        item = dataset[index]
        assert isinstance(item, Item) and item.skipped == ()
        patch = item.patch
        assert patch.shape == (3, 64, 48) and patch.dtype == torch.float32
        assert patch.is_contiguous()
        assert windows(images[index % 2], patch)  # from image index % len(images)
    with pytest.raises(IndexError):
        dataset[6]
    with pytest.raises(IndexError):
        dataset[-7]
    assert torch.equal(dataset[-1].patch, dataset[5].patch)


def test_a_patch_does_not_share_memory_with_its_source():
    image = random_image(64, 64)
    patch = PatchDataset([image], (64, 64), train=False)[0].patch
    patch.zero_()
    assert image.max() > 0


def write_kinds(tmp_path) -> dict:
    """Files of several kinds (8-bit RGB, 16-bit gray, RGBA, palette, one needing padding)."""
    rng = np.random.default_rng(5)
    paths = {}
    arrays = {
        "rgb.png": rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
        "deep.png": rng.integers(0, 65536, (45, 40), dtype=np.uint16),
        "rgba.png": rng.integers(0, 256, (40, 41, 4), dtype=np.uint8),
        "small.png": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),  # 32 needs >= 12
    }
    for name, array in arrays.items():
        paths[name] = tmp_path / name
        Image.fromarray(array).save(paths[name])
    paths["palette.bmp"] = tmp_path / "palette.bmp"
    Image.fromarray(arrays["rgb.png"]).quantize(colors=16).save(paths["palette.bmp"])
    return paths


@pytest.mark.parametrize("name", ["rgb.png", "deep.png", "rgba.png", "small.png", "palette.bmp"])
@pytest.mark.parametrize("train", [True, False])
def test_a_file_gives_the_patches_of_its_decoded_image(tmp_path, name, train):
    # Cropping the file's pixels before the conversion to float32 changes nothing.
    path = write_kinds(tmp_path)[name]
    from_file = PatchDataset([path], (32, 32), train=train, seed=4, repeats=4)
    from_tensor = PatchDataset([read_image(path)], (32, 32), train=train, seed=4, repeats=4)
    assert from_file.sources == [str(path)]  # a Path is kept as a str
    for index in range(4):
        item = from_file[index]
        assert item.skipped == () and item.patch.dtype == torch.float32
        assert item.patch.is_contiguous()
        assert torch.equal(item.patch, from_tensor[index].patch)


def test_crops_are_a_function_of_seed_epoch_and_index_only():
    images = [random_image(128, 128, 0)]
    first = PatchDataset(images, (64, 64), train=True, seed=7, repeats=8)
    crops = [first[i].patch for i in range(8)]
    assert all(torch.equal(first[i].patch, crops[i]) for i in range(8))  # the same item twice
    torch.manual_seed(123)  # the global random state plays no part
    resumed = PatchDataset(images, (64, 64), train=True, seed=7, repeats=8)
    assert all(torch.equal(resumed[i].patch, crops[i]) for i in range(8))  # a resumed run
    positions = {windows(images[0], crop)[0] for crop in crops}
    assert len(positions) >= 6  # indices differ
    first.set_epoch(1)
    resumed.set_epoch(1)
    later = [first[i].patch for i in range(8)]
    assert all(torch.equal(resumed[i].patch, later[i]) for i in range(8))
    assert sum(torch.equal(a, b) for a, b in zip(crops, later, strict=True)) <= 1  # epochs differ
    other_seed = PatchDataset(images, (64, 64), train=True, seed=8, repeats=8)
    assert sum(torch.equal(other_seed[i].patch, crops[i]) for i in range(8)) <= 1


def test_dataloader_workers_see_the_same_crops():
    dataset = PatchDataset([random_image(96, 96, 3)] * 2, (32, 32), train=True, seed=1, repeats=4)
    dataset.set_epoch(5)

    def load(workers):
        return list(
            torch.utils.data.DataLoader(
                dataset, batch_size=3, num_workers=workers, collate_fn=collate
            )
        )

    single, multi = load(0), load(2)
    assert len(single) == len(multi) == 3
    assert all(isinstance(batch, Item) and batch.skipped == () for batch in single + multi)
    assert same_batches([b.patch for b in single], [b.patch for b in multi])
    assert torch.equal(single[0].patch[1], dataset[1].patch)


def test_collate_stacks_the_patches_and_joins_the_skipped_files():
    patches = [random_image(16, 16, seed) for seed in range(3)]
    batch = collate(
        [Item(patches[0], ("a: bad",)), Item(patches[1], ()), Item(patches[2], ("b", "c"))]
    )
    assert isinstance(batch, Item)
    assert torch.equal(batch.patch, torch.stack(patches))
    assert batch.skipped == ("a: bad", "b", "c")


@pytest.mark.parametrize(("height", "width"), [(40, 100), (41, 100), (100, 33), (30, 31)])
def test_small_sides_are_reflect_padded_like_torch(height, width):
    image = random_image(height, width, 4)
    patch = (64, 64)
    reference = padded(image, patch)
    dataset = PatchDataset([image], patch, train=True, repeats=10)
    for index in range(10):
        found = windows(reference, dataset[index].patch)
        assert found, index
        top, left = found[0]
        assert height >= 64 or top == 0
        assert width >= 64 or left == 0


@pytest.mark.parametrize("patch", [16, 17, 18, 64, 256])
def test_the_smallest_paddable_side_is_torchs(patch):
    smallest = math.ceil((patch + 2) / 3)
    ok = random_image(smallest, smallest)
    assert PatchDataset([ok], (patch, patch), train=False)[0].patch.shape == (3, patch, patch)
    too_small = random_image(smallest - 1, patch)
    with pytest.raises(RuntimeError):  # torch itself refuses one pixel less
        padded(too_small, (patch, patch))
    with pytest.raises(ValueError, match=rf"sources\[1\]: {smallest - 1}x{patch} \(HxW\)"):
        PatchDataset([ok, too_small], (patch, patch), train=True)


def test_test_patches_are_the_centre_crop_every_epoch():
    image = random_image(100, 121, 5)
    dataset = PatchDataset([image], (64, 64), train=False, repeats=3)
    expected = image[:, 18:82, 28:92]
    for epoch in (0, 4):
        dataset.set_epoch(epoch)
        assert all(torch.equal(dataset[i].patch, expected) for i in range(3))
    small = random_image(41, 50, 6)
    centred = PatchDataset([small], (64, 64), train=False)[0].patch
    assert torch.equal(centred, F.pad(small, (7, 7, 11, 12), mode="reflect"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"train": 1}, "train must be True or False"),
        ({"train": True, "seed": -1}, "seed must be"),
        ({"train": True, "repeats": 0}, "repeats must be"),
    ],
)
def test_patch_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PatchDataset([random_image(64, 64)], (64, 64), **kwargs)
    with pytest.raises(ValueError, match="sources must hold at least one"):
        PatchDataset([], (64, 64), train=True)
    with pytest.raises(ValueError, match="epoch must be"):
        PatchDataset([random_image(64, 64)], (64, 64), train=True).set_epoch(-1)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (3, r"sources\[1\] must be a path or a tensor, got int"),
        (np.zeros((3, 64, 64), np.float32), r"sources\[1\] must be a path or a tensor"),
        (torch.zeros(64, 64), r"sources\[1\] must be \(C, H, W\), got shape \(64, 64\)"),
        (torch.zeros(3, 64, 64, dtype=torch.uint8), r"sources\[1\] must be floating"),
    ],
)
def test_patch_dataset_rejects_bad_sources_naming_their_index(source, match):
    with pytest.raises(ValueError, match=match):
        PatchDataset([random_image(64, 64), source], (64, 64), train=True)


# ---- files skipped when read -------------------------------------------------------------------


def test_find_images_does_not_read_an_unreadable_training_file(tmp_path, no_decoding):
    for i, name in enumerate(("a.png", "c.png", "d.png")):
        write_png(tmp_path / "train" / name, 40, 48, seed=i)
    broken = write_text(tmp_path / "train" / "b.png")
    write_png(tmp_path / "test" / "t.png", 40, 40, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is read, so nothing is found unreadable
        train, _ = find_images(tmp_path)
    assert train.names == ("a.png", "b.png", "c.png", "d.png")
    assert train.sources[1] == str(broken)


def test_reading_an_unreadable_file_gives_the_next_images_patch(tmp_path):
    a, c, _ = (write_png(tmp_path / f"{n}.png", 40, 48, seed=i) for i, n in enumerate("acd"))
    broken = str(write_text(tmp_path / "b.png"))
    paths = [str(tmp_path / "a.png"), broken, str(tmp_path / "c.png"), str(tmp_path / "d.png")]
    dataset = PatchDataset(paths, (32, 32), train=True, seed=3, repeats=2)
    # The same generator (seed, epoch, index) crops the replacement image.
    replaced = PatchDataset(
        [paths[0], paths[2], *paths[2:]], (32, 32), train=True, seed=3, repeats=2
    )
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        replaced.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            assert torch.equal(item.patch, replaced[index].patch), (epoch, index)
            if index % 4 == 1:
                assert windows(to_tensor(c), item.patch)  # c.png, the next one
                assert len(item.skipped) == 1
                assert item.skipped[0].startswith(f"{broken}: not a readable image (")
            else:
                assert item.skipped == ()
    # The last file unreadable: the next one is the first (wrapping around).
    last = PatchDataset([paths[0], paths[2], broken], (32, 32), train=False)
    item = last[2]
    assert torch.equal(item.patch, centre(to_tensor(a), (32, 32)))
    assert len(item.skipped) == 1 and item.skipped[0].startswith(broken)


def test_consecutive_unreadable_files_are_all_named(tmp_path):
    write_png(tmp_path / "ok.png", 40, 40, seed=0)
    first, second = write_text(tmp_path / "x.png"), write_text(tmp_path / "y.jpg", "")
    dataset = PatchDataset([first, second, tmp_path / "ok.png"], (32, 32), train=False)
    item = dataset[0]
    assert [note.split(": ")[0] for note in item.skipped] == [str(first), str(second)]
    assert torch.equal(item.patch, dataset[2].patch)


def test_a_too_small_training_image_is_skipped_naming_its_size(tmp_path):
    write_png(tmp_path / "big.png", 80, 90, seed=0)
    write_png(tmp_path / "small.png", 20, 30, seed=1)  # 64 needs >= 22 per side
    edge = write_png(tmp_path / "edge.png", 22, 22, seed=2)  # exactly enough
    paths = [str(tmp_path / n) for n in ("big.png", "small.png", "edge.png")]
    dataset = PatchDataset(paths, (64, 64), train=True, seed=0)
    item = dataset[1]
    assert item.skipped == (
        f"{paths[1]}: 20x30 (HxW) is too small to be reflect-padded to the 64x64 patch "
        "(needs at least 22x22)",
    )
    assert torch.equal(item.patch, padded(to_tensor(edge), (64, 64)))
    assert dataset[2].skipped == () and dataset[0].skipped == ()


def test_a_data_set_without_a_patch_raises_no_readable_image(tmp_path):
    broken = write_text(tmp_path / "broken.png")
    write_png(tmp_path / "small.png", 20, 30, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, _ = find_images(tmp_path)  # listing is fine
        dataset = PatchDataset(
            [broken, tmp_path / "small.png"], (64, 64), train=True, where=str(tmp_path),
            parameter="data",
        )  # fmt: skip
    for index in (0, 1):
        with pytest.raises(NoReadableImage) as info:
            dataset[index]
        assert isinstance(info.value, ValueError) and info.value.parameter == "data"
        message = str(info.value)
        assert message.startswith(f"data {tmp_path}: none of its 2 images can give a 64x64 patch")
    batches = TrainBatches(train, (64, 64), batch_size=1, seed=0)
    with pytest.raises(NoReadableImage, match=str(tmp_path)) as info:
        next(batches.from_step(0))
    assert info.value.parameter == "data"  # the images' own parameter


# ---- TrainBatches ------------------------------------------------------------------------------


def test_train_batches_warn_once_for_each_skipped_file(tmp_path):
    for i, name in enumerate(("a.png", "c.png", "e.png")):
        write_png(tmp_path / "train" / name, 24, 24, seed=i)
    broken = write_text(tmp_path / "train" / "b.png")
    write_png(tmp_path / "train" / "d.png", 5, 24, seed=5)  # 16 needs >= 6
    write_png(tmp_path / "test" / "t.png", 24, 24, seed=9)
    train, _ = find_images(tmp_path)
    batches = TrainBatches(train, (16, 16), batch_size=2, seed=1)
    assert batches.per_epoch == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the once-only rule is the code's, not the registry's
        got = take(batches, 0, 10)  # five epochs, each reading every file
    assert len(got) == 10 and all(batch.shape == (2, 3, 16, 16) for batch in got)
    messages = sorted(str(w.message) for w in caught if w.category is SkippedImage)
    assert len(messages) == 2 and len(caught) == 2
    assert messages[0].startswith(f"{broken}: not a readable image (")
    assert messages[1] == (
        f"{tmp_path / 'train' / 'd.png'}: 5x24 (HxW) is too small to be reflect-padded to the "
        "16x16 patch (needs at least 6x6); skipped"
    )
    assert all(message.endswith("; skipped") for message in messages)


def write_folder(tmp_path, count: int = 5, size: int = 24) -> Images:
    for i in range(count):
        write_png(tmp_path / "train" / f"img{i}.png", size, size + i, seed=i)
    write_png(tmp_path / "test" / "t.png", size, size, seed=99)
    return find_images(tmp_path)[0]


def test_train_batches_resume_at_any_step_with_any_workers(tmp_path):
    train = write_folder(tmp_path)
    decoded = [read_image(source) for source in train.sources]

    def batches(workers=0):
        return TrainBatches(train, (16, 16), batch_size=2, seed=3, num_workers=workers)

    reference = take(batches(), 0, 8)  # five images, two batches of two an epoch: four epochs
    assert batches().per_epoch == batches_per_epoch(5, 2) == 2
    assert [batches().epoch_of(step) for step in range(5)] == [0, 0, 1, 1, 2]
    for batch in reference:
        assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    for epoch in range(4):  # an epoch draws distinct images (the fifth is left over)
        patches = torch.cat(reference[2 * epoch : 2 * epoch + 2])
        sources = [
            next(i for i, image in enumerate(decoded) if windows(image, patch)) for patch in patches
        ]
        assert len(set(sources)) == 4, epoch
    assert len({tuple(batch.flatten()[:8].tolist()) for batch in reference}) == 8  # all differ
    crops = [{tuple(p.flatten().tolist()) for p in torch.cat(reference[e : e + 2])} for e in (0, 2)]
    assert not crops[0] & crops[1]  # the crops of an image change from epoch to epoch
    for step in (1, 2, 3, 5):  # mid-epoch, at an epoch boundary, and mid-epoch onward
        assert same_batches(take(batches(), step, 3), reference[step : step + 3]), step
    reused = batches()  # a second from_step on the same object starts afresh
    take(reused, 0, 3)
    assert same_batches(take(reused, 1, 3), reference[1:4])
    assert same_batches(take(batches(workers=2), 0, 6), reference[:6])
    assert same_batches(take(batches(workers=2), 3, 3), reference[3:6])


def test_train_batches_split_each_epoch_between_ranks():
    images = Images(tuple("abcd"), tuple(random_image(20, 20, seed) for seed in range(4)), "four")

    def rank(r, seed=0):
        return take(TrainBatches(images, (16, 16), batch_size=1, seed=seed, world=2, rank=r), 0, 4)

    zero, one = rank(0), rank(1)
    assert TrainBatches(images, (16, 16), batch_size=1, seed=0, world=2).per_epoch == 2
    for epoch in range(2):
        patches = [*zero[2 * epoch : 2 * epoch + 2], *one[2 * epoch : 2 * epoch + 2]]
        found = [
            next(i for i, image in enumerate(images.sources) if windows(image, patch[0]))
            for patch in patches
        ]
        assert sorted(found) == [0, 1, 2, 3], epoch  # every image once, on one rank or the other
    assert same_batches(rank(0), zero)


def test_train_batches_repeat_a_small_set_to_fill_a_batch():
    images = Images(("a", "b"), (random_image(20, 20, 0), random_image(20, 20, 1)), "two")
    batches = TrainBatches(images, (16, 16), batch_size=3, seed=0)
    assert batches.per_epoch == 1  # two images repeated twice: four items, one batch of three
    assert len(batches.dataset) == 4
    first, second = take(batches, 0, 2)
    assert first.shape == second.shape == (3, 3, 16, 16)
    assert not torch.equal(first, second)


# ---- validation_loader -------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_validation_loader_gives_the_centre_crops_in_order(tmp_path, workers):
    sizes = [(40, 50), (32, 32), (20, 45)]  # the last one is padded
    for i, (height, width) in enumerate(sizes):
        write_png(tmp_path / f"t{i}.png", height, width, seed=i)
    images = Images(
        ("t0.png", "t1.png", "t2.png"),
        tuple(str(tmp_path / f"t{i}.png") for i in range(3)),
        str(tmp_path),
    )
    loader = validation_loader(images, (32, 32), batch_size=2, num_workers=workers)
    batches = list(loader)
    assert [batch.patch.shape[0] for batch in batches] == [2, 1]
    assert all(isinstance(batch, Item) and batch.skipped == () for batch in batches)
    expected = torch.stack([centre(read_image(source), (32, 32)) for source in images.sources])
    assert torch.equal(torch.cat([batch.patch for batch in batches]), expected)
    assert same_batches([b.patch for b in loader], [b.patch for b in batches])  # each pass


# ---- load_eval_images -----------------------------------------------------------------------------


def test_load_eval_images_decodes_the_test_images_whole(tmp_path, builtin):
    assert [name for name, _ in load_eval_images(None)] == list(BUILTIN_TEST)
    small = write_png(tmp_path / "test" / "small.png", 10, 12, seed=0)  # no size limit
    write_text(tmp_path / "test" / "broken.png")
    write_png(tmp_path / "train" / "a.png", 40, 40, seed=1)
    with pytest.warns(SkippedImage, match=r"broken\.png: not a readable image .*skipped"):
        images = load_eval_images(tmp_path)
    assert [name for name, _ in images] == ["small.png"]
    assert torch.equal(images[0][1], to_tensor(small))
    (tmp_path / "test" / "small.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one error line, no warning per file before it
        with pytest.raises(ValueError, match=r"^data .*no readable images .*the first: .*broken"):
            load_eval_images(tmp_path)


# ---- the crop property -------------------------------------------------------------------------


@st.composite
def image_and_patch(draw):
    patch_h, patch_w = draw(st.integers(16, 48)), draw(st.integers(16, 48))
    height = draw(st.integers(math.ceil((patch_h + 2) / 3), 80))
    width = draw(st.integers(math.ceil((patch_w + 2) / 3), 80))
    return random_image(height, width, draw(st.integers(0, 2**16))), (patch_h, patch_w)


@given(
    case=image_and_patch(),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 1000),
    index=st.integers(0, 9),
    train=st.booleans(),
)
def test_every_crop_is_a_patch_of_the_padded_image(case, seed, epoch, index, train):
    image, patch = case
    dataset = PatchDataset([image], patch, train=train, seed=seed, repeats=10)
    dataset.set_epoch(epoch)
    item = dataset[index]
    crop = item.patch
    assert crop.shape == (3, *patch) and item.skipped == ()
    found = windows(padded(image, patch), crop)
    assert found
    if not train:
        height, width = max(image.shape[1], patch[0]), max(image.shape[2], patch[1])
        assert ((height - patch[0]) // 2, (width - patch[1]) // 2) in found


def test_builtin_photographs_too_small_for_the_patch_are_skipped_by_name():
    train, _ = find_images(None)
    with pytest.warns(SkippedImage, match="chelsea: 300x451"):
        batches = TrainBatches(train, (960, 960), batch_size=1, seed=0)
    assert len(batches.dataset.sources) == len(train) - 1


# ---- hostile folders: FIFOs, sockets, devices, unreadable folders, huge images ---------------------

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX only")


class Hung(BaseException):
    """Raised by :func:`deadline`: a BaseException, so that no ``except OSError`` (as PIL's
    errors are caught) mistakes a blocked read for an unreadable file."""


@contextlib.contextmanager
def deadline(seconds: int = 20):
    """Fail the test, instead of hanging it, when the block runs past ``seconds``: SIGALRM
    interrupts an ``open`` blocked on a FIFO."""

    def expire(signum, frame):
        raise Hung(f"still running after {seconds} s: a read blocked")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def skipped_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if w.category is SkippedImage]


@needs_fifo
def test_a_fifo_in_the_data_is_skipped_with_a_warning_naming_it(tmp_path):
    for i in range(5):
        write_png(tmp_path / f"img{i}.png", 24, 24, seed=i)
    os.mkfifo(tmp_path / "blocks.png")  # would wait forever for a writer if opened
    os.mkfifo(tmp_path / "notes")  # no image suffix: not data, not worth a word
    with deadline(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = find_images(tmp_path)
        kept = validation_images(test, (16, 16))
        coded = load_eval_images(tmp_path)
        batch = next(TrainBatches(train, (16, 16), batch_size=4, seed=0).from_step(0))
    assert skipped_warnings(caught) == [
        f"{tmp_path / 'blocks.png'}: not a regular file (a FIFO); skipped"
    ]
    assert len(caught) == 1  # once, though the folder was listed twice
    assert train.names == ("img0.png", "img1.png", "img2.png", "img3.png")
    assert test.names == kept.names == ("img4.png",)
    assert [name for name, _ in coded] == [f"img{i}.png" for i in range(5)]
    assert batch.shape == (4, 3, 16, 16)


@needs_fifo
def test_fifos_sockets_devices_and_broken_links_are_one_warning_per_folder(tmp_path, monkeypatch):
    folder = tmp_path / "train"
    write_png(folder / "a.png", 24, 24, seed=0)
    write_png(tmp_path / "test" / "t.png", 24, 24, seed=1)
    os.mkfifo(folder / "f1.png")
    os.mkfifo(folder / "f2.JPG")
    monkeypatch.chdir(folder)  # a socket's path is limited to about 100 bytes: bind a short one
    server = socket.socket(socket.AF_UNIX)
    server.bind("s.png")
    os.symlink("/dev/null", folder / "null.png")  # a character device, through a link
    os.symlink(tmp_path / "nowhere.png", folder / "gone.png")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "sub" / "only.jpeg")
    try:
        with deadline(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train, _ = find_images(tmp_path)
    finally:
        server.close()
    assert train.names == ("a.png",)
    assert skipped_warnings(caught) == [
        f"{folder}: 5 entries are not regular files (2 FIFOs, a broken link, a character "
        "device, a socket; the first: f1.png); skipped",
        f"{folder / 'sub' / 'only.jpeg'}: not a regular file (a FIFO); skipped",
    ]
    assert len(caught) == 2


@needs_fifo
def test_a_name_with_a_newline_is_one_warning_naming_it(tmp_path):
    write_png(tmp_path / "a.png", 24, 24, seed=0)
    os.mkfifo(tmp_path / "two\nlines.png")
    with deadline(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        find_images(tmp_path)
    # The raw name: the command line's output escapes control characters, once.
    assert skipped_warnings(caught) == [
        f"{tmp_path}/two\nlines.png: not a regular file (a FIFO); skipped"
    ]


@needs_fifo
@pytest.mark.parametrize("checked", [True, False], ids=["checked", "replaced-after-the-check"])
def test_a_file_replaced_by_a_fifo_after_listing_is_refused_not_waited_on(
    tmp_path, monkeypatch, checked
):
    paths = [tmp_path / f"{name}.png" for name in "abc"]
    for i, path in enumerate(paths):
        write_png(path, 40, 40, seed=i)
    assert str(paths[1]) in find_images(tmp_path)[0].sources
    paths[1].unlink()
    os.mkfifo(paths[1])
    if not checked:  # the path replaced between the check and the open: the open must not block
        monkeypatch.setattr(data, "_check_regular", lambda path: None)
    why = f"{paths[1]}: not a readable image (a FIFO, not a regular file)"
    with deadline():
        for read in (read_image, image_size, read_array):
            with pytest.raises(ValueError) as info:
                read(paths[1])
            assert str(info.value) == why
        item = PatchDataset(paths, (32, 32), train=False)[1]
        with pytest.warns(SkippedImage) as caught:
            sources = (str(paths[1]), str(paths[2]))
            kept = validation_images(Images(("b.png", "c.png"), sources, "t"), (32, 32))
    assert item.skipped == (why,)
    assert torch.equal(item.patch, centre(read_image(paths[2]), (32, 32)))
    assert [str(w.message) for w in caught] == [f"{why}; skipped"]
    assert kept.sources == (str(paths[2]),)


def test_a_device_is_never_opened(tmp_path, monkeypatch):
    # Opening a device can act (a watchdog starts): it is refused from its stat alone.
    monkeypatch.setattr(data.os, "open", lambda *a, **k: pytest.fail("a file was opened"))
    with pytest.raises(ValueError, match=r"^/dev/null: not a readable image \(a character"):
        read_image("/dev/null")


def test_a_device_opened_in_a_files_place_is_refused_once_open(monkeypatch):
    monkeypatch.setattr(data, "_check_regular", lambda path: None)
    with pytest.raises(ValueError, match=r"^/dev/zero: not a readable image \(a character"):
        image_size("/dev/zero")  # would read zeros without end


def in_child_as_another_user(work, cwd):
    """``work()`` (a JSON-serializable result) in a forked child, in ``cwd``, as user 65534 when
    this process is root (root reads any folder, whatever its mode); None when this system does
    not let root become another user. Fails the test past 60 s."""
    cwd.chmod(0o755)  # the other user's way in; the pytest folders above stay closed to it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read)
            os.chdir(cwd)  # before dropping root: the pytest folders above are root's only
            if os.geteuid() == 0:
                try:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                except OSError:
                    os.write(write, b"null")
                    os._exit(0)
            os.write(write, json.dumps(work()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    try:
        with deadline(60), os.fdopen(read, "rb") as pipe:
            output = pipe.read()  # until the child exits
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output
    return json.loads(output)


def list_warnings(folder: str) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = find_images(folder)
    return {"train": train.names, "test": test.names, "warnings": skipped_warnings(caught)}


def test_an_unreadable_sub_folder_is_named_in_a_warning(tmp_path):
    data_dir = tmp_path / "data"
    for i in range(5):
        write_png(data_dir / f"img{i}.png", 24, 24, seed=i)
    write_png(data_dir / "closed" / "hidden.png", 24, 24, seed=9)
    write_png(data_dir / "shut" / "x.png", 24, 24, seed=8)
    write_png(data_dir / "shut" / "deeper" / "y.png", 24, 24, seed=7)
    (data_dir / "closed").chmod(0)  # neither listed nor searched
    (data_dir / "shut").chmod(0o444)  # listed, but its entries cannot be looked at
    try:
        got = in_child_as_another_user(lambda: list_warnings("data"), tmp_path)
    finally:
        (data_dir / "closed").chmod(0o755)
        (data_dir / "shut").chmod(0o755)
    if got is None:
        pytest.skip("running as root, and this system does not let root become another user")
    assert got["warnings"] == [
        "data/closed: a folder that cannot be read (permission denied); skipped",
        "data/shut: a folder that cannot be read (permission denied); skipped",
    ]
    assert got["train"] == ["img0.png", "img1.png", "img2.png", "img3.png"]
    assert got["test"] == ["img4.png"]


def test_an_unreadable_train_folder_is_an_error_naming_it(tmp_path):
    write_png(tmp_path / "data" / "train" / "a.png", 24, 24, seed=0)
    write_png(tmp_path / "data" / "test" / "t.png", 24, 24, seed=1)
    (tmp_path / "data" / "train").chmod(0)

    def listing():
        try:
            find_images("data")
        except ValueError as error:
            return str(error)
        return "no error"

    try:
        got = in_child_as_another_user(listing, tmp_path)
    finally:
        (tmp_path / "data" / "train").chmod(0o755)
    if got is None:
        pytest.skip("running as root, and this system does not let root become another user")
    assert got == "data data/train: not readable (permission denied)"


def png_header(height: int, width: int) -> bytes:
    """A PNG of ``height`` x ``width`` RGB pixels, as far as its header goes: its pixel data is a
    few bytes, so it costs nothing until decoded (and then fails, truncated)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_a_144_megapixel_image_is_named_in_its_warning(tmp_path):
    assert 12000 * 12000 > PIL.Image.MAX_IMAGE_PIXELS  # PIL warns, and reads it
    write_png(tmp_path / "coco" / "a.png", 24, 24, seed=0)
    write_png(tmp_path / "kodak" / "small.png", 40, 40, seed=1)
    huge = tmp_path / "kodak" / "huge.png"
    huge.write_bytes(png_header(12000, 12000))
    _, test = find_images(tmp_path / "coco", tmp_path / "kodak")
    with deadline(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = validation_images(test, (32, 32))
        assert image_size(huge) == (12000, 12000)
    assert kept.names == ("huge.png", "small.png")
    assert [w.category for w in caught] == [PIL.Image.DecompressionBombWarning]  # once
    message = str(caught[0].message)
    assert message.startswith(f"{huge}: Image size (144000000 pixels) exceeds limit of ")
    assert "\n" not in message
