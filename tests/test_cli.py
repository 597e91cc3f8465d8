"""The CLI's manners: --version, -q/-v, exit codes (0 ok, 1 error, 2 usage, 130/143 interrupted), no colour."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO, write_config

import tlreport
from tlreport import cli
from tlreport.errors import UserError

RENDER_ONLY = """
[post]
title = "Quiet"
slug = "quiet"
[classify]
enabled = false
[train]
enabled = false
[experiments]
enabled = false
"""


@pytest.fixture(autouse=True)
def _keep_sigterm():
    """main() installs a SIGTERM handler; the test process keeps its own."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def _exit_code(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:
        return int(e.code or 0)


def test_version(capsys):
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"tlreport {tlreport.__version__}\n"


def test_only_names_the_build_stages():
    from tlreport.pipeline import STAGES

    assert cli.STAGE_NAMES == tuple(s.name for s in STAGES)


@pytest.mark.parametrize("argv", [[], ["nope"], ["build", "--nope"], ["build", "--only", "bogus"], ["-q", "-v", "backbones"],
                                  ["backbones", "-q", "--debug"], ["classify", "x.jpg", "--top", "0"]])
def test_bad_usage_exits_2(argv, capsys):
    assert _exit_code(argv) == 2
    assert "usage: tlreport" in capsys.readouterr().err


def test_a_user_error_is_one_line_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _exit_code(["build", "--config", "missing.toml"]) == 1
    assert capsys.readouterr().err == "tlreport: config file not found: missing.toml\n"
    write_config(tmp_path, "seed = -1\n")
    assert _exit_code(["build", "--dry-run", "-q"]) == 1
    err = capsys.readouterr().err
    assert err == "tlreport: tlreport.toml: seed: must be in [0, 4294967295] (got -1)\n", err
    with pytest.raises(UserError, match="config file not found"):             # --debug: the traceback
        cli.main(["--debug", "build", "--config", "missing.toml"])


def test_an_os_error_is_one_line_and_exits_1(monkeypatch, capsys):
    def refuse(args):
        raise PermissionError(13, "Permission denied", "/some/where")

    monkeypatch.setattr(cli, "cmd_backbones", refuse)
    assert _exit_code(["backbones"]) == 1
    assert capsys.readouterr().err == "tlreport: /some/where: Permission denied\n"
    with pytest.raises(PermissionError):
        cli.main(["backbones", "--debug"])


def test_quiet_prints_only_the_final_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, RENDER_ONLY + "[features]\nbatch_sise = 3\n")
    assert _exit_code(["-q", "build", "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["plan: classify: off; features: off; train: off; experiments: off; figures: off; "
                                "render: rerun; site: publish"], out
    assert err == ("tlreport: warning: features.batch_sise: unknown key, ignored; did you mean "
                   "'features.batch_size'?\n")
    assert _exit_code(["build", "--quiet"]) == 0                                # after the command too
    out, _ = capsys.readouterr()
    post = tmp_path / 'site' / '_posts' / '2026-11-28-quiet.md'
    assert out == f"published {post}\n"
    assert _exit_code(["build", "-q"]) == 0
    assert capsys.readouterr().out == f"nothing to do: every stage is cached and site/ is current: {post}\n"
    assert _exit_code(["build", "-q", "--dry-run"]) == 0
    assert capsys.readouterr().out == f"nothing to do: every stage is cached and site/ is current: {post}\n"
    # a plain build says the same last line after its plan and stage lines
    write_config(tmp_path, RENDER_ONLY.replace('"Quiet"', '"Loud"'))
    assert _exit_code(["build"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("plan: ") and lines[-1].startswith("published ") and len(lines) >= 3, lines


def test_verbose_adds_debug_detail_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, RENDER_ONLY)
    assert _exit_code(["build", "-v"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith("published ")                     # stdout as a plain build's
    debug = err.splitlines()
    assert f"debug: config: {tmp_path / 'tlreport.toml'}" in debug
    assert f"debug: cache_dir: {tmp_path / '.tlreport'}" in debug
    assert any(line.startswith("debug: render: ") and line.endswith(" s") for line in debug), debug
    assert all(line.startswith("debug: ") for line in debug), debug


def test_no_colour_is_ever_printed(tmp_path, monkeypatch, capsys):
    """tlreport prints no ANSI colour, so NO_COLOR has nothing to turn off (FORCE_COLOR turns nothing on)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORCE_COLOR", "1")
    write_config(tmp_path, RENDER_ONLY)
    for argv in (["--help"], ["build", "--help"], ["build", "-v", "--dry-run"], ["build", "--nope"],
                 ["build", "--config", "missing.toml"]):
        _exit_code(argv)
        out, err = capsys.readouterr()
        assert "\x1b" not in out + err, argv


def test_the_exit_codes_are_in_the_help(capsys):
    _exit_code(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 ok, 1 an error (one line), 2 bad usage, 130 interrupted (Ctrl-C), 143 terminated" \
           in help_text
    assert "-q, --quiet" in help_text and "-v, --verbose" in help_text and "--version" in help_text


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_command_exits_130_or_143_in_one_line(sig, code, word):
    waits = ("import sys, time\nfrom tlreport import cli\n"
             "def wait(args):\n    print('ready', flush=True)\n    time.sleep(60)\n"
             "cli.cmd_backbones = wait\nsys.exit(cli.main(['backbones']))\n")
    p = subprocess.Popen([sys.executable, "-c", waits], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline() == "ready\n"
        os.kill(p.pid, sig)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == code
    assert err == f"tlreport: {word}\n", err              # `backbones` keeps nothing; a build says what it keeps


def test_a_build_that_would_quietly_fall_back_to_the_demo_dataset_stops_instead(tmp_path, monkeypatch, capsys):
    """No config here, or a config whose dataset.path was left out or misspelt: one line, exit 1, nothing
    built; the demo is one explicit flag away."""
    monkeypatch.chdir(tmp_path)
    assert _exit_code(["build", "--dry-run"]) == 1
    assert capsys.readouterr().err == ("tlreport: no tlreport.toml here: run tlreport init FOLDER to write one for "
                                       "a folder of class folders, pass --config PATH, or build the demo with "
                                       "--dataset demo\n")
    for table in ('[dataset]\npaht = "photos"\n', '[datset]\npath = "photos"\n', ""):
        write_config(tmp_path, '[post]\ntitle = "Mine"\n' + table)
        assert _exit_code(["build", "--dry-run"]) == 1
        err = capsys.readouterr().err
        # a misspelt section is its own error (every setting in it would be lost), a misspelt key is named
        assert err.startswith("tlreport: ") and err.count("\n") == 1
        assert ("datset: unknown section; did you mean 'dataset'?" in err if "datset" in table
                else "dataset.path is not set" in err)
        assert ("did you mean" in err) == bool(table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tlreport.toml"]


def test_cache_prune_and_path_need_a_config_and_info_takes_no_stage(tmp_path, monkeypatch, capsys):
    """Without a config the defaults name none of a user's entries: prune would remove every one of them."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tlreport" / "stages" / "train" / "0123").mkdir(parents=True)
    for action in (["prune"], ["path", "train"]):
        assert _exit_code(["cache", *action]) == 1
        assert capsys.readouterr().err.startswith(f"tlreport: cache {action[0]}: no tlreport.toml here; pass --config")
    assert (tmp_path / ".tlreport" / "stages" / "train" / "0123").is_dir()
    assert _exit_code(["cache", "info", "extra"]) == 1
    assert capsys.readouterr().err == "tlreport: cache info: takes no stage (got 'extra')\n"
    assert _exit_code(["cache", "info", "--dataset", "x"]) == 1
    assert "--dataset and --data-root are for path and prune" in capsys.readouterr().err


def test_options_that_would_be_ignored_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _exit_code(["classify", "x.jpg", "--model", "m.keras", "--backbone", "efficientnet_lite1"]) == 1
    assert "--backbone and --model exclude each other" in capsys.readouterr().err
    assert _exit_code(["preview", "--width", "500"]) == 1
    assert capsys.readouterr().err == ("tlreport: preview: --width sets the width of a --screenshot; give "
                                       "--screenshot OUT.png too\n")


def test_a_reader_that_leaves_early_gets_no_error_line():
    """`tlreport backbones | head -1`: the pipe closes under the command; it stops without a word."""
    p = subprocess.Popen([sys.executable, "-m", "tlreport", "backbones"], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1 and err == "", err


def test_a_broken_pipe_that_is_not_standard_output_is_reported(monkeypatch, capsys):
    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_backbones", broken)
    assert _exit_code(["backbones"]) == 1
    assert capsys.readouterr().err == "tlreport: Broken pipe\n"
