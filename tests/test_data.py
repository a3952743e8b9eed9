"""Calibration / verification data: every source checked against the model's IO contract."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeconv.data import (
    Dataset,
    Preprocess,
    check_class_labels,
    load_dataset,
    random_dataset,
    verification_from_calibration,
)
from edgeconv.errors import BadInput
from edgeconv.model import IOContract, TensorSpec

sys.path.insert(0, str(Path(__file__).parent))
from helpers_onnx import H, W  # noqa: E402

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
COLOUR = (200, 100, 50)  # every channel differs: RGB vs BGR is visible


def contract(*inputs: tuple[str, tuple, str], layout: str | None = None) -> IOContract:
    return IOContract(
        inputs=tuple(TensorSpec(n, tuple(s), d, layout=layout) for n, s, d in inputs),
        outputs=(TensorSpec("logits", (1, 10), "float32"),),
    )


IMG = contract(("input", (1, 3, H, W), "float32"), layout="NCHW")
IMG_NHWC = contract(("input", (1, H, W, 3), "float32"), layout="NHWC")
IMG_B4 = contract(("input", (4, 3, H, W), "float32"), layout="NCHW")
IMG_DYN = contract(("input", ("N", 3, H, W), "float32"), layout="NCHW")
TWO = contract(("image", (1, 3, H, W), "float32"), ("mask", (1, 4), "int64"))


def samples(n: int, shape=(3, H, W), seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(dtype)


def write_image(path: Path, colour=COLOUR, size=(W, H), mode="RGB", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def bad(excinfo: pytest.ExceptionInfo, file: Path, *words: str) -> None:
    """A BadInput naming ``file`` (in .file and the one-line message) and the words."""
    exc = excinfo.value
    assert type(exc) is BadInput, type(exc)
    assert exc.exit_code == 2
    line = exc.one_line()
    assert "\n" not in line
    assert exc.file is not None and Path(exc.file) == file, (exc.file, file)
    assert str(file) in line, line
    for w in words:
        assert w.lower() in line.lower(), (w, line)


# -- .npz / .npy --------------------------------------------------------------------------
def test_npz_keyed_by_input_name_with_labels(tmp_path: Path) -> None:
    x, m = samples(5), np.arange(20).reshape(5, 4)
    f = tmp_path / "d.npz"
    np.savez(f, image=x, mask=m, labels=np.arange(5), unused=np.zeros(3))
    ds = load_dataset(f, TWO)
    assert ds.kind == "npz" and ds.source == str(f) and ds.meaningful
    assert len(ds) == 5 and set(ds.arrays) == {"image", "mask"}  # extra keys are ignored
    np.testing.assert_array_equal(ds.arrays["image"], x)
    np.testing.assert_array_equal(ds.arrays["mask"], m)
    np.testing.assert_array_equal(ds.labels, np.arange(5))
    assert ds.describe()["labels"] is True and ds.describe()["samples"] == 5
    feeds = list(ds.feeds(TWO))
    assert len(feeds) == 5
    feed, sl = feeds[2]
    assert sl == slice(2, 3)
    np.testing.assert_array_equal(feed["image"], x[2:3])
    np.testing.assert_array_equal(feed["mask"], m[2:3])
    assert feed["mask"].dtype == np.int64


def test_npz_single_key_feeds_a_single_input_model(tmp_path: Path) -> None:
    x = samples(3)
    f = tmp_path / "any.npz"
    np.savez(f, whatever=x, labels=np.array([1, 2, 3]))
    ds = load_dataset(f, IMG)
    assert list(ds.arrays) == ["input"] and len(ds) == 3
    np.testing.assert_array_equal(ds.arrays["input"], x)
    np.testing.assert_array_equal(ds.labels, [1, 2, 3])


def test_npy_and_dtype_cast_within_kind(tmp_path: Path) -> None:
    x = samples(4, dtype=np.float64)
    f = tmp_path / "d.npy"
    np.save(f, x)
    ds = load_dataset(f, IMG)
    assert ds.kind == "npy" and ds.labels is None and len(ds) == 4
    assert ds.arrays["input"].dtype == np.float32  # float64 -> float32 is fine
    np.testing.assert_allclose(ds.arrays["input"], x, rtol=1e-6)
    # int32 -> int64 likewise
    f2 = tmp_path / "d2.npz"
    np.savez(f2, image=samples(2), mask=np.ones((2, 4), np.int32))
    assert load_dataset(f2, TWO).arrays["mask"].dtype == np.int64


def test_uppercase_suffix(tmp_path: Path) -> None:
    f = tmp_path / "D.NPY"
    with open(f, "wb") as fh:
        np.save(fh, samples(2))
    assert len(load_dataset(f, IMG)) == 2


def test_sha256_identifies_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, samples(2, seed=1))
    np.save(b, samples(2, seed=2))
    assert load_dataset(a, IMG).sha256 != load_dataset(b, IMG).sha256
    assert load_dataset(a, IMG).sha256 == load_dataset(a, IMG).sha256


def test_limit(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, input=samples(10), labels=np.arange(10))
    ds = load_dataset(f, IMG, limit=3)
    assert len(ds) == 3 and len(ds.labels) == 3
    assert len(list(ds.feeds(IMG))) == 3
    assert len(list(load_dataset(f, IMG).feeds(IMG, limit=2))) == 2


# -- batching -----------------------------------------------------------------------------
def test_fixed_batch_is_fed_in_chunks(tmp_path: Path) -> None:
    x = samples(10)
    f = tmp_path / "d.npz"
    np.savez(f, input=x, labels=np.arange(10))
    ds = load_dataset(f, IMG_B4)
    assert ds.batched["input"] is True
    feeds = list(ds.feeds(IMG_B4))
    assert [sl for _, sl in feeds] == [slice(0, 4), slice(4, 8)]  # whole batches only
    for feed, sl in feeds:
        assert feed["input"].shape == (4, 3, H, W)
        np.testing.assert_array_equal(feed["input"], x[sl])


def test_samples_that_are_whole_batches(tmp_path: Path) -> None:
    x = samples(3, shape=(4, 3, H, W))  # [N, 4,3,16,16]: each sample is a full input
    f = tmp_path / "d.npy"
    np.save(f, x)
    ds = load_dataset(f, IMG_B4)
    assert ds.batched["input"] is False
    feeds = list(ds.feeds(IMG_B4))
    assert len(feeds) == 3
    np.testing.assert_array_equal(feeds[1][0]["input"], x[1])
    assert feeds[1][1] == slice(1, 2)


def test_dynamic_batch_feeds_one_sample_at_a_time(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, samples(3))
    feeds = list(load_dataset(f, IMG_DYN).feeds(IMG_DYN))
    assert [feed["input"].shape for feed, _ in feeds] == [(1, 3, H, W)] * 3


def test_fewer_samples_than_the_fixed_batch(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, samples(2))
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG_B4)
    bad(e, f, "2 sample", "batch size 4")


# -- random -------------------------------------------------------------------------------
def test_random_is_seeded_and_not_meaningful() -> None:
    a = load_dataset("random", IMG_B4, seed=3)
    b = random_dataset(IMG_B4, 8, seed=3)
    c = load_dataset(None, IMG_B4, seed=4)
    assert a.kind == "random" and not a.meaningful and a.describe()["meaningful"] is False
    np.testing.assert_array_equal(a.arrays["input"], b.arrays["input"])
    assert not np.array_equal(a.arrays["input"], c.arrays["input"])
    assert a.sha256 == b.sha256 != c.sha256
    assert a.arrays["input"].shape == (8, 4, 3, H, W)  # each sample is a full input
    feeds = list(a.feeds(IMG_B4))
    assert len(feeds) == 8 and feeds[0][0]["input"].shape == (4, 3, H, W)
    assert len(load_dataset("random", IMG, limit=2)) == 2


def test_random_dtypes_and_dynamic_batch() -> None:
    ds = random_dataset(TWO, 2, seed=0)
    assert ds.arrays["image"].dtype == np.float32 and ds.arrays["mask"].dtype == np.int64
    dyn = random_dataset(IMG_DYN, 2)
    assert dyn.arrays["input"].shape == (2, 1, 3, H, W)


def test_random_refuses_dynamic_non_batch_axes() -> None:
    io = contract(("input", (1, 3, "height", "width"), "float32"))
    with pytest.raises(BadInput, match="dynamic axes 'height'"):
        random_dataset(io, 2)


# -- images -------------------------------------------------------------------------------
def test_images_rgb_nchw_scaled(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    write_image(folder / "a.png", COLOUR)
    write_image(folder / "b.png", RED)
    ds = load_dataset(folder, IMG)
    x = ds.arrays["input"]
    assert ds.kind == "images" and ds.source == str(folder) and ds.labels is None
    assert x.shape == (2, 3, H, W) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[0, :, 5, 7], np.array(COLOUR) / 255, rtol=1e-6)  # files in sorted order
    np.testing.assert_allclose(x[1, :, 0, 0], [1, 0, 0])
    np.testing.assert_allclose(x[0, 0], 200 / 255)  # constant planes: the channel is the first axis


def test_images_bgr(tmp_path: Path) -> None:
    write_image(tmp_path / "i" / "a.png", COLOUR)
    x = load_dataset(tmp_path / "i", IMG, preprocess=Preprocess(bgr=True)).arrays["input"]
    np.testing.assert_allclose(x[0, :, 3, 3], np.array([50, 100, 200]) / 255, rtol=1e-6)


def test_images_mean_std_in_model_channel_order(tmp_path: Path) -> None:
    write_image(tmp_path / "i" / "a.png", COLOUR)
    pre = Preprocess(mean=(0.5, 0.25, 0.125), std=(0.5, 0.25, 2.0))
    x = load_dataset(tmp_path / "i", IMG, preprocess=pre).arrays["input"]
    want = (np.array(COLOUR) / 255 - [0.5, 0.25, 0.125]) / [0.5, 0.25, 2.0]
    np.testing.assert_allclose(x[0, :, 0, 0], want, rtol=1e-5)
    # BGR first, then the mean/std of the model's channel 0 (= blue)
    x = load_dataset(tmp_path / "i", IMG, preprocess=Preprocess(mean=pre.mean, std=pre.std, bgr=True)).arrays["input"]
    want = (np.array(COLOUR[::-1]) / 255 - [0.5, 0.25, 0.125]) / [0.5, 0.25, 2.0]
    np.testing.assert_allclose(x[0, :, 0, 0], want, rtol=1e-5)
    # a single value applies to every channel; scale is configurable
    x = load_dataset(tmp_path / "i", IMG, preprocess=Preprocess(mean=(100.0,), std=(2.0,), scale=1.0)).arrays["input"]
    np.testing.assert_allclose(x[0, :, 0, 0], (np.array(COLOUR) - 100) / 2)


def test_images_nhwc(tmp_path: Path) -> None:
    write_image(tmp_path / "i" / "a.png", COLOUR)
    x = load_dataset(tmp_path / "i", IMG_NHWC).arrays["input"]
    assert x.shape == (1, H, W, 3)
    np.testing.assert_allclose(x[0, 2, 9], np.array(COLOUR) / 255, rtol=1e-6)
    # the layout is guessed from the shape when the contract has none
    io = contract(("input", (1, H, W, 3), "float32"))
    assert load_dataset(tmp_path / "i", io).arrays["input"].shape == (1, H, W, 3)
    # and Preprocess.layout (--layout) wins over the contract
    io = contract(("input", (1, 3, 16, 3), "float32"))  # ambiguous: guessed NCHW
    assert load_dataset(tmp_path / "i", io).arrays["input"].shape == (1, 3, 16, 3)
    x = load_dataset(tmp_path / "i", io, preprocess=Preprocess(layout="NHWC")).arrays["input"]
    assert x.shape == (1, 3, 16, 3)
    np.testing.assert_allclose(x[0, 1, 2], np.array(COLOUR) / 255, rtol=1e-6)


def test_images_channel_count_not_1_or_3(tmp_path: Path) -> None:
    write_image(tmp_path / "i" / "a.png")
    # a wrong --layout makes C=16; a 4-channel input has no image equivalent either
    for io, pre in ((IMG, Preprocess(layout="NHWC")), (contract(("input", (1, 4, H, W), "float32")), None)):
        with pytest.raises(BadInput) as e:
            load_dataset(tmp_path / "i", io, preprocess=pre)
        bad(e, tmp_path / "i", "channel")


def test_images_resized_to_the_models_size(tmp_path: Path) -> None:
    # 64x32 (w x h): left half red, right half blue
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :32] = RED
    img[:, 32:] = BLUE
    folder = tmp_path / "i"
    folder.mkdir()
    Image.fromarray(img).save(folder / "wide.png")
    x = load_dataset(folder, IMG).arrays["input"]
    assert x.shape == (1, 3, H, W)
    np.testing.assert_allclose(x[0, :, :, :6], np.broadcast_to(np.array([1, 0, 0.0])[:, None, None], (3, H, 6)), atol=1e-6)
    np.testing.assert_allclose(x[0, :, :, -6:], np.broadcast_to(np.array([0, 0, 1.0])[:, None, None], (3, H, 6)), atol=1e-6)
    # the resize is Pillow's bilinear on the RGB image, value for value
    ref = np.asarray(Image.fromarray(img).resize((W, H), Image.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(x[0], ref.transpose(2, 0, 1), atol=1e-6)


def test_images_jpeg_grey_rgba_and_subfolders(tmp_path: Path) -> None:
    folder = tmp_path / "i"
    write_image(folder / "a.jpg", COLOUR, size=(40, 30))
    write_image(folder / "sub" / "b.JPEG", 77, mode="L", fmt="JPEG")  # grey -> RGB, suffix case-insensitive
    write_image(folder / "c.png", (*COLOUR, 0), mode="RGBA")  # alpha dropped
    (folder / "notes.txt").write_text("not an image")  # ignored
    x = load_dataset(folder, IMG).arrays["input"]
    assert x.shape == (3, 3, H, W)
    np.testing.assert_allclose(x[0, :, 8, 8], np.array(COLOUR) / 255, atol=3 / 255)  # JPEG is lossy
    np.testing.assert_allclose(x[1, :, 8, 8], np.array(COLOUR) / 255, rtol=1e-6)  # c.png
    np.testing.assert_allclose(x[2, :, 8, 8], [77 / 255] * 3, atol=2 / 255)  # sub/b.JPEG
    # a one-channel model gets grey images
    io = contract(("input", (1, 1, H, W), "float32"))
    g = load_dataset(folder, io).arrays["input"]
    assert g.shape == (3, 1, H, W)
    assert abs(g[2, 0, 4, 4] - 77 / 255) < 2 / 255


def test_images_fed_in_batches_of_four(tmp_path: Path) -> None:
    folder = tmp_path / "i"
    for i in range(8):
        write_image(folder / f"{i}.png", (i * 30, 0, 0))
    ds = load_dataset(folder, IMG_B4)
    feeds = list(ds.feeds(IMG_B4))
    assert len(feeds) == 2 and feeds[1][0]["input"].shape == (4, 3, H, W)
    np.testing.assert_allclose(feeds[1][0]["input"][:, 0, 0, 0], [120 / 255, 150 / 255, 180 / 255, 210 / 255], rtol=1e-6)


# -- errors: every one a BadInput naming the file -----------------------------------------
def test_wrong_shape(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, samples(4, shape=(3, 8, 8)))
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG, what="--calib")
    bad(e, f, "--calib", "[4,3,8,8]", "[1,3,16,16]")


def test_wrong_rank(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, np.zeros((3, H, W), np.float32))  # one sample without its N axis
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, "shape [3,16,16]")


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.complex64])
def test_wrong_dtype_kind(tmp_path: Path, dtype) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, input=np.ones((2, 3, H, W), dtype=dtype))
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, np.dtype(dtype).name, "expects float32")


def test_float_for_int_input(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, image=samples(2), mask=np.ones((2, 4), np.float32))
    with pytest.raises(BadInput) as e:
        load_dataset(f, TWO)
    bad(e, f, "'mask'", "int64")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("value", [np.nan, np.inf, 1e300])  # 1e300 overflows float32
def test_nan_or_inf(tmp_path: Path, value: float) -> None:
    x = samples(3).astype(np.float64)
    x[1, 2, 3, 4] = value
    f = tmp_path / "d.npy"
    np.save(f, x)
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, "NaN or Inf")


def test_labels_and_inputs_disagree(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, input=samples(4), labels=np.arange(5))
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, "different numbers of samples", "[4, 5]")


def test_inputs_disagree(tmp_path: Path) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, image=samples(4), mask=np.ones((3, 4), np.int64))
    with pytest.raises(BadInput) as e:
        load_dataset(f, TWO)
    bad(e, f, "different numbers of samples")


@pytest.mark.parametrize(
    "arrays, io, words",
    [
        ({"image": samples(2)}, TWO, ["no array for input 'mask'", "image"]),
        ({"a": samples(2), "b": samples(2)}, IMG, ["no array for input 'input'"]),
        ({"labels": np.arange(2)}, IMG, ["holds: nothing"]),
    ],
    ids=["two-inputs", "two-keys", "labels-only"],
)
def test_missing_key(tmp_path: Path, arrays, io, words) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, **arrays)
    with pytest.raises(BadInput) as e:
        load_dataset(f, io)
    bad(e, f, *words)


def test_npy_for_two_inputs(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, samples(2))
    with pytest.raises(BadInput) as e:
        load_dataset(f, TWO)
    bad(e, f, "single-input")


def test_no_samples(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, np.zeros((0, 3, H, W), np.float32))
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, "no samples")


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"\x93NUMPY\x01\x00"], ids=["empty", "garbage", "truncated"])
@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_unreadable_array_file(tmp_path: Path, content: bytes, suffix: str) -> None:
    f = tmp_path / f"d{suffix}"
    f.write_bytes(content)
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, "not a readable")


def test_pickled_object_array_refused(tmp_path: Path) -> None:
    f = tmp_path / "d.npy"
    np.save(f, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, "not a readable")


def test_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(BadInput) as e:
        load_dataset(folder, IMG, what="--calib")
    bad(e, folder, "--calib", "no images")


@pytest.mark.parametrize("kind", ["garbage", "truncated-png", "truncated-jpg", "bomb"])
def test_unreadable_image(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "i"
    write_image(folder / "a_good.png")
    if kind == "garbage":
        broken = folder / "b.png"
        broken.write_bytes(b"this is not a PNG at all" * 4)
    elif kind == "bomb":  # 200 Mpixel, 24 kB: Pillow refuses it
        broken = folder / "b.png"
        Image.new("1", (20000, 10000)).save(broken)
    else:
        suffix = ".png" if kind == "truncated-png" else ".jpg"
        full = write_image(tmp_path / f"full{suffix}", size=(64, 64))
        broken = folder / f"b{suffix}"
        broken.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(BadInput) as e:
        load_dataset(folder, IMG)
    fmt = "JPEG" if broken.suffix == ".jpg" else "PNG"
    bad(e, broken, f"not a {fmt} image" if kind == "garbage" else f"cannot read the {fmt} image")


def test_images_for_a_non_image_input(tmp_path: Path) -> None:
    write_image(tmp_path / "i" / "a.png")
    for io in (contract(("x", (1, 10), "float32")), TWO):
        with pytest.raises(BadInput) as e:
            load_dataset(tmp_path / "i", io)
        bad(e, tmp_path / "i")


def test_images_with_dynamic_size(tmp_path: Path) -> None:
    write_image(tmp_path / "i" / "a.png")
    io = contract(("input", (1, 3, "h", "w"), "float32"), layout="NCHW")
    with pytest.raises(BadInput) as e:
        load_dataset(tmp_path / "i", io)
    bad(e, tmp_path / "i", "--input-shape")


@pytest.mark.parametrize("pre", [Preprocess(mean=(0.5, 0.5)), Preprocess(std=(0.2, 0.0, 0.2)), Preprocess(std=(0.0,))])
def test_images_bad_mean_std(tmp_path: Path, pre: Preprocess) -> None:
    write_image(tmp_path / "i" / "a.png")
    with pytest.raises(BadInput) as e:
        load_dataset(tmp_path / "i", IMG, preprocess=pre)
    bad(e, tmp_path / "i", "1 or 3 value")


@pytest.mark.parametrize("name", ["d.csv", "d.pt", "data"])
def test_unsupported_suffix(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_text("1,2,3\n")
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG)
    bad(e, f, ".npz or .npy file or a folder of images")


def test_missing_path(tmp_path: Path) -> None:
    f = tmp_path / "nope.npz"
    with pytest.raises(BadInput) as e:
        load_dataset(f, IMG, what="--data")
    bad(e, f, "--data", "does not exist")


def test_dataset_len_of_no_arrays() -> None:
    assert len(Dataset({}, "arrays", None, "")) == 0


# -- class labels (the classification accuracy) -------------------------------------------------------------------
@pytest.mark.parametrize(("labels", "words"), [
    (np.zeros((4, 10)), "not one class index per sample"),  # one-hot rows
    (np.zeros((4, 3, 5)), "not one class index per sample"),  # boxes
    (np.array([0.0, 1.5, 2.0, 3.0]), "non-integral values (e.g. 1.5)"),
    (np.array([0, -1, 2, 3]), "negative class index"),
])
def test_class_labels_refused(tmp_path: Path, labels: np.ndarray, words: str) -> None:
    f = tmp_path / "d.npz"
    np.savez(f, input=samples(4), labels=labels)
    ds = load_dataset(f, IMG)  # the loader checks numbers; what they mean is the metric's business
    with pytest.raises(BadInput) as e:
        check_class_labels(ds.labels, "--data", str(f))
    bad(e, f, "--data", words)


def test_class_labels_accepted() -> None:
    assert check_class_labels(np.array([[1], [2]]), "--data", None).tolist() == [1, 2]
    got = check_class_labels(np.array([1.0, 2.0]), "--data", None)
    assert got.dtype == np.int64 and got.tolist() == [1, 2]


# -- sequences (--state) --------------------------------------------------------------------------------------------
STREAM = IOContract(inputs=(TensorSpec("input", (1, 16), "float32"), TensorSpec("state", (1, 32), "float32")),
                    outputs=(TensorSpec("output", (1, 8), "float32"), TensorSpec("stateN", (1, 32), "float32")))


def test_sequences_with_and_without_batch_axis_and_initial_states() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 16)).astype(np.float32)  # 3 sequences x 5 steps, no batch axis
    ds = load_dataset({"input": x}, STREAM, states=("state",))
    assert (len(ds), ds.steps, ds.states) == (3, 5, ("state",))
    assert ds.describe()["sequences"] == 3 and ds.describe()["steps"] == 5
    seqs = list(ds.sequences(STREAM))
    assert len(seqs) == 3 and seqs[0][0] == {"state": None} and len(seqs[0][1]) == 5
    assert seqs[1][1][2]["input"].shape == (1, 16) and np.array_equal(seqs[1][1][2]["input"][0], x[1, 2])
    full = load_dataset({"input": x[:, :, None], "state": np.ones((3, 1, 32), np.float32)}, STREAM, states=("state",))
    init, steps = next(full.sequences(STREAM, limit=1))
    assert init["state"].shape == (1, 32) and steps[0]["input"].shape == (1, 16)
    assert len(list(full.sequences(STREAM, limit=2))) == 2
    rnd = load_dataset(None, STREAM, states=("state",), random_samples=4)
    assert (len(rnd), rnd.steps, rnd.meaningful) == (4, 8, False)


def test_bad_sequences(tmp_path: Path) -> None:
    f = tmp_path / "s.npz"
    np.savez(f, input=np.zeros((3, 16), np.float32))  # no time axis
    with pytest.raises(BadInput) as e:
        load_dataset(f, STREAM, states=("state",))
    bad(e, f, "N sequences of T steps")
    np.savez(f, input=np.zeros((3, 5, 16), np.float32), state=np.zeros((2, 32), np.float32))
    with pytest.raises(BadInput) as e:
        load_dataset(f, STREAM, states=("state",))
    bad(e, f, "differ in number")
    dyn = IOContract(inputs=(STREAM.inputs[0], TensorSpec("state", (1, "h"), "float32")), outputs=STREAM.outputs)
    with pytest.raises(BadInput) as e:
        load_dataset({"input": np.zeros((2, 3, 16), np.float32)}, dyn, states=("state",))
    assert "state input 'state' [1,h] has dynamic axes" in e.value.one_line()
    assert "--input-shape" in e.value.one_line()


def test_a_dynamic_state_without_data_names_state_and_input_shape() -> None:
    dyn = IOContract(inputs=(STREAM.inputs[0], TensorSpec("state", (1, "h"), "float32")),
                     outputs=(STREAM.outputs[0], TensorSpec("stateN", (1, "h"), "float32")))
    with pytest.raises(BadInput) as e:
        random_dataset(dyn, 4)
    line = e.value.one_line()
    assert "--input-shape state:1,?" in line and "--state state:stateN" in line


# -- verification inputs from the calibration set -----------------------------------------------------------------
def test_held_out_calibration_samples(tmp_path: Path) -> None:
    f = tmp_path / "c.npz"
    x = samples(40)
    np.savez(f, input=x)
    used = load_dataset(f, IMG, what="--calib", limit=20)  # what a target with calib_limit=20 calibrated on
    held = verification_from_calibration(used, IMG, 64)
    assert held.kind == "calibration-held-out" and len(held) == 20 and held.meaningful
    assert np.array_equal(held.arrays["input"], x[20:])
    assert "did not use" in held.describe()["note"]
    fresh = verification_from_calibration(str(f), IMG, 8)  # never calibrated on: every sample is held out
    assert fresh.kind == "calibration-held-out" and len(fresh) == 8


def test_drawn_from_calibration_statistics(tmp_path: Path) -> None:
    f = tmp_path / "c.npz"
    x = np.random.default_rng(0).uniform(0.2, 0.8, (30, 3, H, W)).astype(np.float32)
    np.savez(f, input=x)
    used = load_dataset(f, IMG, what="--calib")
    drawn = verification_from_calibration(used, IMG, 16, seed=3)
    assert drawn.kind == "calibration-drawn" and len(drawn) == 16 and drawn.meaningful
    d = drawn.arrays["input"]
    assert d.dtype == np.float32 and d.min() >= x.min() and d.max() <= x.max()
    assert not any(np.array_equal(d[0], s) for s in x)  # not copies of the calibration samples
    assert "drawn from the 30 calibration samples" in drawn.describe()["note"]
    assert verification_from_calibration("random", IMG, 8) is None
    assert verification_from_calibration(random_dataset(IMG, 8), IMG, 8) is None
