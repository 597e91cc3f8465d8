"""The 2015 frozen-graph loader, on a tiny graph with the real tensor names."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlreport.backbones.inception_2015 import (
    GRAPH_FILE,
    LABEL_MAP_FILE,
    SYNSET_FILE,
    Inception2015,
    NodeLookup,
    ensure_jpeg,
    parse_label_map_proto,
    parse_synset_to_human,
)
from tlreport.errors import UserError

# Constants of the tiny graph; the expected outputs are recomputed from them in numpy.
_RNG = np.random.default_rng(2015)
POOL_WEIGHTS = _RNG.normal(size=(3, 2048)).astype(np.float32)   # mean colour -> pool_3
LOGIT_SLOPE = _RNG.normal(size=1008).astype(np.float32) * 4.0   # logits = slope * red/255 + bias
LOGIT_BIAS = _RNG.normal(size=1008).astype(np.float32)

SYNSETS = ["n01440764\ttench, Tinca tinca",
           "n01443537\tgoldfish, Carassius auratus",
           "n02510455\tgiant panda, panda, panda bear, coon bear, Ailuropoda melanoleuca",
           "n09999999\tnot in the label map"]
LABEL_MAP = """# ImageNet 2012 challenge label map
entry {
  target_class: 449
  target_class_string: "n01440764"
}
entry {
  target_class: 450
  target_class_string: "n01443537"
}
entry { target_class: 169 target_class_string: "n02510455" }
"""


def _write_tiny_graph(path: Path) -> None:
    """Freeze a small graph with the 2015 graph's input and output tensor names."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        with tf.compat.v1.name_scope("DecodeJpeg") as scope:
            contents = tf.compat.v1.placeholder(tf.string, shape=[], name="contents")
            # INTEGER_ACCURATE is libjpeg's ISLOW, which PIL uses too, so numpy can check it exactly
            image = tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE", name=scope)
        pixels = tf.expand_dims(tf.cast(image, tf.float32), 0)
        resized = tf.compat.v1.image.resize_bilinear(pixels, [8, 8])
        mean_rgb = tf.reduce_mean(pixels, axis=[1, 2])                      # (1, 3)
        pool = tf.matmul(mean_rgb, tf.constant(POOL_WEIGHTS))              # (1, 2048)
        pool = pool + 0.0 * tf.reduce_sum(resized)                         # keep the resize op in use
        tf.reshape(pool, [1, 1, 1, 2048], name="pool_3")
        red = mean_rgb[:, 0:1] / 255.0                                       # (1, 1)
        logits = red * tf.constant(LOGIT_SLOPE)[None, :] + tf.constant(LOGIT_BIAS)[None, :]
        tf.nn.softmax(logits, name="softmax")
    assert graph.get_operation_by_name("DecodeJpeg").type == "DecodeJpeg"
    path.write_bytes(graph.as_graph_def().SerializeToString())


def _write_labels(model_dir: Path) -> None:
    (model_dir / SYNSET_FILE).write_text("\n".join(SYNSETS) + "\n", encoding="utf-8")
    (model_dir / LABEL_MAP_FILE).write_text(LABEL_MAP, encoding="utf-8")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inception-2015-12-05")
    _write_tiny_graph(d / GRAPH_FILE)
    _write_labels(d)
    return d


@pytest.fixture(scope="module")
def model(model_dir: Path):
    with Inception2015(model_dir) as m:
        yield m


def _image(seed: int, size: tuple[int, int] = (40, 32)) -> np.ndarray:
    """A smooth RGB image (JPEG keeps smooth images close to the original)."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.uniform(40, 215, size=3)
    ramp = np.linspace(-30, 30, w)[None, :, None] * rng.uniform(-1, 1, size=3)
    return np.clip(base + ramp + np.zeros((h, 1, 1)), 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _expected(decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = decoded.reshape(-1, 3).astype(np.float64).mean(axis=0)
    features = mean @ POOL_WEIGHTS.astype(np.float64)
    logits = mean[0] / 255.0 * LOGIT_SLOPE.astype(np.float64) + LOGIT_BIAS
    e = np.exp(logits - logits.max())
    return features, e / e.sum()


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------- label files


def test_parse_synset_to_human_real_format_crlf_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / SYNSET_FILE
    p.write_bytes(b"n01440764\ttench, Tinca tinca\r\n\r\nn01443537\tgoldfish, Carassius auratus\r\n")
    assert parse_synset_to_human(p) == {
        "n01440764": "tench, Tinca tinca",
        "n01443537": "goldfish, Carassius auratus",
    }


@pytest.mark.parametrize("bad", ["tench, Tinca tinca", "n01440764", "01440764\ttench"])
def test_parse_synset_to_human_malformed_line_names_file_and_line(tmp_path: Path, bad: str) -> None:
    p = tmp_path / SYNSET_FILE
    p.write_text(f"n01440764\ttench\n\n{bad}\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{SYNSET_FILE}:3: expected"):
        parse_synset_to_human(p)


def test_parse_label_map_proto_multi_and_single_line_entries(tmp_path: Path) -> None:
    p = tmp_path / LABEL_MAP_FILE
    p.write_bytes(LABEL_MAP.replace("\n", "\r\n").encode())
    assert parse_label_map_proto(p) == {449: "n01440764", 450: "n01443537", 169: "n02510455"}


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ('entry {\n  target_class: 1\n  target_class_string "n01"\n}\n', 3, "cannot parse"),
        ('entry {\n  target_class: "1"\n  target_class_string: "n01"\n}\n', 2, "integer"),
        ('entry {\n  target_class: 1\n}\n', 3, "both"),
        ('entry {\n  target_class: 1\n  target_class_string: "n01"\n', 1, "never closed"),
        ('target_class: 1\n', 1, "outside an entry"),
        ('entry { target_class: 1 target_class_string: "n01" }\n'
         'entry { target_class: 1 target_class_string: "n02" }\n', 2, "twice"),
        ('entry {\n  colour: 3\n}\n', 2, "unknown field"),
        ('}\n', 1, "without a matching"),
    ],
)
def test_parse_label_map_proto_malformed(tmp_path: Path, text: str, line: int, what: str) -> None:
    p = tmp_path / LABEL_MAP_FILE
    p.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=rf"{LABEL_MAP_FILE}:{line}: .*{what}"):
        parse_label_map_proto(p)


def test_missing_label_file_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="tlreport fetch inception_2015"):
        parse_synset_to_human(tmp_path / SYNSET_FILE)


def test_node_lookup_index_to_name(tmp_path: Path) -> None:
    _write_labels(tmp_path)
    lookup = NodeLookup(tmp_path / LABEL_MAP_FILE, tmp_path / SYNSET_FILE)
    assert lookup.index_to_name(169).startswith("giant panda")
    assert lookup.index_to_name(449) == "tench, Tinca tinca"
    assert lookup.index_to_name(0) == ""       # background / unused outputs, as in classify_image.py
    assert lookup.index_to_name(1007) == ""


def test_node_lookup_synset_missing_from_human_map(tmp_path: Path) -> None:
    _write_labels(tmp_path)
    (tmp_path / SYNSET_FILE).write_text(SYNSETS[0] + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="2 synset"):
        NodeLookup(tmp_path / LABEL_MAP_FILE, tmp_path / SYNSET_FILE)


# ---------------------------------------------------------------- the graph


def test_missing_graph_names_file_and_fetch(tmp_path: Path) -> None:
    _write_labels(tmp_path)
    with pytest.raises(UserError, match=rf"{GRAPH_FILE}.*tlreport fetch inception_2015"):
        Inception2015(tmp_path)


def test_corrupt_graph_is_a_user_error(tmp_path: Path) -> None:
    _write_labels(tmp_path)
    (tmp_path / GRAPH_FILE).write_bytes(b"\xff\xfe not a protobuf at all \x00" * 7)
    with pytest.raises(UserError, match=GRAPH_FILE):
        Inception2015(tmp_path)


def test_predict_jpeg_matches_numpy(model: Inception2015) -> None:
    for seed in (0, 1):
        data = _encode(_image(seed), "JPEG", quality=100, subsampling=0)
        assert ensure_jpeg(data) is data                   # JPEG bytes go to the graph untouched
        features, probs = model.predict_jpeg(data)
        want_f, want_p = _expected(_pil_decode(data))
        assert features.shape == (2048,) and features.dtype == np.float32
        assert probs.shape == (1008,)
        np.testing.assert_allclose(features, want_f, rtol=1e-4, atol=1e-2)
        np.testing.assert_allclose(probs, want_p, rtol=1e-4, atol=1e-8)
        assert int(np.argmax(probs)) == int(np.argmax(want_p))


def test_png_is_reencoded_to_jpeg(model: Inception2015) -> None:
    noisy = np.random.default_rng(3).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
    png = _encode(noisy, "PNG")
    jpeg = ensure_jpeg(png)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert (im.format, im.mode) == ("JPEG", "RGB")
    features, probs = model.predict_jpeg(png)
    want_f, want_p = _expected(_pil_decode(jpeg))      # the re-encoded JPEG's pixels ...
    np.testing.assert_allclose(features, want_f, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(probs, want_p, rtol=1e-4, atol=1e-8)
    raw_f, _ = _expected(noisy)                         # ... not the PNG's own
    assert not np.allclose(features, raw_f, rtol=1e-4, atol=1e-2)


def test_bmp_which_decode_jpeg_rejects_still_works(model: Inception2015) -> None:
    import tensorflow as tf

    arr = _image(5)
    bmp = _encode(arr, "BMP")
    with pytest.raises(tf.errors.InvalidArgumentError):
        model.session.run(model._features, feed_dict={model._input: bmp})
    features, _ = model.predict_jpeg(bmp)
    want_f, _ = _expected(_pil_decode(ensure_jpeg(bmp)))
    np.testing.assert_allclose(features, want_f, rtol=1e-4, atol=1e-2)


def test_greyscale_jpeg_becomes_rgb(model: Inception2015) -> None:
    grey = _encode(_image(4)[..., 0], "JPEG", quality=95)
    jpeg = ensure_jpeg(grey)
    assert jpeg is not grey
    with Image.open(io.BytesIO(jpeg)) as im:
        assert (im.format, im.mode) == ("JPEG", "RGB")
    features, _ = model.predict_jpeg(grey)
    want_f, _ = _expected(_pil_decode(jpeg))
    np.testing.assert_allclose(features, want_f, rtol=1e-4, atol=1e-2)


def test_not_an_image_is_a_user_error(model: Inception2015) -> None:
    with pytest.raises(UserError, match="not a readable image"):
        model.predict_jpeg(b"hello, world")


def test_top_k_names_and_order(model: Inception2015) -> None:
    probs = np.zeros(1008, dtype=np.float32)
    probs[[169, 449, 450, 7]] = [0.6, 0.1, 0.25, 0.05]
    top = model.top_k(probs, k=4)
    assert [name.split(",")[0] for name, _ in top] == ["giant panda", "goldfish", "tench", ""]
    np.testing.assert_allclose([p for _, p in top], [0.6, 0.25, 0.1, 0.05], rtol=1e-6)
    assert len(model.top_k(probs, k=2)) == 2


def test_a_bad_image_for_the_2015_graph_is_one_line_before_any_fetch(tmp_path: Path, monkeypatch) -> None:
    """The graph's own JPEG decoder raised InvalidArgumentError on a truncated JPEG, and PIL a
    DecompressionBombError on a huge one: every file is decoded by the project's loader first."""
    from helpers.images import bomb_png

    from tlreport.artifacts import install
    from tlreport.backbones import get_spec
    from tlreport.pipeline.classify import classify_images

    def no_fetch(*args, **kwargs):
        raise AssertionError("fetched the graph for an image that cannot be classified")

    monkeypatch.setattr(install, "ensure", no_fetch)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:-200])
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    for name, why in (("cut.jpg", "corrupt"), ("bomb.png", "too large")):
        with pytest.raises(UserError, match=f"cannot decode image .*{name}: {why}"):
            classify_images(get_spec("inception_2015"), [tmp_path / name], cache_dir=tmp_path, data_root=None,
                            top_k=5)
