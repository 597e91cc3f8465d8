"""No bad value of any config field reaches a traceback.

Every field of the repository's configs set to wrong types and values, unknown keys and broken TOML:
each is a :class:`~tlreport.errors.UserError` naming the field (or, for an unknown key, a warning),
never another exception.  The in-process fuzz and the Hypothesis property run in the quick tier; a
handful of the same cases go through ``python -m tlreport build --dry-run`` in a subprocess.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import tomllib
from pathlib import Path

import pytest
from helpers import REPO, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlreport.config import SCHEMA, TABLE_SCHEMA, Config, load_config, validate
from tlreport.errors import ConfigError, UserError

BASES = {"default": REPO / "tlreport.toml", "caltech101-offline": REPO / "configs" / "caltech101-offline.toml"}


def _fields(schema: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for key, spec in schema.items():
        out.append(prefix + (key,))
        if isinstance(spec, dict):
            out += _fields(spec, prefix + (key,))
    return out


#: every field and section, then every field of an [[experiments.tables]] entry
FIELDS = _fields(SCHEMA) + [("experiments", "tables", 0, key) for key in TABLE_SCHEMA]

BAD_VALUES = [
    "x", "", " ", "\x00", "a\x00b", "~no-such-user-tlreport/x", "~", "../../..", "/",
    "efficientnet_lite0", "demo", "artifact:nope", "a+b", "efficientnet_lite0+efficientnet_lite0",
    [], ["x"], [1], [True], [1.5], [[1]], [{}], ["\x00"], ["~no-such-user-tlreport"], [0.3, 0.3, 0.4],
    {}, {"a": 1}, {"enabled": True},
    True, False, 0, -1, 1, 7, 2**31, 2**63 - 1, -2**63, 10**30, -10**30, 10**400,
    0.5, -0.5, 1e308, float("nan"), float("inf"), -float("inf"),
    dt.date(2026, 1, 1), dt.datetime(2026, 1, 1, 12, 0), dt.time(12, 0),
]


def _base(name: str) -> dict:
    data = tomllib.loads(BASES[name].read_text())
    data.setdefault("experiments", {}).setdefault("tables", [{"dataset": "demo"}])
    return data


def _set(data: dict, path: tuple, value) -> dict:
    """A copy of ``data`` with ``value`` at ``path`` (tables and lists made on the way, as TOML would)."""
    data = copy.deepcopy(data)
    cur = data
    for part, nxt in zip(path[:-1], path[1:], strict=True):
        want = list if isinstance(nxt, int) else dict
        if isinstance(cur, list):
            while len(cur) <= part:
                cur.append({})
        if not isinstance(cur[part] if isinstance(cur, list) else cur.get(part), want):
            cur[part] = [] if want is list else {}
        cur = cur[part]
    if isinstance(cur, list):
        while len(cur) <= path[-1]:
            cur.append({})
    cur[path[-1]] = value
    return data


def _name(path: tuple) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")


def _check(data: dict) -> Config | None:
    """Validate ``data`` and touch what a build reads first: a UserError, or a config whose paths resolve."""
    try:
        cfg = validate(data)
        cfg.cache_dir, cfg.site_dir, cfg.hash()
        for p in (cfg.dataset.path, cfg.data_root, cfg.post.templates, *(t.dataset for t in cfg.experiments.tables)):
            if p:
                cfg.resolve(p)
        return cfg
    except UserError as e:
        text = str(e)
        assert text and "Traceback" not in text
        return None


@pytest.mark.parametrize("base", sorted(BASES))
def test_every_field_with_every_bad_value_is_a_user_error_or_valid(base):
    data = _base(base)
    assert _check(data) is not None
    for path in FIELDS:
        for value in BAD_VALUES:
            try:
                _check(_set(data, path, value))
            except Exception as e:      # noqa: BLE001 - the point: name the case that crashed
                raise AssertionError(f"{_name(path)} = {value!r}: {type(e).__name__}: {e}") from e


@pytest.mark.parametrize("value", ["x", "\x00", [], {}, float("nan"), 10**400, dt.time(1, 2)])
def test_a_bad_field_is_named_in_the_error(value):
    """Wrong types in every field of ``[train]``, the section whose ``enabled`` once raised KeyError."""
    for key in SCHEMA["train"]:
        with pytest.raises(ConfigError) as e:
            validate({"train": {key: value}})
        assert any(p.startswith(f"train.{key}:") for p in e.value.problems), e.value.problems


def test_nul_bytes_and_unknown_homes_are_config_errors():
    for field in ("cache_dir", "site_dir", "data_root"):
        for bad in ("a\x00b", "~no-such-user-tlreport/x"):
            with pytest.raises(ConfigError, match=f"^config: {field}: "):
                validate({field: bad})
    with pytest.raises(ConfigError, match="dataset.path: must not contain a NUL byte"):
        validate({"dataset": {"path": "data\x00"}})
    with pytest.raises(ConfigError, match="post.title: must not contain a NUL byte"):
        validate({"post": {"title": "a\x00"}})
    with pytest.raises(ConfigError, match="classify.images: no item may contain a NUL byte"):
        validate({"classify": {"images": ["skimage:chelsea.png\x00"]}})
    with pytest.raises(ConfigError, match=r"dataset.path: no home folder for ~no-such-user-tlreport"):
        validate({"dataset": {"path": "~no-such-user-tlreport/photos"}})
    with pytest.raises(ConfigError, match=r"experiments.tables\[0\].dataset: no home folder"):
        validate({"experiments": {"tables": [{"dataset": "~no-such-user-tlreport"}]}})
    with pytest.raises(UserError, match="no home folder"):               # resolve() itself, past validate
        validate({}).resolve("~no-such-user-tlreport/x")
    assert validate({"site_dir": "~/site"}).site_dir == Path("~/site").expanduser()


def test_integers_past_64_bits_and_floats_are_refused_not_overflowed():
    with pytest.raises(ConfigError, match=r"train.learning_rate: must be within TOML's 64-bit integers"):
        validate({"train": {"learning_rate": 10**400}})
    with pytest.raises(ConfigError, match=r"train.fractions: must be within TOML's 64-bit integers"):
        validate({"train": {"fractions": [10**400, 1, 1]}})            # sum() - 1.0 raised OverflowError
    with pytest.raises(ConfigError, match=r"train.epochs: must be within TOML's 64-bit integers"):
        validate({"train": {"epochs": 2**63}})


def test_a_single_problem_is_one_line_and_several_are_listed():
    with pytest.raises(ConfigError) as e:
        validate({"seed": -1})
    assert str(e.value) == "config: seed: must be in [0, 4294967295] (got -1)"
    with pytest.raises(ConfigError) as e:
        validate({"seed": -1, "train": {"enabled": "yes"}})
    assert str(e.value).splitlines() == ["config: 2 invalid fields",
                                         "  seed: must be in [0, 4294967295] (got -1)",
                                         "  train.enabled: must be true/false (got 'yes')"]


def test_unknown_and_misspelled_keys_warn_with_a_suggestion():
    cfg = validate({"sead": 1, "post": {"titel": "x"}, "train": {"epoch": 3},
                    "experiments": {"tables": [{"dataset": "demo", "setting": [5]}]}})
    said = "\n".join(cfg.warnings)
    for hint in ("sead: unknown key, ignored; did you mean 'seed'?",
                 "post.titel: unknown key, ignored; did you mean 'post.title'?",
                 "train.epoch: unknown key, ignored; did you mean 'train.epochs'?",
                 "experiments.tables[0].setting: unknown key, ignored; did you mean "
                 "'experiments.tables[0].settings'?"):
        assert hint in said, said
    with pytest.raises(ConfigError, match="'logreg_flip' is now `experiments.flip = true`"):   # a renamed value
        validate({"experiments": {"heads": ["logreg_flip"]}})


def test_a_misspelt_section_is_an_error_and_unknown_keys_are_listed_with_other_problems():
    """A misspelt [[experiments.tables]] used to warn, then build with no table and the experiments off."""
    with pytest.raises(ConfigError) as e:
        validate({"trian": {"epochs": 3}})
    assert str(e.value) == ("config: trian: unknown section; did you mean 'train'? (every setting in it would "
                            "be ignored)")
    with pytest.raises(ConfigError, match=r"experiments.table: unknown section; did you mean 'experiments.tables'"):
        validate({"experiments": {"table": [{"dataset": "demo", "settings": [5]}]}})
    with pytest.raises(ConfigError) as e:
        validate({"train": {"epochs": -1, "batchsize": 3}})
    assert str(e.value).splitlines()[1:] == [
        "  train.epochs: must be > 0 (got -1)",
        "  train.batchsize: unknown key, ignored; did you mean 'train.batch_size'?"]


BROKEN_TOML = [
    "[post\n", "seed = \n", "seed = 1\nseed = 2\n", "[post]\n[post]\n", "a = 'unterminated\n", "= 1\n",
    "seed = 0x\n", "seed = 1" + "0" * 5000 + "\n", "x = " + "[" * 5000 + "\n", "x = " + "{a = " * 3000 + "\n",
    "date = 2026-02-30\n", "[[post]]\n", "post = 1\n[post]\n", "\ufeffseed = 1\n", "seed = 1\x00\n",
]


@pytest.mark.parametrize("text", BROKEN_TOML, ids=range(len(BROKEN_TOML)))
def test_broken_toml_is_one_line(tmp_path, text):
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_config(p)
    assert str(e.value).startswith(str(p)) and "\n" not in str(e.value), str(e.value)


def test_unreadable_config_files_are_one_line(tmp_path):
    (tmp_path / "latin1.toml").write_bytes(b'title = "caf\xe9"\n')
    with pytest.raises(UserError, match="not UTF-8 text"):
        load_config(tmp_path / "latin1.toml")
    with pytest.raises(UserError, match="is a folder; name the config file in it"):
        load_config(tmp_path)                                      # a folder
    with pytest.raises(UserError, match="cannot read"):
        load_config(tmp_path / ("x" * 300 + ".toml"))             # a name too long for the file system


# ----------------------------------------------------------------------------- the property

_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)   # TOML strings: no surrogates
_INTERESTING = st.sampled_from(["", "demo", "efficientnet_lite0", "efficientnet_lite0+efficientnet_lite1",
                                "softmax_sgd", "logreg", "cosine", "float32", "auto", "local", "ray", "2026-11-28",
                                "caltech101", "~", "~no-such-user-tlreport", "\x00", "a-slug"])
_SCALARS = st.one_of(
    st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), _TEXT, _INTERESTING,
    st.dates(), st.datetimes(), st.times(),
)
#: what tomllib can return: scalars, arrays and tables of them
TOML_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=8)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([None, *sorted(BASES)]),
       changes=st.lists(st.tuples(st.sampled_from(FIELDS + [("unknown",), ("post", "titel")]), TOML_VALUES),
                        min_size=1, max_size=4))
def test_any_toml_value_in_any_field_validates_or_is_a_user_error(base, changes):
    data = _base(base) if base else {}
    for path, value in changes:
        data = _set(data, path, value)
    _check(data)


# ----------------------------------------------------------------------------- through the CLI

CLI_CASES = {
    "train.enabled": '[train]\nenabled = "yes"\n',
    "cache_dir NUL": 'cache_dir = "a\\u0000b"\n',
    "site_dir NUL": 'site_dir = "\\u0000"\n',
    "dataset.path NUL": '[dataset]\npath = "data\\u0000"\n',
    "unknown home": '[dataset]\npath = "~no-such-user-tlreport/photos"\n',
    "a section as a number": 'post = 3\n',
    "broken TOML": '[post\ntitle = "x"\n',
    "a huge integer": "seed = " + "9" * 5000 + "\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_bad_configs_through_the_cli_are_one_line_and_exit_1(tmp_path, case):
    (tmp_path / "bad.toml").write_text(CLI_CASES[case], encoding="utf-8")
    r = run_cli("build", "--dry-run", "--config", "bad.toml", cwd=tmp_path)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("tlreport: "), r.stderr


def _toml(value) -> str:
    """A TOML literal for the fuzz's values (enough for this test's cases)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def test_the_fuzz_values_are_toml():
    """The fuzz tests values a TOML file can hold (dates, times and the rest round-trip through tomllib)."""
    for value in BAD_VALUES:
        if isinstance(value, (dt.date, dt.time)):
            continue
        back = tomllib.loads(f"v = {_toml(value)}\n")["v"]
        assert back == value or (isinstance(value, float) and math.isnan(value)), value
