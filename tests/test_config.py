from pathlib import Path

import pytest

from tlreport.config import load_config, validate
from tlreport.errors import ConfigError, UserError

REPO = Path(__file__).resolve().parent.parent


def test_defaults_and_repo_config_are_valid():
    cfg = load_config(REPO / "tlreport.toml")
    assert cfg.classify.backbone == "efficientnet_lite0"
    assert cfg.post.slug
    assert validate({}).seed == 42


def test_every_bad_field_is_reported_at_once(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text('seed = "x"\n[post]\nslug = "Not A Slug"\n[classify]\nbackbone = "inceptionv3"\ntop_k = 0\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    problems = e.value.problems
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "seed: must be an integer (got \"x\")" in joined or "seed: must be an integer (got 'x')" in joined
    assert "post.slug:" in joined and "'Not A Slug'" in joined
    assert "classify.backbone: unknown backbone" in joined and "did you mean 'inception_v3'" in joined
    assert "classify.top_k: must be > 0 (got 0)" in joined


def test_unknown_key_is_a_warning_with_did_you_mean():
    cfg = validate({"post": {"titel": "x"}})
    assert any("post.titel: unknown key" in w and "post.title" in w for w in cfg.warnings)


def test_types_and_ranges():
    with pytest.raises(ConfigError) as e:
        validate({"train": {"fractions": [0.5, 0.5, 0.5], "momentum": 1.5, "epochs": -3},
                  "experiments": {"backbones": [], "heads": ["svm"], "precision": "fp16"}})
    joined = "\n".join(e.value.problems)
    for field in ("experiments.precision: must be one of","train.fractions: must sum to 1", "train.momentum", "train.epochs: must be > 0",
                  "experiments.backbones: must list at least one backbone", "experiments.heads: unknown head"):
        assert field in joined, joined
    with pytest.raises(ConfigError, match="seed: must be an integer"):
        validate({"seed": True})
    with pytest.raises(ConfigError, match=r"experiments.n_splits: must be at most 100 \(got 100000000000\)"):
        validate({"experiments": {"n_splits": 100_000_000_000}})


def test_values_that_would_fail_later_are_refused_up_front():
    """Each of these passed validation and failed minutes later (or silently miscounted)."""
    with pytest.raises(ConfigError) as e:
        validate({"seed": 2**32, "train": {"learning_rate": float("inf"), "l2": float("nan")},
                  "dataset": {"max_pixels": 300_000_000},
                  "experiments": {"heads": ["logreg", "logreg"],
                                  "tables": [{"dataset": "demo", "settings": [5, 5]}]}})
    joined = "\n".join(e.value.problems)
    for problem in ("seed: must be in [0, 4294967295]",                 # NumPy's global seed takes 32 bits
                    "train.learning_rate: must be a finite number > 0", "train.l2: must be a finite number >= 0",
                    "dataset.max_pixels: must be at most 178,956,970",  # Pillow refuses larger images itself
                    "experiments.heads: lists a head twice",             # every split would be counted twice
                    "experiments.tables[0].settings: lists an n_train twice"):
        assert problem in joined, joined
    validate({"seed": 2**32 - 1, "dataset": {"max_pixels": 178_956_970}})
    with pytest.raises(ConfigError, match="train.epochs: must be > 0"):       # an int too large for a float: no OverflowError
        validate({"train": {"epochs": -10**400}})
    with pytest.raises(ConfigError) as e:
        validate({"train": {"fractions": [float("nan"), 0.5, 0.5]},
                  "classify": {"images": [], "out_of_vocabulary": ""}})
    joined = "\n".join(e.value.problems)
    assert "train.fractions: each fraction must be a number > 0" in joined, joined
    assert "classify: no images to classify" in joined, joined
    validate({"classify": {"images": [], "enabled": False}})
    validate({"classify": {"images": []}})                                  # the out-of-vocabulary photo alone
    # "" is the config's own folder: the site's files were written beside the config
    with pytest.raises(ConfigError) as e:
        validate({"site_dir": "", "cache_dir": " "})
    assert sorted(e.value.problems) == ["cache_dir: must not be empty (got ' ')", "site_dir: must not be empty (got '')"]


def test_missing_and_invalid_toml(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="is a folder; name the config file in it"):
        load_config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[post\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)


def test_paths_resolve_relative_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.toml"
    p.write_text('cache_dir = "cache"\nsite_dir = "out/site"\n')
    cfg = load_config(p)
    assert cfg.cache_dir == tmp_path / "sub" / "cache"
    assert cfg.site_dir == tmp_path / "sub" / "out" / "site"


def test_only_plain_iso_dates_are_accepted():
    import datetime as dt

    for bad in ("20261128", "2026-W48-6", dt.datetime(2026, 11, 28, 10, 0)):
        with pytest.raises(ConfigError, match="post.date: must be a date YYYY-MM-DD"):
            validate({"post": {"date": bad}})
    assert validate({"post": {"date": dt.date(2026, 1, 2)}}).post.date == "2026-01-02"


def test_the_old_flip_head_name_points_to_its_replacement():
    with pytest.raises(ConfigError) as e:
        validate({"experiments": {"heads": ["logreg", "logreg_flip"]}})
    assert e.value.problems == ["experiments.heads: 'logreg_flip' is now `experiments.flip = true`, which adds a "
                                "+flip row for every head"]


def test_check_writable_turns_every_os_error_into_one_line(tmp_path, monkeypatch):
    from tlreport.util.files import check_writable

    check_writable(tmp_path / "new" / "site", "site_dir")            # creatable: fine, nothing created
    assert not (tmp_path / "new").exists()

    def no_entry(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "exists", no_entry)                   # a parent that cannot be entered
    with pytest.raises(UserError, match=r"^site_dir .* is not writable \(Permission denied\)"):
        check_writable(tmp_path / "locked" / "site", "site_dir")


def test_the_config_is_typed_and_frozen() -> None:
    import dataclasses

    cfg = validate({"experiments": {"tables": [{"dataset": "demo", "settings": [3, 5]}]}})
    assert cfg.train.epochs == 150 and cfg.experiments.backbones == ("efficientnet_lite0",)
    (table,) = cfg.experiments.tables
    assert table.settings == (3, 5) and table.test_cap == 50
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 1   # type: ignore[misc]


def test_a_section_hashes_like_the_dict_it_came_from() -> None:
    from tlreport.util.hashing import hash_obj

    cfg = validate({})
    assert hash_obj(cfg.train) == hash_obj(cfg.raw["train"])
    assert hash_obj({"experiments": cfg.experiments}) == hash_obj({"experiments": cfg.raw["experiments"]})


def test_a_table_row_may_concatenate_backbones() -> None:
    cfg = validate({"experiments": {"backbones": ["efficientnet_lite0", "efficientnet_lite0+efficientnet_lite1"]}})
    assert cfg.experiments.backbones[1] == "efficientnet_lite0+efficientnet_lite1"
    with pytest.raises(ConfigError, match="'efficientnet_lite0\\+nope': 'nope': unknown backbone"):
        validate({"experiments": {"backbones": ["efficientnet_lite0+nope"]}})


def test_a_retired_key_is_one_line_saying_what_to_do_instead():
    """features.backbones did nothing a build reads: an old config still validates, and is told to drop it."""
    cfg = validate({"features": {"backbones": ["efficientnet_lite0"], "batch_size": 16}})
    assert cfg.features.batch_size == 16 and not hasattr(cfg.features, "backbones")
    (warning,) = cfg.warnings
    assert warning.startswith("features.backbones: no longer read") and "delete the line" in warning
    assert "\n" not in warning


def test_the_reference_page_is_made_from_the_one_declaration():
    """docs/configuration.md's field table is generated from SCHEMA (`python -m tlreport.config` rewrites
    it), every field says what it means, and the typed sections have exactly the declared fields."""
    import dataclasses

    from tlreport import config as c

    page = (REPO / c.REFERENCE_PAGE).read_text(encoding="utf-8")
    assert c.reference_page(page) == page, "run: python -m tlreport.config"
    fields = [(f"{s}.{k}", spec) for s, sec in c.SCHEMA.items() if isinstance(sec, dict) for k, spec in sec.items()]
    fields += [(k, spec) for k, spec in c.SCHEMA.items() if not isinstance(spec, dict)]
    fields += [(f"experiments.tables[].{k}", spec) for k, spec in c.TABLE_SCHEMA.items()]
    assert not [name for name, spec in fields if not spec.doc], "every field needs its doc"
    assert all(f"| `{name}` |" in page for name, _ in fields)
    for section, cls in c._SECTIONS.items():
        assert [f.name for f in dataclasses.fields(cls)] == list(c.SCHEMA[section])
    assert [f.name for f in dataclasses.fields(c.TableConfig)] == list(c.TABLE_SCHEMA)
