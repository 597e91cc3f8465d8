"""Dataset scanning, validation, decoding and preprocessing (offline fixtures)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from helpers.images import jpeg_bytes, make_bad_files, make_dataset, make_zoo, noise_image, save
from PIL import Image

from tlreport.backbones import get_spec
from tlreport.datasets import scan as datasets
from tlreport.datasets.images import (
    BadImage,
    load_prepared,
    load_prepared_many,
    load_rgb,
    prepare,
    validate,
)
from tlreport.datasets.scan import Manifest, _Found, _read_file, _validate_file, scan_dataset
from tlreport.errors import UserError
from tlreport.util.text import display_name

# the real Caltech-101 beside the checkout, where a machine has it (../shared); skipped elsewhere
CALTECH = REPO.parent / "shared" / "datasets" / "caltech101" / "101_ObjectCategories"


def _skips(m: Manifest) -> dict[str, str]:
    return {s.relpath: s.kind for s in m.skipped}


def test_zoo_formats_are_all_accepted(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    m = scan_dataset(tmp_path, progress=False)
    # a link to a file of the same class is one picture twice: the link (first by path) is kept
    assert [(s.relpath, s.reason) for s in m.skipped] == [
        ("zoo/pic.bmp", "duplicate: the same bytes as zoo/link_to_bmp.bmp")]
    rel = {e.relpath for e in m.entries}
    for name, path in zoo.items():
        assert path.relative_to(tmp_path).as_posix() in rel or name == "bmp"
    assert "zoo/nested/deeper/inner.jpg" in rel  # nested files belong to the top-level class
    assert {e.label for e in m.entries} == {"zoo"}


def test_decoding_conversions(tmp_path: Path) -> None:
    zoo = make_zoo(tmp_path)
    for name, path in zoo.items():
        img = load_rgb(str(path))
        assert img.mode == "RGB", name
    rgba = load_rgb(str(zoo["rgba"]))
    assert rgba.getpixel((0, 0)) == (255, 255, 255)  # transparent composited on white
    assert rgba.getpixel((5, 5)) == (255, 0, 0)
    assert load_rgb(str(zoo["palette_transparent"])).getpixel((3, 3)) == (255, 255, 255)
    assert Image.open(zoo["exif6"]).size == (20, 40)  # stored tall
    assert load_rgb(str(zoo["exif6"])).size == (40, 20)  # orientation 6 applied -> wide
    assert load_rgb(str(zoo["gif"])).getpixel((0, 0)) == (0, 255, 0)  # first frame
    assert load_rgb(str(zoo["png16"])).getpixel((0, 0)) == (255, 255, 255)  # 16-bit scaled, not clipped
    gray = np.asarray(load_rgb(str(zoo["gray"])))
    assert np.array_equal(gray[..., 0], gray[..., 2])
    cmyk = load_rgb(zoo["cmyk"].read_bytes())  # bytes work too
    assert cmyk.size == (40, 32)


def test_every_bad_file_is_reported_and_junk_is_ignored(tmp_path: Path) -> None:
    bad = make_bad_files(tmp_path)
    make_dataset(tmp_path, {"good": 2})
    m = scan_dataset(tmp_path, progress=False)
    skips = _skips(m)
    root_reads_anything = os.access(bad["unreadable"][0], os.R_OK)
    for name, (path, kind) in bad.items():
        rel = path.relative_to(tmp_path).as_posix()
        if kind is None:
            assert rel not in skips and rel not in {e.relpath for e in m.entries}, name
        elif name == "unreadable" and root_reads_anything:
            continue  # running as root: mode 000 does not stop reads
        elif name == "dir_loop":
            assert skips.get(rel + "/") == kind, (name, skips)
        else:
            assert skips.get(rel) == kind, (name, skips.get(rel), skips)
    usable = ["bad/fine.jpg"] + (["bad/locked.jpg"] if root_reads_anything else [])
    assert [e.relpath for e in m.entries if e.label == "bad"] == usable
    assert m.classes == ["bad", "good"]
    bomb = next(s for s in m.skipped if s.relpath == "bad/bomb.png")
    assert "20000x20000" in bomb.reason and "40,000,000" in bomb.reason
    assert "skipped (" in m.summary()


def test_vanished_between_listing_and_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path, {"a": 3})
    real = _read_file

    def vanish(path: str) -> bytes:
        if path.endswith("img_001.jpg"):
            os.remove(path)
        return real(path)

    monkeypatch.setattr(datasets, "_read_file", vanish)
    m = scan_dataset(tmp_path, progress=False)
    assert _skips(m) == {"a/img_001.jpg": "vanished"}
    assert len(m.entries) == 2


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mode-000 case, forced through the same code path (root can read mode-000 files)."""
    make_dataset(tmp_path, {"a": 2})
    real = _read_file

    def deny(path: str) -> bytes:
        if path.endswith("img_000.jpg"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(datasets, "_read_file", deny)
    m = scan_dataset(tmp_path, progress=False)
    assert [(s.relpath, s.reason) for s in m.skipped] == [("a/img_000.jpg", "unreadable: Permission denied")]


def test_truncated_jpeg_passes_verify_but_is_caught(tmp_path: Path) -> None:
    bad = make_bad_files(tmp_path)
    data = bad["truncated"][0].read_bytes()
    Image.open(bad["truncated"][0]).verify()  # the header check is fooled ...
    with pytest.raises(BadImage, match="truncated"):
        validate(data)  # ... the decode is not


def test_a_file_with_no_image_header_gets_a_reason_that_is_the_same_every_run(tmp_path: Path) -> None:
    """PIL's message named its stream by memory address, which went into the post's skipped-files table
    (a new address every scan, and a token too long for a phone's table)."""
    reasons = set()
    for _ in range(2):
        with pytest.raises(BadImage) as raised:
            validate(b"this is not an image, but it is called photo.jpg")
        reasons.add(str(raised.value))
    assert reasons == {"corrupt: no image header PIL recognises"}


def test_an_image_past_pils_own_limit_is_one_reported_line_without_pils_warning(tmp_path: Path, monkeypatch) -> None:
    """Between PIL's MAX_IMAGE_PIXELS and twice it PIL only warns, in two lines on stderr; the project's
    own limit decides, quietly (here PIL's limit is lowered to 1,000 pixels, the image has 1,600)."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    save(noise_image(5, (40, 40)), tmp_path / "big.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(BadImage, match="too large: 40x40 = 1,600 pixels > limit 1,200"):
            load_rgb(tmp_path / "big.png", max_pixels=1200)
        assert load_rgb(tmp_path / "big.png", max_pixels=2000).size == (40, 40)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_max_pixels_is_configurable_and_cached_results_follow_it(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"a": 2}, size=(100, 100))
    save(noise_image(5, (20, 20)), tmp_path / "a" / "small.jpg")
    cache = tmp_path.parent / f"{tmp_path.name}-cache.json"
    m = scan_dataset(tmp_path, max_pixels=5000, hash_cache_path=cache, progress=False)
    assert [e.relpath for e in m.entries] == ["a/small.jpg"]
    assert {s.kind for s in m.skipped} == {"too large"}
    m2 = scan_dataset(tmp_path, max_pixels=20_000, hash_cache_path=cache, progress=False)
    assert len(m2.entries) == 3 and not m2.skipped
    m3 = scan_dataset(tmp_path, max_pixels=5000, hash_cache_path=cache, progress=False)
    assert len(m3.entries) == 1


def test_rescan_uses_the_cache_and_notices_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_dataset(data, {"a": 3, "b": 2})
    cache = tmp_path / "scan.json"
    m1 = scan_dataset(data, hash_cache_path=cache, progress=False)
    validated: list[str] = []
    real = _validate_file

    def counting(f: _Found, max_pixels: int) -> list:
        validated.append(f.relpath)
        return real(f, max_pixels)

    monkeypatch.setattr(datasets, "_validate_file", counting)
    m2 = scan_dataset(data, hash_cache_path=cache, progress=False)
    assert validated == [] and m2.hash() == m1.hash() and m2.entries == m1.entries
    p = data / "a" / "img_000.jpg"
    save(noise_image(999), p)
    os.utime(p, ns=(time.time_ns(), time.time_ns() + 5_000_000))
    m3 = scan_dataset(data, hash_cache_path=cache, progress=False)
    assert validated == ["a/img_000.jpg"]
    assert m3.hash() != m1.hash()


def test_manifest_identity_labels_and_json(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"zebra": 2, "ant": 3, "Moth": 1})
    m = scan_dataset(tmp_path, progress=False)
    assert m.classes == ["Moth", "ant", "zebra"]
    assert m.labels().tolist() == [0, 1, 1, 1, 2, 2]
    assert m.summary() == "6 images in 3 classes; 0 skipped"
    back = Manifest.from_json(m.to_json())
    assert back == m and back.hash() == m.hash()
    (tmp_path / "ant" / "img_000.jpg").rename(tmp_path / "ant" / "renamed.jpg")
    assert scan_dataset(tmp_path, progress=False).hash() != m.hash()  # relpath is part of the identity


def test_include_exclude_and_did_you_mean(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"cats": 1, "dogs": 1, "birds": 1})
    assert scan_dataset(tmp_path, include=["dogs", "cats"], progress=False).classes == ["cats", "dogs"]
    assert scan_dataset(tmp_path, exclude=["cats"], progress=False).classes == ["birds", "dogs"]
    with pytest.raises(UserError, match="did you mean 'dogs'"):
        scan_dataset(tmp_path, include=["dgos"], progress=False)
    with pytest.raises(UserError, match=f"^dataset.exclude names class 'fish', which {tmp_path.name} has no folder for$"):
        scan_dataset(tmp_path, exclude=["fish"], progress=False)
    # a table's own exclude is named as such
    with pytest.raises(UserError, match=r"^experiments.tables\[0\].exclude names class 'fish'"):
        scan_dataset(tmp_path, exclude=["fish"], progress=False, config_field="experiments.tables[0]")


def test_missing_root_and_empty_class(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        scan_dataset(tmp_path / "nope", progress=False)
    make_dataset(tmp_path, {"ok": 1})
    d = tmp_path / "broken"
    d.mkdir()
    (d / "a.jpg").write_bytes(b"")
    (d / "b.jpg").write_text("nope")
    (d / "c.jpg").write_bytes(b"")
    with pytest.raises(UserError) as ei:
        scan_dataset(tmp_path, progress=False)
    msg = str(ei.value)
    assert "class 'broken' has no usable images (3 files, 3 skipped:" in msg
    assert "empty file 2" in msg and "not an image 1" in msg
    assert scan_dataset(tmp_path, exclude=["broken"], progress=False).classes == ["ok"]


def test_non_utf8_file_name_does_not_crash(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"a": 1})
    raw = os.fsencode(str(tmp_path / "a")) + b"/caf\xe9.jpg"
    with open(raw, "wb") as fh:
        fh.write((tmp_path / "a" / "img_000.jpg").read_bytes()[:-1] + b"\xd9")
    m = scan_dataset(tmp_path, progress=False)
    odd = [e for e in m.entries if e.relpath.startswith("a/caf")]
    assert len(odd) == 1 and isinstance(odd[0].relpath, str)
    assert display_name(odd[0].relpath) == "a/caf\\xe9.jpg"
    assert Manifest.from_json(m.to_json()).hash() == m.hash()
    assert load_rgb(m.paths()[[e.relpath for e in m.entries].index(odd[0].relpath)]).size == (40, 32)


def _spec(**kw: object):
    return dataclasses.replace(get_spec("efficientnet_lite0"), **kw)


def test_prepare_center_crop_geometry() -> None:
    # 400x200: left half red, right half blue; S=32, crop 0.5 -> shorter side 64 -> 128x64 -> crop 32x32
    a = np.zeros((200, 400, 3), np.uint8)
    a[:, :200] = (255, 0, 0)
    a[:, 200:] = (0, 0, 255)
    out = prepare(Image.fromarray(a), _spec(input_size=32, crop_fraction=0.5, interpolation="bilinear"))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert tuple(out[16, 2]) == (255, 0, 0) and tuple(out[16, 29]) == (0, 0, 255)
    # squash keeps the whole picture: the left quarter is red, the right quarter blue
    sq = prepare(Image.fromarray(a), _spec(input_size=32, resize="squash", interpolation="bilinear"))
    assert tuple(sq[5, 3]) == (255, 0, 0) and tuple(sq[5, 28]) == (0, 0, 255)
    # crop_fraction 1.0 on a square image is a plain resize with the spec's interpolation
    img = noise_image(3, (64, 64))
    spec = _spec(input_size=32, crop_fraction=1.0, interpolation="bicubic")
    assert np.array_equal(prepare(img, spec), np.asarray(img.resize((32, 32), Image.Resampling.BICUBIC)))
    with pytest.raises(ValueError, match="unknown resize"):
        prepare(img, _spec(resize="sideways"))


def test_prepare_follows_the_real_spec() -> None:
    spec = get_spec("efficientnet_lite0")  # 224, squash: the whole image resized to 224x224, aspect not kept
    assert spec.resize == "squash"
    img = noise_image(4, (300, 200))
    expect = np.asarray(img.resize((224, 224), Image.Resampling.BICUBIC))
    assert np.array_equal(prepare(img, spec), expect)
    crop = dataclasses.replace(spec, resize="center_crop")  # shorter side 224, then the centre 224x224
    expect = np.asarray(img.resize((336, 224), Image.Resampling.BICUBIC).crop((56, 0, 280, 224)))
    assert np.array_equal(prepare(img, crop), expect)


def test_flipped_spec_mirrors_the_prepared_image_and_has_its_own_key() -> None:
    from tlreport.features.cache import backbone_key

    spec = get_spec("efficientnet_lite0")
    img = noise_image(5, (300, 200))
    assert np.array_equal(prepare(img, spec.with_flip()), prepare(img, spec)[:, ::-1])
    assert backbone_key(spec.with_flip()) != backbone_key(spec)
    # the unflipped key leaves the hflip field out, so adding it moved no key; pinned, it changes only
    # when the spec does (last: Lite0's whole-image resize, this release)
    assert backbone_key(spec) == "32cf6eade4129a41268f6b5fed746f6368c9f8af5ac413df04ec4b0fadd2d7ab"


def test_load_prepared_drafts_large_jpegs_only(tmp_path: Path) -> None:
    spec = _spec(input_size=16, crop_fraction=1.0)
    big = save(noise_image(8, (200, 160)), tmp_path / "big.jpg", quality=95)
    out = load_prepared(str(big), spec)
    assert out.shape == (16, 16, 3)
    full = prepare(load_rgb(str(big)), spec)  # draft decode stays close to a full decode
    assert np.abs(out.astype(int) - full.astype(int)).mean() < 40


def test_one_decode_for_several_specs_gives_each_spec_s_own_pixels(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """load_prepared_many is load_prepared per spec, bit for bit: one decode for a photo no draft applies to,
    one per draft that takes effect on a large JPEG (drafts depend on the spec's size)."""
    from tlreport.datasets import images

    specs = [_spec(input_size=16, crop_fraction=1.0), _spec(input_size=24, crop_fraction=1.0),
             _spec(input_size=24, crop_fraction=1.0).with_flip(), _spec(input_size=20, crop_fraction=0.875)]
    small = jpeg_bytes(3, (40, 30))                       # under twice every draft: one full decode
    png = (tmp_path / "p.png")
    noise_image(4, (90, 70)).save(png)
    big = save(noise_image(8, (200, 160)), tmp_path / "big.jpg", quality=95).read_bytes()  # drafts 16/24/23
    decodes = []
    real = images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda *a, **k: decodes.append(k.get("draft")) or real(*a, **k))
    for data, n_decodes in ((small, 1), (png.read_bytes(), 1), (big, 3)):
        decodes.clear()
        got = load_prepared_many(data, specs)
        assert len(decodes) == n_decodes
        for spec, out in zip(specs, got, strict=True):
            assert np.array_equal(out, load_prepared(data, spec))
    with pytest.raises(BadImage):
        load_prepared_many(b"not an image at all, just some bytes", specs)


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
@pytest.mark.realdata
@pytest.mark.skipif(not CALTECH.is_dir(), reason="Caltech-101 not present")
def test_caltech101_scan(tmp_path: Path) -> None:
    cache = tmp_path / "scan.json"
    m = scan_dataset(CALTECH, hash_cache_path=cache, progress=False)
    assert (len(m.entries), len(m.classes), len(m.skipped)) == (9145, 102, 0)
    assert "BACKGROUND_Google/tmp" in {e.relpath for e in m.entries}
    t = time.perf_counter()
    again = scan_dataset(CALTECH, hash_cache_path=cache, progress=False)
    assert time.perf_counter() - t < 3.0  # "well under a second" on an idle machine
    assert again.hash() == m.hash()


def test_a_gif_cut_short_in_a_later_frame_gives_its_first_frame(tmp_path: Path) -> None:
    """An interrupted download of an animated GIF: the scan keeps its first frame, so decoding must not
    walk the frames (PIL's n_frames raised IndexError or struct.error from inside the build)."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    buf = tmp_path / "anim.gif"
    frames[0].save(buf, save_all=True, append_images=frames[1:])
    whole = buf.read_bytes()
    cut = whole[:len(whole) // 2 + 10]                        # the second frame's data cut short
    assert validate(cut) == (32, 32)
    np.testing.assert_array_equal(np.asarray(load_rgb(cut)), np.asarray(load_rgb(whole)))


def test_a_file_that_is_not_an_image_is_not_read_into_memory(tmp_path: Path) -> None:
    """A video among the images: its first bytes say what it is; it is neither read whole nor hashed."""
    make_dataset(tmp_path, {"a": 2})
    video = tmp_path / "a" / "holiday.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(2 << 20))
    assert len(_read_file(str(video))) == 32
    image = next((tmp_path / "a").glob("*.jpg"))
    assert _read_file(str(image)) == image.read_bytes()
    m = scan_dataset(tmp_path, progress=False)
    assert len(m.entries) == 2 and not m.skipped                 # ignored, as before: not an image name


def test_an_interrupted_scan_keeps_the_files_it_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    make_dataset(data, {"a": 3, "b": 3})
    cache = tmp_path / "scan.json"
    real, done = _validate_file, []

    def interrupted(f: _Found, max_pixels: int) -> list:
        if len(done) == 4:
            raise KeyboardInterrupt
        done.append(f.relpath)
        return real(f, max_pixels)

    monkeypatch.setattr(datasets, "_validate_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scan_dataset(data, hash_cache_path=cache, progress=False, workers=1)
    validated: list[str] = []

    def counting(f: _Found, max_pixels: int) -> list:
        validated.append(f.relpath)
        return real(f, max_pixels)

    monkeypatch.setattr(datasets, "_validate_file", counting)
    m = scan_dataset(data, hash_cache_path=cache, progress=False)
    assert len(m.entries) == 6 and sorted(validated) == sorted({e.relpath for e in m.entries} - set(done))
    assert len(validated) == 2


def test_an_unreadable_dataset_folder_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path, {"a": 2})

    def denied(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(datasets.os, "scandir", denied)
    with pytest.raises(UserError, match="cannot read dataset folder .*: Permission denied"):
        scan_dataset(tmp_path, progress=False)


def test_byte_identical_images_are_kept_once_and_the_copies_reported(tmp_path: Path) -> None:
    """A copy inside a class could sit in training and in test at once: the first by path is kept. The
    same picture in two classes has no one true class: every copy is left out. Each skip says why."""
    make_dataset(tmp_path, {"cats": 3, "dogs": 3})
    cat0 = (tmp_path / "cats" / "img_000.jpg").read_bytes()
    (tmp_path / "cats" / "sub").mkdir()
    (tmp_path / "cats" / "sub" / "again.jpg").write_bytes(cat0)            # a copy within the class
    dog1 = (tmp_path / "dogs" / "img_001.jpg").read_bytes()
    (tmp_path / "cats" / "a_dog.jpg").write_bytes(dog1)                    # the same picture in two classes
    m = scan_dataset(tmp_path, progress=False)
    assert [e.relpath for e in m.entries] == ["cats/img_000.jpg", "cats/img_001.jpg", "cats/img_002.jpg",
                                              "dogs/img_000.jpg", "dogs/img_002.jpg"]
    assert _skips(m) == {"cats/sub/again.jpg": "duplicate", "cats/a_dog.jpg": "duplicate",
                         "dogs/img_001.jpg": "duplicate"}
    reasons = {s.relpath: s.reason for s in m.skipped}
    assert reasons["cats/sub/again.jpg"] == "duplicate: the same bytes as cats/img_000.jpg"
    assert reasons["dogs/img_001.jpg"] == "duplicate: the same image in classes cats, dogs"
    assert "3 skipped (3 duplicate)" in m.summary()
    assert len({e.sha256 for e in m.entries}) == len(m.entries)


def test_a_class_folder_linked_to_another_or_to_the_dataset_is_one_line(tmp_path: Path) -> None:
    if not hasattr(os, "symlink"):
        pytest.skip("no symlinks here")
    make_dataset(tmp_path / "data", {"cats": 2, "dogs": 2})
    (tmp_path / "data" / "kitties").symlink_to(tmp_path / "data" / "cats", target_is_directory=True)
    with pytest.raises(UserError, match="'kitties' and 'cats' hold the same images"):
        scan_dataset(tmp_path / "data", progress=False)
    assert scan_dataset(tmp_path / "data", exclude=["kitties"], progress=False).classes == ["cats", "dogs"]
    (tmp_path / "data" / "kitties").unlink()
    make_dataset(tmp_path / "data" / "cats" / "sub", {"x": 1}, seed=9)       # cats/sub/x/img_000.jpg
    (tmp_path / "data" / "subset").symlink_to(tmp_path / "data" / "cats" / "sub", target_is_directory=True)
    with pytest.raises(UserError, match="'subset' and 'cats' hold the same images"):
        scan_dataset(tmp_path / "data", progress=False)
    (tmp_path / "data" / "subset").unlink()
    (tmp_path / "data" / "everything").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UserError, match="'everything' is a link to the dataset folder or a folder above it"):
        scan_dataset(tmp_path / "data", progress=False)


def test_links_back_to_the_dataset_and_loops_beside_the_classes_are_skips_not_errors(tmp_path: Path) -> None:
    """Inside a class, a link to the dataset folder would bring every other class in (each image then a
    cross-class duplicate); beside the classes, a loop of links would stop the whole scan.  Both are one
    skip each; a hidden folder beside the classes is said to be no class, a tool's (.git) is not mentioned."""
    if not hasattr(os, "symlink"):
        pytest.skip("no symlinks here")
    make_dataset(tmp_path, {"cats": 2, "dogs": 2})
    (tmp_path / "cats" / "up").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    make_dataset(tmp_path / ".extra", {"x": 1})
    (tmp_path / ".git").mkdir()
    (tmp_path / ".vscode").mkdir()                     # hidden, but no image in it: not worth a word
    (tmp_path / ".vscode" / "settings.json").write_text("{}")
    m = scan_dataset(tmp_path, progress=False)
    assert m.classes == ["cats", "dogs"] and len(m.entries) == 4
    assert _skips(m) == {"cats/up/": "symlink loop", "loopA": "symlink loop", "loopB": "symlink loop",
                         ".extra/": "hidden folder"}
    assert next(s.reason for s in m.skipped if s.relpath == "cats/up/") == \
        "symlink loop: the folder links to one above it"


def test_a_macos_archive_folder_is_not_a_class(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"cats": 2, "dogs": 2})
    (tmp_path / "__MACOSX" / "cats").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "cats" / "._img_000.jpg").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    assert scan_dataset(tmp_path, progress=False).classes == ["cats", "dogs"]


def test_a_bundled_image_is_named_by_its_file_name_only(tmp_path: Path) -> None:
    from tlreport.datasets.sources import resolve_image

    assert resolve_image("skimage:coffee.png", base_dir=tmp_path).path.is_file()
    for ref in ("skimage:../../../../etc/hostname", "skimage:", "skimage:nope.png"):
        with pytest.raises(UserError, match=r"no such bundled image \(available: .*coffee\.png"):
            resolve_image(ref, base_dir=tmp_path)


def test_images_beside_the_class_folders_are_reported(tmp_path: Path) -> None:
    make_dataset(tmp_path, {"cats": 2, "dogs": 2})
    (tmp_path / "stray.jpg").write_bytes((tmp_path / "cats" / "img_000.jpg").read_bytes())
    (tmp_path / "README.txt").write_text("about this dataset")                 # not an image: not reported
    m = scan_dataset(tmp_path, progress=False)
    assert [(s.relpath, s.label, s.kind) for s in m.skipped] == [("stray.jpg", "", "not in a class folder")]
    assert len(m.entries) == 4 and "1 skipped (1 not in a class folder)" in m.summary()
