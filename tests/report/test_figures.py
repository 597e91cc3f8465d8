"""Tests for the figures: sizes, pixels, data and reproducible bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tlreport.report.confusion import (
    _tick_plan,
    confused_pairs,
    confusion_figure,
    confusion_order,
    plot_confusion,
)
from tlreport.report.figures import (
    _TILE_HEIGHT,
    _grid_figure,
    feature_grid_shape,
    plot_bottleneck,
    plot_history,
    plot_misclassified,
    plot_prediction_grid,
    thumbnail,
    top_mistakes,
)
from tlreport.report.style import DPI, WIDTH, house_style, new_figure, save_figure


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int), im.size


def _near(px, rgb, tol=60):
    return int((np.abs(px - np.array(rgb)).sum(axis=2) < tol).sum())


def _history(n=12):
    e = np.arange(1, n + 1)
    return pd.DataFrame(
        {"epoch": e, "loss": 2 / e, "accuracy": 1 - 0.5 / e, "val_loss": 2.2 / e + 0.05, "val_accuracy": 0.95 - 0.5 / e}
    )


def test_save_figure_pixel_size_atomic_and_reproducible(tmp_path):
    paths = []
    for name in ("a", "b"):
        with house_style():
            fig = new_figure(WIDTH, 4.0)
            ax = fig.add_subplot()
            ax.plot([0, 1, 2], [1, 3, 2])
        paths.append(save_figure(fig, tmp_path / name, svg=True))
    (a_png, a_svg), (b_png, b_svg) = paths
    assert a_png.name == "a.png" and a_svg.name == "a.svg"
    assert Image.open(a_png).size == (round(WIDTH * DPI), round(4.0 * DPI))
    assert a_png.read_bytes() == b_png.read_bytes()
    assert a_svg.read_bytes() == b_svg.read_bytes()
    assert b"Software" not in a_png.read_bytes() and b"<dc:date>" not in a_svg.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a.svg", "b.png", "b.svg"]  # no temp files


def test_plot_history_two_figures_with_train_and_val_curves(tmp_path):
    out = plot_history(_history(), tmp_path / "hist.png", best_epoch=8)
    assert [p.name for p in out] == ["hist_loss.png", "hist_accuracy.png"]
    for p in out:
        px, size = _png(p)
        assert size == (1200, 640)
        # both the training (blue) and validation (vermillion) curves are drawn
        assert _near(px, (0, 114, 178)) > 200 and _near(px, (213, 94, 0)) > 100


def test_history_png_bytes_reproducible(tmp_path):
    a = plot_history(_history(), tmp_path / "x")
    b = plot_history(_history(), tmp_path / "y")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    c = plot_history(_history(13), tmp_path / "z")
    assert a[0].read_bytes() != c[0].read_bytes()


def test_confused_pairs_hand_computed():
    names = ["cat", "dog", "fox"]
    # true cat x4: cat, dog, dog, fox ; dog x3: dog, cat, dog ; fox x3: fox, dog, cat
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 1, 0, 1, 2, 1, 0])
    df = confused_pairs(y_true, y_pred, names, k=10)
    expected = pd.DataFrame(
        {
            "true": ["cat", "cat", "dog", "fox", "fox"],
            "predicted": ["dog", "fox", "cat", "cat", "dog"],
            "count": [2, 1, 1, 1, 1],
            "rate": [2 / 4, 1 / 4, 1 / 3, 1 / 3, 1 / 3],
        }
    )
    pd.testing.assert_frame_equal(df, expected, check_dtype=False)
    assert len(confused_pairs(y_true, y_pred, names, k=2)) == 2
    assert confused_pairs(y_true, y_true, names).empty


def test_confusion_order_clusters_interleaved_groups():
    # classes {0,2,4} confuse each other, {1,3,5} confuse each other
    c = 6
    cm = np.eye(c, dtype=int) * 20
    for group in ([0, 2, 4], [1, 3, 5]):
        for i in group:
            for j in group:
                if i != j:
                    cm[i, j] = 3
    order = list(confusion_order(cm))
    assert sorted(order) == list(range(c))
    assert {frozenset(order[:3]), frozenset(order[3:])} == {frozenset({0, 2, 4}), frozenset({1, 3, 5})}


def test_confusion_heatmap_diagonal_dark_offdiagonal_light(tmp_path):
    c = 12
    y = np.repeat(np.arange(c), 10)
    y_pred = y.copy()
    y_pred[::10] = (y[::10] + 1) % c  # 10% confusion to the next class
    names = [f"class {i}" for i in range(c)]
    fig, ax, order = confusion_figure(y, y_pred, names)
    (path,) = save_figure(fig, tmp_path / "cm")
    px, (w, h) = _png(path)
    assert (w, h) == (1200, round(WIDTH * 0.94 * DPI))
    pos = {cls: k for k, cls in enumerate(order)}

    def lum(i_cls, j_cls):
        # centre of the cell (row = true i, column = predicted j), offset off the printed number
        x, y_disp = ax.transData.transform((pos[j_cls] + 0.3, pos[i_cls] + 0.3))
        r, g, b = px[int(round(h - y_disp)), int(round(x))]
        return 0.299 * r + 0.587 * g + 0.114 * b

    diag = [lum(i, i) for i in range(c)]
    off_conf = [lum(i, (i + 1) % c) for i in range(c)]
    off_zero = [lum(i, j) for i in range(c) for j in range(c) if j not in (i, (i + 1) % c)]
    assert max(diag) < 90  # dark
    assert min(off_zero) > 245  # white
    assert all(90 < v < 245 for v in off_conf)  # 10% is visible but lighter than the diagonal


def test_confusion_257_classes_renders(tmp_path):
    c = 257
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(c), 8)
    y_pred = np.where(rng.random(y.size) < 0.2, rng.integers(0, c, y.size), y)
    names = [f"{i:03d}.category_name_{i}" for i in range(c)]
    (path,) = plot_confusion(y, y_pred, names, tmp_path / "cm257")
    assert Image.open(path).size == (1600, round(10.0 * 0.94 * DPI))
    size, step = _tick_plan(c, 10.0)
    assert step >= 2 and size >= 3.5  # labels thinned rather than unreadable


def _grid_inputs(n=9):
    images = [np.full((60, 80, 3), 128, np.uint8) for _ in range(n)]
    true = [f"c{i}" for i in range(n)]
    pred = list(true)
    pred[4] = "c0"  # the centre tile of a 3x3 grid is wrong
    probs = np.linspace(0.5, 0.99, n)
    return images, true, pred, probs


def _border_hits(px, h, ax, edge):
    """Pixels of WRONG_COLOR along one edge of an axes (sampled densely)."""
    target = np.array([0xB2, 0x18, 0x2B])
    xs = np.linspace(0.05, 0.95, 400)
    pts = np.c_[xs, np.full_like(xs, edge)]
    disp = ax.transAxes.transform(pts)
    hits = []
    for x, y in disp:
        r, c = int(round(h - y)), int(round(x))
        hits.append(np.abs(px[r, c] - target).sum() < 90)
    return np.array(hits)


def test_prediction_grid_marks_wrong_tile_with_dashed_border(tmp_path):
    images, true, pred, probs = _grid_inputs()
    with house_style():
        fig = _grid_figure(images, true, pred, probs, cols=3)
        (path,) = save_figure(fig, tmp_path / "grid")
    px, (w, h) = _png(path)
    assert w == 1200
    axes = fig.axes
    wrong = _border_hits(px, h, axes[4], 0.0)
    right = _border_hits(px, h, axes[0], 0.0)
    assert right.sum() == 0
    assert wrong.mean() > 0.4  # the border is there ...
    assert (~wrong).sum() > 20  # ... and dashed: it has gaps
    assert np.count_nonzero(np.diff(wrong.astype(int))) >= 10
    assert axes[4].get_title().startswith("✗ WRONG") and not axes[0].get_title().startswith("✗")


def test_prediction_grid_public_and_reproducible(tmp_path):
    images, true, pred, probs = _grid_inputs(16)
    a = plot_prediction_grid(images, true, pred, probs, tmp_path / "a", cols=4)
    b = plot_prediction_grid(images, true, pred, probs, tmp_path / "b", cols=4)
    assert a[0].read_bytes() == b[0].read_bytes()
    w, h = Image.open(a[0]).size
    assert w == 1200 and h == round(4 * (WIDTH / 4) * _TILE_HEIGHT * DPI)
    with pytest.raises(ValueError):
        plot_prediction_grid(images, true[:3], pred, probs, tmp_path / "c")


def test_misclassified_picks_most_confident_mistakes(tmp_path):
    y_true = np.array([0, 1, 2, 0, 1, 2, 0])
    y_pred = np.array([0, 2, 2, 1, 1, 0, 2])
    conf = np.array([0.9, 0.6, 0.8, 0.95, 0.7, 0.6, 0.3])
    assert list(top_mistakes(y_true, y_pred, conf, k=3)) == [3, 1, 5]

    class Lazy:
        touched: list[int] = []

        def __getitem__(self, i):
            self.touched.append(i)
            return np.zeros((20, 20, 3), np.uint8)

    lazy = Lazy()
    out = plot_misclassified(lazy, y_true, y_pred, conf, ["a", "b", "c"], tmp_path / "mis", k=3, cols=3)
    assert len(out) == 1 and sorted(lazy.touched) == [1, 3, 5]
    assert plot_misclassified(lazy, y_true, y_true, conf, ["a", "b", "c"], tmp_path / "none") == []


@pytest.mark.parametrize("d,shape", [(2048, (32, 64)), (1280, (32, 40)), (1536, (32, 48)), (1001, (31, 33))])
def test_feature_grid_shape(d, shape):
    assert feature_grid_shape(d) == shape
    r, c = feature_grid_shape(d)
    assert r * c >= d


def test_plot_bottleneck_and_thumbnail(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    (p,) = plot_bottleneck(img, rng.random(1280).astype(np.float32), tmp_path / "bn")
    assert Image.open(p).size == (1200, round(3.4 * DPI))
    t = thumbnail(img, tmp_path / "thumb", size=96)
    assert t.name == "thumb.png" and Image.open(t).size == (96, 96)
    # the centre crop keeps the middle of a wide image: a red centre stays red
    wide = np.zeros((50, 150, 3), np.uint8)
    wide[:, 50:100, 0] = 255
    px = np.asarray(Image.open(thumbnail(wide, tmp_path / "wide.png", size=32)))
    assert px[:, :, 0].mean() > 240
