"""lic_train.trainer.data: the built-in photographs, array and file conversion (16-bit included), the folder
layouts and their split rule, skipped files, and the reproducible, reflect-padded patches."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from lic_train.trainer.data import (  # noqa: E402
    BUILTIN_TEST,
    BUILTIN_TRAIN,
    PatchDataset,
    SkippedImage,
    builtin_images,
    load_split,
    read_image,
    to_tensor,
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
        warnings.simplefilter("error")  # nothing is skipped at 256 x 256
        train, test = load_split(None, (256, 256))
    assert [name for name, _ in train] == list(BUILTIN_TRAIN)
    assert [name for name, _ in test] == list(BUILTIN_TEST)
    for name, image in train + test:
        assert torch.equal(image, builtin[name])


def test_builtin_image_too_small_for_a_large_patch_is_skipped():
    # chelsea is 300 px tall; a 1024 patch needs ceil(1026 / 3) = 342.
    with pytest.warns(SkippedImage, match=r"chelsea: 300x451 \(HxW\) is too small"):
        train, _ = load_split(None, (1024, 1024))
    assert "chelsea" not in [name for name, _ in train]
    assert len(train) == len(BUILTIN_TRAIN) - 1


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


# ---- load_split on folders ---------------------------------------------------------------------


def test_train_and_test_folders(tmp_path):
    a = write_png(tmp_path / "train" / "b.png", 70, 80, seed=1)
    b = write_png(tmp_path / "train" / "a" / "z.PNG", 64, 64, seed=2)
    c = write_png(tmp_path / "test" / "c.jpeg", 30, 20, seed=3)  # small test images are kept
    (tmp_path / "train" / "readme.txt").write_text("ignored: not an image suffix")
    write_png(tmp_path / "train" / ".hidden" / "x.png", 64, 64, seed=4)
    (tmp_path / "train" / "._b.png").write_bytes(b"macOS metadata, ignored")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, test = load_split(tmp_path, (64, 64))
    assert [name for name, _ in train] == ["a/z.PNG", "b.png"]
    assert torch.equal(train[0][1], to_tensor(b)) and torch.equal(train[1][1], to_tensor(a))
    assert [name for name, _ in test] == ["c.jpeg"]
    assert test[0][1].shape == (3, 30, 20)
    with Image.open(tmp_path / "test" / "c.jpeg") as jpeg:  # lossy: compare with PIL's decoding
        assert torch.equal(test[0][1], to_tensor(np.asarray(jpeg)))
    assert np.abs(test[0][1].numpy().transpose(1, 2, 0) - c / 255).mean() < 0.2


@pytest.mark.parametrize(
    ("count", "test_indices"),
    [(1, [0]), (2, [1]), (4, [3]), (5, [4]), (9, [4]), (10, [4, 9]), (12, [4, 9])],
)
def test_flat_folder_every_fifth_image_tests(tmp_path, count, test_indices):
    # Names chosen so that sorting by relative path differs from creation order.
    names = sorted(f"{'sub/' if i % 3 == 0 else ''}img{i:02d}.png" for i in range(count))
    for i, name in enumerate(names):
        write_png(tmp_path / name, 64, 64, seed=i)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = load_split(tmp_path, (64, 64))
    assert [name for name, _ in test] == [names[i] for i in test_indices]
    if count == 1:
        assert [name for name, _ in train] == names
        assert any("both to train and to test" in str(w.message) for w in caught)
    else:
        assert [name for name, _ in train] == [
            n for i, n in enumerate(names) if i not in test_indices
        ]
        assert not caught


def test_unreadable_file_is_skipped_with_a_warning_and_the_rest_loads(tmp_path):
    for i in range(3):
        write_png(tmp_path / "train" / f"ok{i}.png", 64, 64, seed=i)
    write_png(tmp_path / "test" / "t.png", 64, 64, seed=9)
    (tmp_path / "train" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.warns(SkippedImage, match=r"broken\.jpg: not a readable image .*skipped") as caught:
        train, test = load_split(tmp_path, (64, 64))
    assert len(caught) == 1
    assert [name for name, _ in train] == ["ok0.png", "ok1.png", "ok2.png"]
    assert [name for name, _ in test] == ["t.png"]


def test_too_small_training_image_is_skipped_naming_its_size(tmp_path):
    write_png(tmp_path / "train" / "big.png", 80, 90, seed=0)
    write_png(tmp_path / "train" / "small.png", 20, 30, seed=1)  # 64 needs >= 22 per side
    write_png(tmp_path / "train" / "edge.png", 22, 22, seed=2)  # exactly enough
    write_png(tmp_path / "test" / "tiny.png", 10, 10, seed=3)
    with pytest.warns(SkippedImage, match=r"small\.png: 20x30 \(HxW\) .*64x64 patch") as caught:
        train, test = load_split(tmp_path, (64, 64))
    assert len(caught) == 1
    assert [name for name, _ in train] == ["big.png", "edge.png"]
    assert [name for name, _ in test] == ["tiny.png"]


def test_only_too_small_training_images_is_an_error(tmp_path):
    write_png(tmp_path / "train" / "small.png", 20, 30, seed=1)
    write_png(tmp_path / "test" / "t.png", 64, 64, seed=2)
    with pytest.warns(SkippedImage), pytest.raises(ValueError) as info:
        load_split(tmp_path, (64, 64))
    message = str(info.value)
    assert message.startswith(f"--data {tmp_path}: no training images left")
    assert "1 too small for the 64x64 patch" in message


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ("missing", "no such folder"),
        ("file", "not a folder"),
        ("empty", "no training images left"),
        ("train only", "has a train/ folder but no test/ folder"),
        ("empty test", "no test images"),
        ("unreadable only", "no training images left"),
    ],
)
def test_folder_errors_name_data_and_the_path(tmp_path, layout, match):
    data = tmp_path / "data"
    if layout == "file":
        data.write_text("")
    elif layout == "empty":
        data.mkdir()
    elif layout == "train only":
        write_png(data / "train" / "a.png", 64, 64, seed=0)
    elif layout == "empty test":
        write_png(data / "train" / "a.png", 64, 64, seed=0)
        (data / "test").mkdir()
    elif layout == "unreadable only":
        data.mkdir()
        (data / "a.png").write_text("text")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImage)
        with pytest.raises(ValueError, match=match) as info:
            load_split(data, (64, 64))
    assert str(info.value).startswith(f"--data {data}: ")


@pytest.mark.parametrize(
    "patch_size", [(8, 64), (64, 15), (64,), (64, 64, 64), (64.0, 64), (True, 64), 64]
)
def test_patch_size_must_be_two_integers_of_at_least_16(tmp_path, patch_size):
    with pytest.raises(ValueError, match=r"patch_size must be two integers >= 16 .*got"):
        load_split(tmp_path, patch_size)
    with pytest.raises(ValueError, match="patch_size must be"):
        PatchDataset([random_image(64, 64)], patch_size, train=True)


# ---- PatchDataset ----------------------------------------------------------------------------


def test_patches_have_the_patch_shape_and_length_counts_repeats():
    images = [random_image(100, 120, 0), random_image(70, 64, 1)]
    dataset = PatchDataset(images, (64, 48), train=True, repeats=3)
    assert len(dataset) == 6
    for index in range(len(dataset)):
        patch = dataset[index]
        assert patch.shape == (3, 64, 48) and patch.dtype == torch.float32
        assert patch.is_contiguous()
        assert windows(images[index % 2], patch)  # from image index % len(images)
    with pytest.raises(IndexError):
        dataset[6]
    assert torch.equal(dataset[-1], dataset[5])


def test_crops_are_a_function_of_seed_epoch_and_index_only():
    images = [random_image(128, 128, 0)]
    first = PatchDataset(images, (64, 64), train=True, seed=7, repeats=8)
    crops = [first[i] for i in range(8)]
    assert all(torch.equal(first[i], crops[i]) for i in range(8))  # the same item twice
    torch.manual_seed(123)  # the global random state plays no part
    resumed = PatchDataset(images, (64, 64), train=True, seed=7, repeats=8)
    assert all(torch.equal(resumed[i], crops[i]) for i in range(8))  # a resumed run
    positions = {windows(images[0], crop)[0] for crop in crops}
    assert len(positions) >= 6  # indices differ
    first.set_epoch(1)
    resumed.set_epoch(1)
    later = [first[i] for i in range(8)]
    assert all(torch.equal(resumed[i], later[i]) for i in range(8))
    assert sum(torch.equal(a, b) for a, b in zip(crops, later, strict=True)) <= 1  # epochs differ
    other_seed = PatchDataset(images, (64, 64), train=True, seed=8, repeats=8)
    assert sum(torch.equal(other_seed[i], crops[i]) for i in range(8)) <= 1


def test_dataloader_workers_see_the_same_crops():
    dataset = PatchDataset([random_image(96, 96, 3)] * 2, (32, 32), train=True, seed=1, repeats=4)
    dataset.set_epoch(5)
    single = list(torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=0))
    multi = list(torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2))
    assert len(single) == len(multi) == 3
    assert all(torch.equal(a, b) for a, b in zip(single, multi, strict=True))


@pytest.mark.parametrize(("height", "width"), [(40, 100), (41, 100), (100, 33), (30, 31)])
def test_small_sides_are_reflect_padded_like_torch(height, width):
    image = random_image(height, width, 4)
    patch = (64, 64)
    reference = padded(image, patch)
    dataset = PatchDataset([image], patch, train=True, repeats=10)
    for index in range(10):
        found = windows(reference, dataset[index])
        assert found, index
        top, left = found[0]
        assert height >= 64 or top == 0
        assert width >= 64 or left == 0


@pytest.mark.parametrize("patch", [16, 17, 18, 64, 256])
def test_the_smallest_paddable_side_is_torchs(patch):
    smallest = math.ceil((patch + 2) / 3)
    ok = random_image(smallest, smallest)
    assert PatchDataset([ok], (patch, patch), train=False)[0].shape == (3, patch, patch)
    too_small = random_image(smallest - 1, patch)
    with pytest.raises(RuntimeError):  # torch itself refuses one pixel less
        padded(too_small, (patch, patch))
    with pytest.raises(ValueError, match=rf"images\[0\]: {smallest - 1}x{patch} \(HxW\)"):
        PatchDataset([too_small], (patch, patch), train=True)


def test_test_patches_are_the_centre_crop_every_epoch():
    image = random_image(100, 121, 5)
    dataset = PatchDataset([image], (64, 64), train=False, repeats=3)
    expected = image[:, 18:82, 28:92]
    for epoch in (0, 4):
        dataset.set_epoch(epoch)
        assert all(torch.equal(dataset[i], expected) for i in range(3))
    small = random_image(41, 50, 6)
    centre = PatchDataset([small], (64, 64), train=False)[0]
    assert torch.equal(centre, F.pad(small, (7, 7, 11, 12), mode="reflect"))


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
    with pytest.raises(ValueError, match="images must hold at least one"):
        PatchDataset([], (64, 64), train=True)
    with pytest.raises(ValueError, match="epoch must be"):
        PatchDataset([random_image(64, 64)], (64, 64), train=True).set_epoch(-1)


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
    crop = dataset[index]
    assert crop.shape == (3, *patch)
    found = windows(padded(image, patch), crop)
    assert found
    if not train:
        height, width = max(image.shape[1], patch[0]), max(image.shape[2], patch[1])
        assert ((height - patch[0]) // 2, (width - patch[1]) // 2) in found
