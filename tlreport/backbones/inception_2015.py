"""The seed post's original model: the frozen Inception v3 graph of 2015-12-05.

``inception-2015-12-05.tgz`` (``tlreport fetch inception_2015``) holds:

``classify_image_graph_def.pb``
    the frozen GraphDef; raw JPEG bytes go into ``DecodeJpeg/contents:0``, the
    2048-wide bottleneck comes out of ``pool_3:0`` and 1008 class
    probabilities out of ``softmax:0``.
``imagenet_2012_challenge_label_map_proto.pbtxt``
    output index -> synset: ``entry { target_class: 449
    target_class_string: "n01440764" }`` blocks.
``imagenet_synset_to_human_label_map.txt``
    synset -> human name: lines ``n01440764<TAB>tench, Tinca tinca``.
``cropped_panda.jpg``
    a test image.

(The seed post's headings swap the two label files' names; the parsers here
read the real formats.)  The graph runs with ``tf.compat.v1`` inside TF2.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from tlreport.errors import UserError

GRAPH_FILE = "classify_image_graph_def.pb"
LABEL_MAP_FILE = "imagenet_2012_challenge_label_map_proto.pbtxt"
SYNSET_FILE = "imagenet_synset_to_human_label_map.txt"

INPUT_TENSOR = "DecodeJpeg/contents:0"
FEATURES_TENSOR = "pool_3:0"
PROBS_TENSOR = "softmax:0"
NUM_CLASSES = 1008

_FETCH_HINT = "run `tlreport fetch inception_2015`"


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (BOM and CR/LF tolerated)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing label file {path}; {_FETCH_HINT}")
    with open(path, encoding="utf-8-sig", newline=None) as f:
        return f.read().splitlines()


_SYNSET_LINE = re.compile(r"^(n\d+)[\t ]+(\S.*?)\s*$")


def parse_synset_to_human(path: Path) -> dict[str, str]:
    """Parse ``imagenet_synset_to_human_label_map.txt``: synset id -> human name.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.txt"
    >>> _ = p.write_text("n01440764\\ttench, Tinca tinca\\n")
    >>> parse_synset_to_human(p)
    {'n01440764': 'tench, Tinca tinca'}
    """
    out: dict[str, str] = {}
    for lineno, line in enumerate(_read_lines(path), 1):
        if not line.strip():
            continue
        m = _SYNSET_LINE.match(line)
        if not m:
            raise UserError(
                f"{path}:{lineno}: expected 'n<digits><TAB>human name', got {line.strip()[:60]!r}"
            )
        synset, name = m.groups()
        if out.get(synset, name) != name:
            raise UserError(f"{path}:{lineno}: synset {synset} listed twice with different names")
        out[synset] = name
    return out


# One token of the text proto: a comment, `key: value`, `name {`, or `}`.
_PBTXT_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#.*)
      | (?P<key>\w+)\s*:\s*(?P<value>"(?:[^"\\]|\\.)*"|-?\d+)
      | (?P<open>\w+)\s*\{
      | (?P<close>\})
    )""",
    re.VERBOSE,
)


def parse_label_map_proto(path: Path) -> dict[int, str]:
    """Parse ``imagenet_2012_challenge_label_map_proto.pbtxt``: output index -> synset id.

    Reads ``entry { target_class: N target_class_string: "nXXXXXXXX" }``
    blocks, on one line or many.
    """
    out: dict[int, str] = {}
    entry: dict[str, int | str] | None = None
    entry_line = 0
    lineno = 0

    def fail(msg: str) -> UserError:
        return UserError(f"{path}:{lineno}: {msg}")

    for lineno, line in enumerate(_read_lines(path), 1):
        pos = 0
        while pos < len(line):
            if not line[pos:].strip():
                break
            m = _PBTXT_TOKEN.match(line, pos)
            if not m:
                raise fail(f"cannot parse {line[pos:].strip()[:60]!r}")
            pos = m.end()
            if m["comment"]:
                break
            if m["open"]:
                if entry is not None or m["open"] != "entry":
                    raise fail(f"unexpected block {m['open']!r}")
                entry, entry_line = {}, lineno
            elif m["close"]:
                if entry is None:
                    raise fail("'}' without a matching 'entry {'")
                if set(entry) != {"target_class", "target_class_string"}:
                    raise fail("entry needs both target_class and target_class_string")
                index = int(entry["target_class"])
                if index in out:
                    raise fail(f"target_class {index} appears twice")
                out[index] = str(entry["target_class_string"])
                entry = None
            else:
                key, value = m["key"], m["value"]
                if entry is None:
                    raise fail(f"field {key!r} outside an entry block")
                if key == "target_class":
                    if value.startswith('"'):
                        raise fail(f"target_class must be an integer, got {value}")
                    entry[key] = int(value)
                elif key == "target_class_string":
                    if not value.startswith('"'):
                        raise fail(f"target_class_string must be a quoted string, got {value}")
                    entry[key] = value[1:-1]
                else:
                    raise fail(f"unknown field {key!r}")
    if entry is not None:
        lineno = entry_line
        raise fail("entry block is never closed")
    return out


class NodeLookup:
    """Output index -> human-readable name, as in TensorFlow's ``classify_image.py``."""

    def __init__(self, label_map_path: Path, synset_path: Path):
        synset_to_human = parse_synset_to_human(synset_path)
        self.index_to_synset = parse_label_map_proto(label_map_path)
        missing = sorted(s for s in self.index_to_synset.values() if s not in synset_to_human)
        if missing:
            raise UserError(
                f"{label_map_path}: {len(missing)} synset(s) not in {synset_path} "
                f"(first: {missing[0]}); are the label files from the same archive?"
            )
        self.names = {i: synset_to_human[s] for i, s in self.index_to_synset.items()}

    def index_to_name(self, index: int) -> str:
        """Human name of output ``index``; ``""`` for an index with no class (e.g. 0)."""
        return self.names.get(int(index), "")


def ensure_jpeg(data: bytes, quality: int = 95) -> bytes:
    """``data`` unchanged if it is an RGB JPEG, else re-encoded as one with PIL.

    The graph was built to decode JPEG only (its ``DecodeJpeg`` op rejects BMP,
    WebP, TIFF, ...; recent TF builds let PNG and GIF through, alpha and all),
    and the network needs three channels, so everything that is not an RGB
    JPEG -- PNG included, and greyscale or CMYK JPEGs -- is converted to RGB and
    saved as JPEG at ``quality``: one decoder path for every input.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG" and im.mode == "RGB":
                return data
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="JPEG", quality=quality)
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"not a readable image ({len(data)} bytes): {e}") from e
    return buf.getvalue()


class Inception2015:
    """The 2015 frozen Inception v3 graph, run with ``tf.compat.v1.Session``.

    ``model_dir`` is the unpacked ``inception-2015-12-05.tgz``.  Images go in as
    encoded bytes: JPEG is fed to ``DecodeJpeg/contents:0`` as is, any other
    format (PNG, ...) is first re-encoded to JPEG by PIL at quality 95, because
    the graph's decoder was made for JPEG only (see :func:`ensure_jpeg`).
    """

    def __init__(self, model_dir: Path):
        self.model_dir = Path(model_dir)
        paths = {name: self.model_dir / name for name in (GRAPH_FILE, LABEL_MAP_FILE, SYNSET_FILE)}
        for path in paths.values():
            if not path.is_file():
                raise UserError(f"missing {path.name} in {self.model_dir} ({path}); {_FETCH_HINT}")

        import tensorflow as tf

        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(paths[GRAPH_FILE].read_bytes())
        except Exception as e:  # google.protobuf.message.DecodeError
            raise UserError(f"{paths[GRAPH_FILE]} is not a GraphDef ({e}); {_FETCH_HINT}") from e
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        try:
            self._input = self.graph.get_tensor_by_name(INPUT_TENSOR)
            self._features = self.graph.get_tensor_by_name(FEATURES_TENSOR)
            self._probs = self.graph.get_tensor_by_name(PROBS_TENSOR)
        except KeyError as e:
            raise UserError(f"{paths[GRAPH_FILE]} is not the 2015 Inception graph: {e}") from e
        self.lookup = NodeLookup(paths[LABEL_MAP_FILE], paths[SYNSET_FILE])
        self.session = tf.compat.v1.Session(graph=self.graph)

    def predict_jpeg(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Bottleneck ``(2048,)`` and class probabilities ``(1008,)`` for one encoded image."""
        features, probs = self.session.run(
            [self._features, self._probs], feed_dict={self._input: ensure_jpeg(data)}
        )
        return np.squeeze(features).astype(np.float32), np.squeeze(probs).astype(np.float32)

    def top_k(self, probs: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable ``(name, probability)`` pairs, most probable first."""
        probs = np.asarray(probs).reshape(-1)
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.lookup.index_to_name(int(i)), float(probs[i])) for i in order]

    def close(self) -> None:
        """Release the TensorFlow session."""
        self.session.close()

    def __enter__(self) -> Inception2015:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
