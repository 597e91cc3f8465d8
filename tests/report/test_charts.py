"""Tests for the figures: sizes, pixels, data and reproducible bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tlreport.report.charts import (
    feature_grid_shape,
    pick_grid,
    plot_bottleneck,
    plot_history,
    prediction_gallery,
    prediction_label,
    reference_rows,
    table_accuracy_figure,
    thumbnail,
    top_mistakes,
)
from tlreport.report.confusion import (
    FULL_DPI,
    FULL_LABEL_PT,
    FULL_MAX_PX,
    _tick_plan,
    confused_pairs,
    confusion_figure,
    confusion_order,
    cut_at_a_tie,
    full_size_dpi,
    full_size_side,
    plot_confusion,
)
from tlreport.report.per_class import per_class_accuracy, plot_per_class
from tlreport.report.style import (
    DPI,
    PHONE_DPI,
    PHONE_WIDTH,
    WIDTH,
    house_style,
    min_text_pt,
    new_figure,
    phone_style,
    read_text_px,
    save_figure,
)
from tlreport.report.tables import literature_rows


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
    assert [p.name for p in out] == ["hist_loss.png", "hist_accuracy.png",
                                     "hist_loss.phone.png", "hist_accuracy.phone.png"]
    for p in out:
        px, size = _png(p)
        assert size == ((round(PHONE_WIDTH * PHONE_DPI), round(3.0 * PHONE_DPI)) if ".phone" in p.name else (1200, 640))
        # both the training (blue) and validation (vermillion) curves are drawn
        assert _near(px, (0, 114, 178)) > 200 and _near(px, (213, 94, 0)) > 100


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
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
    # the post's table never cuts through a tie: at 2 it shows the one pair confused twice, then says so
    shown, left = cut_at_a_tie(df, 2)
    assert shown["predicted"].tolist() == ["dog"] and left == {"left": 4, "most": 1}
    assert len(cut_at_a_tie(df, 5)[0]) == 5 and cut_at_a_tie(df, 5)[1] is None
    shown, left = cut_at_a_tie(df.iloc[1:], 2)                   # all tied: the first by name, counted
    assert shown["true"].tolist() == ["cat", "dog"] and left == {"left": 2, "most": 1}


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


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
def test_confusion_257_classes_overview_and_a_full_size_copy_naming_every_class(tmp_path):
    """Caltech-256's 257 classes: no column-wide image can name them, so a full-size copy does."""
    c = 257
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(c), 8)
    y_pred = np.where(rng.random(y.size) < 0.2, rng.integers(0, c, y.size), y)
    names = [f"{i:03d}.category_name_{i}" for i in range(c)]
    overview, full, phone = plot_confusion(y, y_pred, names, tmp_path / "cm257")
    assert overview.name == "cm257.png" and full.name == "cm257_full.png" and phone.name == "cm257.phone.png"
    assert Image.open(phone).width == round(PHONE_WIDTH * PHONE_DPI)
    assert Image.open(overview).size == (1200, round(WIDTH * 0.94 * DPI))
    side = full_size_side(c)
    fw, fh = Image.open(full).size
    assert abs(fw - FULL_MAX_PX) <= 1 and abs(fh - side * 0.94 * full_size_dpi(c)) <= 1   # capped in width
    assert full_size_dpi(102) == FULL_DPI                        # Caltech-101's copy: 14 inches at full resolution
    _, ax, _ = confusion_figure(y, y_pred, names, side=side)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == c and all(t.get_fontsize() >= FULL_LABEL_PT - 0.01 for t in ax.get_yticklabels())
    _, ax, _ = confusion_figure(y, y_pred, names, side=WIDTH, labels=False)
    assert ax.get_xticklabels() == [] and ax.get_yticklabels() == []
    # the readable view scales: the k most-confused pairs, counted from all 257 x 257 cells
    pairs = confused_pairs(y, y_pred, names, k=15)
    assert len(pairs) == 15 and (pairs["count"].diff().dropna() <= 0).all()


def test_confusion_up_to_sixty_classes_is_one_labelled_image(tmp_path):
    y = np.repeat(np.arange(60), 3)
    path, phone = plot_confusion(y, y, [f"c{i}" for i in range(60)], tmp_path / "cm60")
    assert path.name == "cm60.png" and phone.name == "cm60.phone.png"
    size, step = _tick_plan(60, 10.0)
    assert step == 1 and size >= 3.5


def test_chart_png_in_256_colours_is_smaller_and_looks_the_same(tmp_path):
    e = _history(40)
    full = plot_history(e, tmp_path / "rgb")
    with house_style():
        fig = new_figure(WIDTH, 4.0)
        ax = fig.add_subplot()
        ax.plot(e["epoch"], e["loss"])
        ax.plot(e["epoch"], e["val_loss"], ls="--")
        (rgb,) = save_figure(fig, tmp_path / "rgb_chart")
        (pal,) = save_figure(fig, tmp_path / "pal_chart", palette=True)
    assert Image.open(rgb).mode == "RGB" and Image.open(pal).mode == "P"
    assert pal.stat().st_size < 0.7 * rgb.stat().st_size
    a, _ = _png(rgb)
    b, _ = _png(pal)
    assert np.abs(a - b).mean() < 1.0          # the same picture, pixel for pixel within a grey level
    assert full and all(p.suffix == ".png" for p in full)


def test_per_class_accuracy_hand_computed():
    names = ["ant", "bee", "cat", "dog"]
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 1, 1, 2, 2, 0])
    t = per_class_accuracy(y_true, y_pred, names)
    assert list(t["class"]) == ["ant", "cat", "bee"]            # worst first; dog has no test image
    ant = t.iloc[0]
    assert (ant["n"], ant["correct"], ant["accuracy"]) == (4, 1, 0.25)
    assert (ant["confused_with"], ant["confused_count"]) == ("bee", 2)
    bee = t.iloc[2]
    assert bee["accuracy"] == 1.0 and bee["confused_with"] == "" and bee["confused_count"] == 0


def test_per_class_figure_labels_the_worst_classes_with_their_wrong_answer(tmp_path):
    c = 40
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(c), 10)
    y_pred = np.where(rng.random(y.size) < y / c / 2, (y + 1) % c, y)     # later classes worse
    t = per_class_accuracy(y, y_pred, [f"class{i}" for i in range(c)])
    path, phone = plot_per_class(t, tmp_path / "pc", worst=5)
    assert Image.open(path).size[0] == 1200 and Image.open(phone).size[0] == round(PHONE_WIDTH * PHONE_DPI)
    worst = t.iloc[0]
    assert worst["confused_with"] == f"class{(int(worst['class'][5:]) + 1) % c}"



@pytest.mark.parametrize("classes, named", [(13, (True, True)), (20, (True, False)), (40, (False, False))])
def test_per_class_figure_names_the_bars_of_a_few_classes(tmp_path, monkeypatch, classes, named):
    from tlreport.report import per_class

    seen = []
    save = per_class.save_figure

    def keep_names(fig, path, **kw):
        seen.append([t.get_text() for t in fig.axes[0].get_xticklabels()])
        return save(fig, path, **kw)

    monkeypatch.setattr(per_class, "save_figure", keep_names)
    y = np.repeat(np.arange(classes), 4)
    y_pred = np.where(np.arange(y.size) % 4 == 0, (y + 1) % classes, y)
    t = per_class_accuracy(y, y_pred, [f"class {i}" for i in range(classes)])
    plot_per_class(t, tmp_path / "pc", worst=3)
    desktop, phone = seen
    assert (bool(desktop), bool(phone)) == named
    if named[0]:
        assert desktop == list(t["class"])          # in the bars' order: worst first

def test_table_accuracy_figure_draws_every_row_in_its_panel_and_line():
    agg = pd.DataFrame([{"dataset": "table0", "backbone": b, "head": h, "n_train": n, "mean": m + n / 10 + (h == "logreg"),
                         "std": 0.4, "n_splits": 5, "accuracy": m}
                        for b, m in (("efficientnet_lite0", 88.0), ("efficientnet_lite0+efficientnet_lite1", 90.0))
                        for h in ("softmax_sgd", "logreg") for n in (15, 30)])
    lit = literature_rows("caltech101")
    refs = reference_rows(lit)
    assert [r["label"] for r in refs] == ["Inception v3", "Inception v4", "Inception-ResNet v2", "Zeiler & Fergus, 2013"]
    assert [r["kind"] for r in refs[:3]] == ["seed post"] * 3
    for phone in (False, True):
        with (phone_style() if phone else house_style()):
            fig = table_accuracy_figure(agg, lit, dataset="table0", phone=phone)
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title(loc="left") for ax in panels] == ["15 training images per class",
                                                               "30 training images per class"]
        names = ["EfficientNet-Lite0", "Lite0 + Lite1", "Inception v3 (seed post)", "Inception v4 (seed post)",
                 "Inception-ResNet v2 (seed post)", "Zeiler & Fergus, 2013 (best published)"]
        if phone:      # written above each line's points, in every panel
            assert [t.get_text() for t in panels[0].texts] == names
        else:          # beside the lines, once
            assert [t.get_text() for t in panels[0].get_yticklabels()] == names
        for ax, n in zip(panels, (15, 30), strict=True):
            points = [(c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0], c.lines[0].get_marker(),
                       c.lines[0].get_markerfacecolor()) for c in ax.containers]
            assert len(points) == 8                    # 4 of this build's rows, 4 quoted
            # this build's rows: on their feature set's line (0 and 1), the heads told apart by shape and fill
            ours = points[:4]
            assert [round(x, 6) for x, *_ in ours] == [88 + n / 10, 89 + n / 10, 90 + n / 10, 91 + n / 10]
            assert [round(y) for _, y, *_ in ours] == [0, 0, 1, 1]
            assert ours[0][1] < ours[1][1] and ours[2][1] < ours[3][1]   # softmax above logistic regression
            assert {(m, f == "white") for *_, m, f in ours[::2]} != {(m, f == "white") for *_, m, f in ours[1::2]}
            assert [x for x, *_ in points[4:]] == [r["results"][n]["mean"] for r in refs]
            assert points[-1][2] == "*"
        assert fig.legends and "± one std over the splits" in fig.legends[0].get_title().get_text()


# --------------------------------------------------------------------------- prediction galleries (HTML)


def test_table_accuracy_figure_with_five_settings_one_image_and_no_seed_rows():
    """Five panels on a 3 x 2 grid: the panel above the hidden sixth keeps its axis numbers; a setting of one
    image per class is singular; with no seed-post rows the key has no seed entry; no rows, no crash."""
    agg = pd.DataFrame([{"dataset": "table0", "backbone": "efficientnet_lite0", "head": "logreg", "n_train": n,
                         "mean": 80 + n, "std": 0.5, "n_splits": 5, "accuracy": 80.0} for n in (1, 2, 3, 5, 10)])
    paper = [{"label": "Someone, 2020", "kind": "paper", "results": {10: {"mean": 85.0, "std": 1.0}}}]
    with house_style():
        fig = table_accuracy_figure(agg, paper, dataset="table0")
        fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title(loc="left") for ax in panels][:2] == ["1 training image per class",
                                                               "2 training images per class"]
    numbered = [ax.get_title(loc="left") for ax in panels
                if any(t.get_text() for t in ax.get_xticklabels() if t.get_visible())]
    assert numbered == ["5 training images per class", "10 training images per class"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["logistic regression"]
    with house_style():
        assert table_accuracy_figure(agg.iloc[:0], None, dataset="table0").axes[0].texts[0].get_text() == "no results"


def test_prediction_label_marks_wrong_and_never_crowns_a_tie():
    names = ["cat", "dog", "fox"]
    assert prediction_label(np.array([0.9, 0.06, 0.04]), names, 0) == {
        "prob": "90.0%", "true": "cat", "pred": "cat", "tied": [], "status": "right"}
    wrong = prediction_label(np.array([0.2, 0.7, 0.1]), names, 0)
    assert (wrong["status"], wrong["pred"], wrong["true"], wrong["prob"]) == ("wrong", "dog", "cat", "70.0%")
    # 0.45002 and 0.44998 both print as 45.0%: a tie, and no winner is named
    tie = prediction_label(np.array([0.44998, 0.45002, 0.1]), names, 2)
    assert (tie["status"], tie["pred"], tie["tied"], tie["prob"]) == ("tie", None, ["cat", "dog"], "45.0%")


def test_pick_grid_shows_right_and_wrong_and_is_seeded():
    y = np.arange(100) % 5
    yhat = y.copy()
    yhat[:7] = (y[:7] + 1) % 5                      # 7 wrong of 100
    pick, n_wrong = pick_grid(y, yhat, 16, seed=3)
    assert len(pick) == 16 == len(set(pick.tolist())) and n_wrong == 7
    assert int((y[pick] != yhat[pick]).sum()) == 7
    again, _ = pick_grid(y, yhat, 16, seed=3)
    assert again.tolist() == pick.tolist()
    yhat[:40] = (y[:40] + 1) % 5                     # many wrong: at most half of the grid
    pick, n_wrong = pick_grid(y, yhat, 16, seed=3)
    assert n_wrong == 8 and int((y[pick] != yhat[pick]).sum()) == 8
    pick, n_wrong = pick_grid(y, y, 16, seed=3)      # none wrong: all right
    assert n_wrong == 0 and len(pick) == 16
    pick, n_wrong = pick_grid(y[:5], (y[:5] + 1) % 5, 16, seed=3)   # all wrong, fewer than asked
    assert n_wrong == 5 and sorted(pick.tolist()) == [0, 1, 2, 3, 4]


def test_prediction_gallery_writes_small_reproducible_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (60, 80, 3), dtype=np.uint8) for _ in range(4)]
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5], [0.2, 0.8]])
    y = np.array([0, 0, 1, 1])
    touched = []

    def image(i):
        touched.append(i)
        return imgs[i]

    a = prediction_gallery(image, [1, 2], probs, y, ["a", "b"], tmp_path / "a", "grid", size=64)
    assert sorted(touched) == [1, 2]                 # only the shown images are decoded
    assert [(it["thumb"], it["index"], it["status"]) for it in a] == [("grid/00", 1, "wrong"), ("grid/01", 2, "tie")]
    prediction_gallery(image, [1, 2], probs, y, ["a", "b"], tmp_path / "b", "grid", size=64)
    for name in ("00.jpg", "01.jpg"):
        with Image.open(tmp_path / "a" / name) as im:
            assert im.format == "JPEG" and im.size == (64, 64)
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_top_mistakes_picks_most_confident_mistakes():
    y_true = np.array([0, 1, 2, 0, 1, 2, 0])
    y_pred = np.array([0, 2, 2, 1, 1, 0, 2])
    conf = np.array([0.9, 0.6, 0.8, 0.95, 0.7, 0.6, 0.3])
    assert list(top_mistakes(y_true, y_pred, conf, k=3)) == [3, 1, 5]
    assert list(top_mistakes(y_true, y_true, conf)) == []


# --------------------------------------------------------------------------- phone variants and text size


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
def test_every_chart_has_a_phone_variant_whose_text_reads_at_11_css_px(tmp_path):
    """At a 390 px viewport a chart is shown about 347 CSS px wide: its phone variant's smallest text,
    recorded in the PNG, must come to 11 CSS px or more there (the desktop file's would not)."""
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(13), 8)
    y_pred = np.where(rng.random(y.size) < 0.2, rng.integers(0, 13, y.size), y)
    names = [f"class name {i}" for i in range(13)]
    agg = pd.DataFrame([{"dataset": "table0", "backbone": b, "head": h, "n_train": n, "mean": 80 + n / 10,
                         "std": 0.4, "n_splits": 5, "accuracy": 80.0}
                        for b in ("efficientnet_lite0", "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2")
                        for h in ("softmax_sgd", "logreg") for n in (5, 10, 20)])
    from tlreport.report.charts import plot_table_accuracy

    files = (plot_history(_history(), tmp_path / "h", best_epoch=4)
             + plot_confusion(y, y_pred, names, tmp_path / "cm")
             + plot_per_class(per_class_accuracy(y, y_pred, names), tmp_path / "pc", worst=4)
             + plot_bottleneck(rng.integers(0, 255, (50, 50, 3), dtype=np.uint8), rng.random(1280), tmp_path / "bn")
             + plot_table_accuracy(agg, tmp_path / "t0", literature_rows("caltech101"), dataset="table0"))
    phones = [p for p in files if p.name.endswith(".phone.png")]
    assert len(phones) == 6 and len(files) == 12
    for p in files:
        text_px = read_text_px(p)
        assert text_px is not None, p.name
        css = 347 / Image.open(p).width * text_px
        if p in phones:
            assert css >= 11.5, (p.name, css)
        else:
            assert css < 11, (p.name, css)     # why the phone variant exists


def test_min_text_pt_sees_the_smallest_drawn_text(tmp_path):
    with phone_style():
        fig = new_figure(PHONE_WIDTH, 3.0)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        ax.text(0.5, 0.5, "tiny", fontsize=4)
        ax.text(0.5, 0.2, "", fontsize=2)              # empty text draws nothing
        (p,) = save_figure(fig, tmp_path / "c", dpi=PHONE_DPI)
    assert min_text_pt(fig) == 4
    assert read_text_px(p) == pytest.approx(4 * PHONE_DPI / 72, abs=0.01)


@pytest.mark.parametrize("d,shape", [(2048, (32, 64)), (1280, (32, 40)), (1536, (32, 48)), (1001, (31, 33))])
def test_feature_grid_shape(d, shape):
    assert feature_grid_shape(d) == shape
    r, c = feature_grid_shape(d)
    assert r * c >= d


def test_plot_bottleneck_and_thumbnail(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    p, phone = plot_bottleneck(img, rng.random(1280).astype(np.float32), tmp_path / "bn")
    assert Image.open(p).size == (1200, round(3.4 * DPI))
    assert phone.name == "bn.phone.png" and Image.open(phone).width == round(PHONE_WIDTH * PHONE_DPI)
    t = thumbnail(img, tmp_path / "thumb", size=96)
    assert t.name == "thumb.png" and Image.open(t).size == (96, 96)
    j = thumbnail(img, tmp_path / "thumb.jpg", size=128)
    assert Image.open(j).format == "JPEG" and Image.open(j).size == (128, 128)
    # the centre crop keeps the middle of a wide image: a red centre stays red
    wide = np.zeros((50, 150, 3), np.uint8)
    wide[:, 50:100, 0] = 255
    px = np.asarray(Image.open(thumbnail(wide, tmp_path / "wide.png", size=32)))
    assert px[:, :, 0].mean() > 240


def test_a_glyph_no_font_has_is_collected_for_one_line_not_warned_per_label(tmp_path):
    import warnings

    import matplotlib.pyplot as plt

    from tlreport.report import style

    if style._installed_fallbacks():
        pytest.skip("a fallback font is installed here: it draws the glyph")
    style.MISSING_GLYPHS.clear()
    with style.house_style(), warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.set_title("猫 and cat")
        style.save_figure(fig, tmp_path / "cat")
        plt.close(fig)
    assert style.MISSING_GLYPHS == {"猫"}
    assert not [w for w in said if "Glyph" in str(w.message)]
