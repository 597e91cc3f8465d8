"""Command-line interface: argument parsing only; the work happens elsewhere.

Exit codes: 0 success; 1 a :class:`~tlreport.errors.UserError` (or an
:class:`OSError`: a disk, a permission), printed as one line ``tlreport: ...``;
2 bad usage (argparse's own code); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM).  Anything else is a bug and keeps its traceback.

Global options, before or after the command: ``-q``/``--quiet`` prints only
errors, warnings and the final line; ``-v``/``--verbose`` adds debug detail
(on stderr); ``--debug`` is ``-v`` that also shows tracebacks for user errors.
tlreport prints no colour (so ``NO_COLOR`` has nothing to turn off), and
progress bars are drawn only on a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from tlreport import __version__
from tlreport.errors import UserError
from tlreport.util.text import display_name

#: the build's stages in order, for --only (tlreport.pipeline.STAGES, tested equal; importing it here would
#: cost every command, --help included, a seventh of a second)
STAGE_NAMES = ("classify", "features", "train", "experiments", "figures", "render")

DEFAULT_CONFIG = "tlreport.toml"
DEFAULT_BACKBONE = "efficientnet_lite0"   # what classify uses without --backbone or --model

#: Exit codes (docs/getting-started.md, *Commands*): argparse exits with ``EXIT_USAGE`` itself.
EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143


def _debug(args: argparse.Namespace, msg: str) -> None:
    """A ``-v`` line: on stderr, so stdout stays what a plain run prints."""
    if getattr(args, "verbose", False):
        print(f"debug: {msg}", file=sys.stderr, flush=True)


def _config_path(args: argparse.Namespace) -> str | None:
    """``--config``, else ``./tlreport.toml`` where there is one, else ``None`` (the defaults)."""
    if args.config is None and Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG
    return args.config


def _load(args: argparse.Namespace, *, build: bool = False):
    from tlreport.config import load_config

    path = _config_path(args)
    dataset_given = getattr(args, "dataset", None) is not None
    if build and path is None and not dataset_given:
        # the defaults alone build the demo dataset into ./site: a user in the wrong folder would publish it
        raise UserError(f"no {DEFAULT_CONFIG} here: run tlreport init FOLDER to write one for a folder of "
                        "class folders, pass --config PATH, or build the demo with --dataset demo")
    return load_config(path, require_dataset=build and not dataset_given)


def _dataset_arg(args: argparse.Namespace) -> str | None:
    """``--dataset`` as the build reads it: a folder made absolute from where the user typed it, or as given."""
    dataset = args.dataset
    if dataset is not None and not dataset.strip():      # "" would quietly mean the config's dataset
        raise UserError("--dataset needs a folder of class folders, 'demo' or 'artifact:NAME'")
    from tlreport.pipeline.data import is_folder_ref

    if dataset and is_folder_ref(dataset):
        try:
            dataset = str(Path(dataset).expanduser().resolve())
        except RuntimeError:                                        # ~user of an unknown user
            raise UserError(f"--dataset {dataset}: no such user's home folder") from None
    return dataset


def cmd_build(args: argparse.Namespace) -> int:
    dataset = _dataset_arg(args)         # a bad --dataset is reported before the config is read
    from tlreport.pipeline import build

    cfg = _load(args, build=True)
    if args.ray is not None:
        import dataclasses

        from tlreport.config import validate

        raw = {**cfg.raw, "features": {**cfg.raw["features"], "runner": "ray", "ray_address": args.ray}}
        said = cfg.warnings                      # unknown keys were dropped from raw: keep what was said
        cfg = validate(raw, source=str(cfg.path or "defaults"), path=cfg.path)
        cfg = dataclasses.replace(cfg, warnings=said + cfg.warnings)
    _debug(args, f"config: {cfg.path or 'none (the defaults)'}")
    _debug(args, f"cache_dir: {cfg.cache_dir}")
    _debug(args, f"site_dir: {cfg.site_dir}")
    if args.quiet:                      # the plan and stage lines are off: a typo must still be seen
        for w in cfg.warnings:
            print(f"tlreport: warning: {w}", file=sys.stderr)
    result = build(cfg, force=args.force, only=args.only, dry_run=args.dry_run,
                   dataset_override=dataset, data_root=args.data_root, quiet=args.quiet)
    if args.quiet:
        print(_final_line(result, args.dry_run))
    _debug(args, f"counters: {', '.join(f'{k}={v}' for k, v in sorted(result.counters.items())) or 'none'}")
    if not args.dry_run and getattr(args, "verbose", False):
        import json

        try:
            timings = json.loads((cfg.cache_dir / "last_build.json").read_text())["timings"]
        except (OSError, ValueError, KeyError):
            timings = {}
        for stage, seconds in timings.items():
            _debug(args, f"{stage}: {seconds:.2f} s")
    return 0


def _nothing_cached(result) -> str:
    """The line of a build limited by --only to stages before the post, every one of them cached."""
    from tlreport.engine.run import NOTHING_CACHED

    return f"{NOTHING_CACHED}: {', '.join(name for name, _ in result.plan)}"


def _final_line(result, dry_run: bool) -> str:
    """What ``-q`` prints: the line a plain build ends with."""
    from tlreport.engine.run import NOTHING_TO_DO

    if dry_run:
        if result.post is not None:         # a dry run returns the post only when nothing is to be done
            return f"{NOTHING_TO_DO}: {result.post}"
        from tlreport.pipeline import STAGES

        publisher = next(s.name for s in STAGES if s.publishes)
        idle = all(status in ("off", "cached") for _, status in result.plan)
        if result.plan and idle and all(n != publisher for n, _ in result.plan):   # --only a stage before it
            return _nothing_cached(result)
        # the site is out of date when the publishing stage reruns, or (nothing to rerun) was not published
        stale = any(n == publisher and (idle or status != "cached") for n, status in result.plan)
        return "plan: " + "; ".join(f"{n}: {w}" for n, w in result.plan) + ("; site: publish" if stale else "")
    if result.published:
        return f"published {result.post}"
    if not result.ran:
        if result.post is None:                 # --only a stage before the post
            return _nothing_cached(result)
        return f"{NOTHING_TO_DO}: {result.post}"
    if result.post is not None:
        return f"site/ already holds this post: {result.post}"
    return f"ran {', '.join(result.ran)}; nothing to publish"


def cmd_init(args: argparse.Namespace) -> int:
    from tlreport.starter_config import write_starter_config

    report = write_starter_config(Path(args.dataset), Path(args.config), backbone=args.backbone, force=args.force,
                                  site=not args.no_site)
    print(report.splitlines()[-1] if args.quiet else report)       # -q: the final line only
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    if args.model and args.backbone is not None:
        raise UserError("classify: --backbone and --model exclude each other: an exported classifier carries "
                        "its own backbones")
    if args.model:
        from tlreport.heads.export import classify_files

        for path, top in classify_files(Path(args.model), [Path(p) for p in args.images], top_k=args.top):
            _print_top(path, top)
        return 0
    from tlreport.backbones import get_spec
    from tlreport.datasets.images import check_image_path
    from tlreport.pipeline.classify import classify_images

    spec = get_spec(args.backbone or DEFAULT_BACKBONE)
    paths = [Path(p) for p in args.images]
    for p in paths:
        check_image_path(p)
    cache = Path(args.cache_dir)
    tops = classify_images(spec, paths, cache_dir=cache, data_root=args.data_root, top_k=args.top)
    for p, top in zip(paths, tops, strict=True):
        _print_top(p, top)
    return 0


def _print_top(path: Path, top: list[tuple[str, float]]) -> None:
    print(f"{display_name(str(path))}:")
    for name, p in top:
        print(f"    {p:.4f} {name}")


def cmd_backbones(args: argparse.Namespace) -> int:
    from tlreport.backbones import REGISTRY

    for name, s in REGISTRY.items():
        print(f"{name:22s} {s.input_size:>3d}px  {s.feature_dim:>4d}-d  {s.weights.describe()}")
        print(f"{'':22s} licence: {s.licence}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from tlreport.pipeline.cache_commands import cache_info, cache_path, cache_prune

    if args.action in ("prune", "path") and _config_path(args) is None:
        # the defaults would name none of the user's entries: prune would remove them all
        raise UserError(f"cache {args.action}: no {DEFAULT_CONFIG} here; pass --config PATH, the config whose "
                        f"entries to {'keep' if args.action == 'prune' else 'look up'}")
    cfg = _load(args)
    if args.action == "info":
        if args.stage:
            raise UserError(f"cache info: takes no stage (got {args.stage!r})")
        if args.dataset is not None or args.data_root is not None:
            raise UserError("cache info lists every entry; --dataset and --data-root are for path and prune")
        return cache_info(cfg)
    if args.action == "path":
        if not args.stage:
            raise UserError("cache path: name a stage, e.g. tlreport cache path train")
        return cache_path(cfg, args.stage, dataset=_dataset_arg(args), data_root=args.data_root)
    if args.stage:
        raise UserError(f"cache {args.action}: takes no stage (got {args.stage!r})")
    return cache_prune(cfg, dataset=_dataset_arg(args), data_root=args.data_root)


def cmd_check_site(args: argparse.Namespace) -> int:
    from tlreport.site.check import check_site

    problems = check_site(Path(args.site))
    for p in problems:
        print(p)
    if problems:
        raise UserError(f"{len(problems)} problem(s) in {args.site}")
    print(f"{args.site}: Jekyll build, HTML and browser checks passed")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from tlreport.artifacts.install import run_fetch

    if getattr(args, "quiet", False):        # a parser made by add_fetch_parser alone has no -q
        args.no_progress = True
    return run_fetch(args)


def add_fetch_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``tlreport fetch NAME... [--data-root DIR] [--from PATH] [--list]``."""
    p = subparsers.add_parser(
        "fetch",
        help="download, verify and install datasets and weights",
        description="Download, verify (sha256/md5) and install datasets and pretrained weights. "
                    "Downloads resume; a verified artifact is never fetched twice.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="artifacts to install (see --list)")
    p.add_argument("--data-root", metavar="DIR",
                   help="where artifacts live (default: $TLREPORT_DATA or $XDG_DATA_HOME/tlreport)")
    p.add_argument("--from", dest="from_path", metavar="PATH", type=Path,
                   help="install from a file you downloaded yourself (verified first)")
    p.add_argument("--list", action="store_true",
                   help="list artifacts (the NAMEs given, else all), their state, size and licence; downloads nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fetch)
    return p



def cmd_serve(args: argparse.Namespace) -> int:
    from tlreport.site.serve import serve

    return serve(args.site, host=args.host, port=args.port)


def cmd_preview(args: argparse.Namespace) -> int:
    from tlreport.site.jekyll import site_folder
    from tlreport.site.serve import _preview_serve, preview_screenshot

    if args.width and not args.screenshot:
        raise UserError("preview: --width sets the width of a --screenshot; give --screenshot OUT.png too")
    site = site_folder(args.site)
    if args.screenshot:
        kwargs = {"widths": args.width} if args.width else {}
        for out in preview_screenshot(site, args.screenshot, slug=args.post, **kwargs):
            print(f"wrote {out}")
        return 0
    return _preview_serve(site, host=args.host, port=args.port, slug=args.post)


def _port(text: str) -> int:
    """A TCP port for --port: 1 to 65535."""
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number, 1 to 65535")
    return value


def _width(text: str) -> int:
    value = int(text)
    if value < 100:
        raise argparse.ArgumentTypeError("must be at least 100")
    return value


def add_site_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``serve`` and ``preview`` subcommands (each sets ``func`` -> exit code)."""
    p = subparsers.add_parser(
        "serve", help="serve the Jekyll site locally (jekyll serve, or the static preview)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=4000, help="port (default 4000)")
    p.add_argument("--site", default="site", help="site directory (default: site)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser(
        "preview", help="build the site once and serve it, or screenshot the newest post with --screenshot"
    )
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="save full-page PNGs of the newest post (OUT-1280.png, OUT-390.png) and exit")
    p.add_argument(
        "--width", type=_width, action="append",
        help="viewport width for --screenshot; repeat for several (default: 1280 and 390); one width writes OUT.png",
    )
    p.add_argument("--post", metavar="SLUG", help="the post to show (default: the newest)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=4000, help="port (default 4000)")
    p.add_argument("--site", default="site", help="site directory (default: site)")
    p.set_defaults(func=cmd_preview)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlreport", description="Build a reproducible transfer-learning report "
                                "and publish it as a Jekyll post.",
                                epilog="exit codes: 0 ok, 1 an error (one line), 2 bad usage, "
                                       "130 interrupted (Ctrl-C), 143 terminated (SIGTERM)")
    p.add_argument("--version", action="version", version=f"tlreport {__version__}")
    _add_output_options(p, top=True)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="run the stages and render the post into site/")
    b.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    b.add_argument("--force", action="store_true",
                   help="recompute every stage (extracted features stay in the feature store: it is keyed by "
                        "network and image, so they would come out the same)")
    b.add_argument("--only", metavar="STAGE", choices=STAGE_NAMES,
                   help=f"run this stage and what it needs, nothing after ({', '.join(STAGE_NAMES)})")
    b.add_argument("--dry-run", action="store_true", help="print the plan and do nothing")
    b.add_argument("--dataset", metavar="PATH", help="use this folder of class folders as the dataset")
    b.add_argument("--data-root", metavar="DIR", help="where fetched artifacts live")
    b.add_argument("--ray", metavar="ADDRESS", nargs="?", const="",
                   help="extract missing features on the Ray cluster at ADDRESS (default: $RAY_ADDRESS, "
                        "else a local cluster); needs pip install -e '.[ray]'")
    b.set_defaults(func=cmd_build)

    i = sub.add_parser("init", help="write a tlreport.toml for a folder of class folders")
    i.add_argument("dataset", metavar="PATH", help="a folder with one sub-folder of images per class")
    i.add_argument("--config", default=DEFAULT_CONFIG, help=f"where to write it (default: ./{DEFAULT_CONFIG})")
    i.add_argument("--backbone", default="efficientnet_lite0", help="see `tlreport backbones`")
    i.add_argument("--force", action="store_true", help="overwrite an existing config")
    i.add_argument("--no-site", action="store_true",
                   help="write the config only: no site/ and no GitHub Pages workflow")
    i.set_defaults(func=cmd_init)

    c = sub.add_parser("classify", help="top-k ImageNet classes of photos")
    c.add_argument("images", nargs="+", metavar="IMAGE", help="photos to classify (JPEG, PNG, ...)")
    c.add_argument("--backbone", help=f"the ImageNet network (default: {DEFAULT_BACKBONE}; see `tlreport backbones`)")
    c.add_argument("--model", metavar="PATH",
                   help="an exported .keras classifier instead (its new classes; `tlreport cache path train`)")
    c.add_argument("--top", type=_positive_int, default=5, metavar="K", help="classes per photo (default: 5)")
    c.add_argument("--cache-dir", default=".tlreport", metavar="DIR",
                   help="where converted weights are kept (default: .tlreport)")
    c.add_argument("--data-root", metavar="DIR", help="where fetched artifacts live")
    c.set_defaults(func=cmd_classify)

    k = sub.add_parser("backbones", help="list registered backbones and where their weights come from")
    k.set_defaults(func=cmd_backbones)

    ca = sub.add_parser("cache", help="inspect or prune the cache",
                        description="info: list the cache's entries. prune: remove the stage entries and feature "
                                    "sets the config no longer uses, and what killed builds left behind (copy a "
                                    "classifier.keras you want out first). path STAGE: print the folder of the "
                                    "config's entry for STAGE.")
    ca.add_argument("action", choices=["info", "prune", "path"])
    ca.add_argument("stage", nargs="?", help="for path: the stage whose cache entry to print (e.g. train)")
    ca.add_argument("--config", help=f"the config whose cache it is (default: ./{DEFAULT_CONFIG}; prune and "
                                     "path need one)")
    ca.add_argument("--dataset", metavar="PATH",
                    help="for path and prune: the --dataset the build was given (its entries are keyed on it)")
    ca.add_argument("--data-root", metavar="DIR", help="for path and prune: the --data-root the build was given")
    ca.set_defaults(func=cmd_cache)

    cs = sub.add_parser("check-site", help="build site/ with Jekyll and check it in headless Chromium")
    cs.add_argument("--site", default="site", help="the Jekyll site folder (default: site)")
    cs.set_defaults(func=cmd_check_site)

    add_fetch_parser(sub)
    add_site_parsers(sub)
    for command in sub.choices.values():           # `tlreport build -q` as well as `tlreport -q build`
        _add_output_options(command, top=False)
    return p


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (its error is the subcommand's usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _add_output_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    """-q, -v and --debug; after the command they default to nothing, so they never undo the ones before it."""
    def default(value: bool) -> object:
        return value if top else argparse.SUPPRESS

    g = p.add_argument_group("output") if top else p
    g.add_argument("-q", "--quiet", action="store_true", default=default(False),
                   help="print only errors, warnings and the final line")
    g.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="print debug detail too (on stderr)")
    g.add_argument("--debug", action="store_true", default=default(False),
                   help="as -v, and show tracebacks for errors too")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, ``docker stop``, a cancelled CI job), met as Ctrl-C is: whatever
    catches the interrupt to keep finished work (feature shards, grid fits) keeps it."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def _stdout_closed() -> bool:
    """Whether nobody reads standard output any more (a pipe whose reader exited)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):      # no poll() here, or stdout is no file
        return False


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "top", 1) is not None and getattr(args, "top", 1) < 1:
        parser.error("--top must be >= 1")
    args.verbose = args.verbose or args.debug
    if args.quiet and args.verbose:
        parser.error("-q/--quiet and -v/--verbose (or --debug) do not go together")
    if threading.current_thread() is threading.main_thread():      # signal handlers live there only
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            raise
        print(f"tlreport: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError as e:
        if args.debug:
            raise
        if _stdout_closed():            # the reader left (`tlreport cache info | head -1`): nothing to say
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
            return EXIT_USER_ERROR
        print(f"tlreport: {e.strerror or e}", file=sys.stderr)      # another pipe (a subprocess, a socket)
        return EXIT_USER_ERROR
    except OSError as e:                # the machine said no: a full disk, a permission, an odd file
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"tlreport: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        # only a build (and fetch, whose download resumes) keeps work for the next run
        kept = {"build": "; completed work is cached and will be reused",
                "fetch": "; the download resumes where it stopped"}.get(getattr(args, "command", ""), "")
        print(f"tlreport: {how}{kept}", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED
