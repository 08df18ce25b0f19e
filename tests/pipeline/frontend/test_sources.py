"""Data sources and image preprocessing: each step against numpy written out, and one error line per bad source."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeopt.errors import DataError
from edgeopt.ir import TensorInfo
from edgeopt.pipeline.frontend.preprocess import Preprocess, parse_preprocess
from edgeopt.pipeline.frontend.sources import (
    ArraySource,
    checked_batches,
    open_source,
    open_sources,
    read_all,
    sized_batches,
)

RNG = np.random.default_rng(3)


def _png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_parse_pairs_and_toml(tmp_path: Path):
    spec = "resize=256,crop=224x200,scale=1/255,mean=[0.485,0.456,0.406],std=[0.229,0.224,0.225],order=BGR,layout=nhwc"
    p = parse_preprocess(spec)
    assert p == Preprocess(resize=256, crop=(224, 200), scale=1 / 255, mean=(0.485, 0.456, 0.406),
                           std=(0.229, 0.224, 0.225), order="bgr", layout="nhwc")
    toml = tmp_path / "p.toml"
    toml.write_text('resize = "256"\ncrop = [224, 200]\nscale = "1/255"\nmean = [0.485, 0.456, 0.406]\n'
                    'std = [0.229, 0.224, 0.225]\norder = "bgr"\nlayout = "nhwc"\n')
    assert parse_preprocess(toml) == p


@pytest.mark.parametrize(("spec", "needle"), [
    ("resize=256,size=3", "unknown preprocess key(s) size"),
    ("order=yuv", "order='yuv'"),
    ("mean=[1,2]", "mean has 2 values"),
    ("std=0", "std holds a zero"),
    ("crop=abc", "crop='abc' is not a size"),
    ("resize", "'resize' is not key=value"),
    ("scale=1/0", "scale='1/0' is not a number"),
])
def test_bad_preprocess_is_one_line(spec: str, needle: str):
    with pytest.raises(DataError) as err:
        parse_preprocess(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_resize_crop_normalize_layout_against_numpy(tmp_path: Path):
    pixels = RNG.integers(0, 256, (40, 60, 3))
    image = Image.fromarray(pixels.astype(np.uint8))
    p = Preprocess(resize=20, crop=(16, 16), scale=0.5, offset=1.0, mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 8.0),
                   order="bgr", layout="nhwc")
    resized = np.asarray(image.resize((30, 20), Image.Resampling.BILINEAR), np.float32)  # shorter side 40 -> 20
    cropped = resized[2:18, 7:23, ::-1]  # centre 16x16 of 20x30: offsets round(2.0), round(7.0); BGR
    expected = (cropped * 0.5 + 1.0 - np.array([1, 2, 3], np.float32)) / np.array([2, 4, 8], np.float32)
    np.testing.assert_array_equal(p(image), expected.astype(np.float32))
    nchw = Preprocess(resize=20, crop=(16, 16), order="bgr")(image)
    np.testing.assert_array_equal(nchw, cropped.transpose(2, 0, 1))
    gray = Preprocess(order="gray", dtype="int8", offset=-128)(image)
    assert gray.shape == (1, 40, 60) and gray.dtype == np.int8
    np.testing.assert_array_equal(gray[0], np.asarray(image.convert("L"), np.int16) - 128)


def test_crop_larger_than_image_is_refused():
    with pytest.raises(DataError, match="crop 32x32 is larger than the image"):
        Preprocess(crop=(32, 32))(Image.new("RGB", (16, 16)))


def test_tree_list_and_flat_folder(tmp_path: Path):
    images = {(c, i): RNG.integers(0, 256, (4, 4)) for c in ("cat", "dog") for i in range(3)}
    for (c, i), px in images.items():
        _png(tmp_path / "tree" / c / f"{i}.png", px)
    (tmp_path / "tree" / "dog" / "notes.md").write_text("not an image")
    info = [TensorInfo("x", (1, 1, 4, 4), "float32")]
    gray = {"order": "gray"}
    x, y = read_all(open_source(tmp_path / "tree", gray), info, labels=True)
    assert x.shape == (6, 1, 4, 4) and y.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(x[4, 0], images[("dog", 1)])
    (tmp_path / "list.txt").write_text("tree/dog/2.png 7\n\n# a comment\ntree/cat/0.png 3\ntree/cat/1.png, 4\n")
    x, y = read_all(open_source(tmp_path / "list.txt", gray), info, labels=True)
    assert y.tolist() == [7, 3, 4] and np.array_equal(x[0, 0], images[("dog", 2)])
    x, y = read_all(open_source(tmp_path / "tree" / "cat", gray), info, labels=True)
    assert len(x) == 3 and y is None
    batches = list(checked_batches(open_source(tmp_path / "tree", gray), info, labels=True, size=4))
    assert [len(b[0]) for b in batches] == [4, 2]
    assert read_all(open_source(tmp_path / "tree", gray), info, labels=False, limit=5)[0].shape[0] == 5


def test_npy_is_memory_mapped_and_checked(tmp_path: Path):
    x = RNG.standard_normal((10, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    source = open_source(tmp_path / "x.npy")
    assert isinstance(source, ArraySource) and isinstance(source.arrays["x"], np.memmap)
    got, y = read_all(source, [TensorInfo("in", (1, 3), "float32")], labels=True)
    np.testing.assert_array_equal(got, x)
    assert y is None
    x[7, 1] = np.nan
    np.save(tmp_path / "bad.npy", x)
    with pytest.raises(DataError, match="1 NaN/Inf value.*sample 7"):
        open_source(tmp_path / "bad.npy")


def test_entry_point_module_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "userdata.py").write_text(
        "import numpy as np\n\n\ndef batches():\n"
        "    return [(np.ones((2, 3)), np.array([0, 1])), (np.zeros((1, 3)), np.array([2]))]\n\n\n"
        "def unlabelled():\n    yield {'x': np.ones((2, 3))}\n\n\ndef broken():\n    raise RuntimeError('no disk')\n")
    monkeypatch.chdir(tmp_path)
    info = [TensorInfo("x", (1, 3), "float32")]
    x, y = read_all(open_source("userdata:batches"), info, labels=True)
    assert x.shape == (3, 3) and y.tolist() == [0, 1, 2]
    x, y = read_all(open_source(f"{tmp_path / 'userdata.py'}:unlabelled"), info, labels=True)
    assert x.shape == (2, 3) and y is None
    assert [b["y"].tolist() for b in sized_batches(open_source("userdata:batches"), 2)] == [[0, 1], [2]]
    with pytest.raises(DataError, match="failed: no disk"):
        read_all(open_source("userdata:broken"), info, labels=True)


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: d / "empty", "holds no images"),
    (lambda d: d / "missing.txt", "image list '.*missing.txt' does not exist"),
    (lambda d: d / "gone.txt", "line 1: image .*nope.png' does not exist"),
    (lambda d: d / "mixed.txt", "some lines have a label and some do not"),
    (lambda d: "no_such_module_xyz:batches", "cannot be imported"),
    (lambda d: f"{d / 'none.py'}:f", "file .*none.py' does not exist"),
    (lambda d: d / "x.npy.bad", "is not an .npz"),
])
def test_bad_source_is_one_line(tmp_path: Path, make, needle: str):
    (tmp_path / "empty").mkdir()
    (tmp_path / "gone.txt").write_text("nope.png 1\n")
    _png(tmp_path / "a.png", np.zeros((2, 2)))
    (tmp_path / "mixed.txt").write_text("a.png 1\na.png\n")
    (tmp_path / "x.npy.bad").write_bytes(b"garbage")
    with pytest.raises(DataError, match=needle) as err:
        open_source(make(tmp_path))
    assert "\n" not in str(err.value)


def test_unreadable_image_and_wrong_shape(tmp_path: Path):
    _png(tmp_path / "imgs" / "a.png", np.zeros((4, 4)))
    (tmp_path / "imgs" / "b.png").write_bytes(b"not a png")
    info = [TensorInfo("x", (1, 1, 4, 4), "float32")]
    with pytest.raises(DataError, match="b.png' .* is not a readable image"):
        read_all(open_source(tmp_path / "imgs", {"order": "gray"}), info, labels=False)
    (tmp_path / "imgs" / "b.png").unlink()
    with pytest.raises(DataError, match=r"x has shape \(1, 3, 4, 4\) but the model input 'x' needs \[N, 1, 4, 4\]"):
        read_all(open_source(tmp_path / "imgs"), info, labels=False)


def test_preprocess_needs_an_image_source(tmp_path: Path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match="--preprocess applies to image folders"):
        open_sources([tmp_path / "d.npz", None], "resize=4")
