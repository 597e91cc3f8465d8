"""Command-line interface: argument parsing only; the work happens elsewhere.

A :class:`~tlreport.errors.UserError` prints as one line (``tlreport: ...``)
and exits with status 2; ``--debug`` shows its traceback.  Anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tlreport.errors import UserError

DEFAULT_CONFIG = "tlreport.toml"


def _load(args: argparse.Namespace):
    from tlreport.config import load_config

    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    return load_config(path)


def cmd_build(args: argparse.Namespace) -> int:
    from tlreport.build import build

    cfg = _load(args)
    dataset = args.dataset
    if dataset and dataset != "demo" and not dataset.startswith("artifact:"):
        dataset = str(Path(dataset).expanduser().resolve())     # relative to where the user typed it
    build(cfg, force=args.force, only=args.only, dry_run=args.dry_run,
          dataset_override=dataset, data_root=args.data_root)
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    if args.model:
        from tlreport.training import classify_files

        for path, top in classify_files(Path(args.model), [Path(p) for p in args.images], top_k=args.top):
            _print_top(path, top)
        return 0
    from tlreport.backbones import get_spec
    from tlreport.stages import classify_images

    spec = get_spec(args.backbone)
    paths = [Path(p) for p in args.images]
    for p in paths:
        if not p.is_file():
            raise UserError(f"image not found: {p}")
    cache = Path(args.cache_dir)
    tops = classify_images(spec, paths, cache_dir=cache, data_root=args.data_root, top_k=args.top)
    for p, top in zip(paths, tops, strict=True):
        _print_top(p, top)
    return 0


def _print_top(path: Path, top: list[tuple[str, float]]) -> None:
    print(f"{path}:")
    for name, p in top:
        print(f"    {p:.4f} {name}")


def cmd_backbones(args: argparse.Namespace) -> int:
    from tlreport.backbones import REGISTRY

    for name, s in REGISTRY.items():
        print(f"{name:22s} {s.input_size:>3d}px  {s.feature_dim:>4d}-d  {s.weights.describe()}")
        print(f"{'':22s} licence: {s.licence}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from tlreport.cachecmd import cache_info, cache_prune

    cfg = _load(args)
    if args.action == "info":
        return cache_info(cfg)
    return cache_prune(cfg)


def cmd_check_site(args: argparse.Namespace) -> int:
    from tlreport.sitecheck import check_site

    problems = check_site(Path(args.site))
    for p in problems:
        print(p)
    if problems:
        raise UserError(f"{len(problems)} problem(s) in {args.site}")
    print(f"{args.site}: Jekyll build, HTML and browser checks passed")
    return 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tlreport", description="Build a reproducible transfer-learning report "
                                "and publish it as a Jekyll post.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for user errors too")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="run the stages and render the post into site/")
    b.add_argument("--config", help=f"config file (default: ./{DEFAULT_CONFIG} if present)")
    b.add_argument("--force", action="store_true", help="recompute every stage")
    b.add_argument("--only", metavar="SECTION", help="run this stage and what it needs, nothing after")
    b.add_argument("--dry-run", action="store_true", help="print the plan and do nothing")
    b.add_argument("--dataset", metavar="PATH", help="use this folder of class folders as the dataset")
    b.add_argument("--data-root", metavar="DIR", help="where fetched artifacts live")
    b.set_defaults(func=cmd_build)

    c = sub.add_parser("classify", help="top-k ImageNet classes of photos")
    c.add_argument("images", nargs="+", metavar="IMAGE")
    c.add_argument("--backbone", default="efficientnet_lite0")
    c.add_argument("--model", metavar="PATH", help="an exported .keras classifier (new classes)")
    c.add_argument("--top", type=int, default=5)
    c.add_argument("--cache-dir", default=".tlreport")
    c.add_argument("--data-root", metavar="DIR")
    c.set_defaults(func=cmd_classify)

    k = sub.add_parser("backbones", help="list registered backbones and where their weights come from")
    k.set_defaults(func=cmd_backbones)

    ca = sub.add_parser("cache", help="inspect or prune the cache")
    ca.add_argument("action", choices=["info", "prune"])
    ca.add_argument("--config")
    ca.set_defaults(func=cmd_cache)

    cs = sub.add_parser("check-site", help="build site/ with Jekyll and check it in headless Chromium")
    cs.add_argument("--site", default="site")
    cs.set_defaults(func=cmd_check_site)

    for mod, fn in (("tlreport.fetch", "add_parser"), ("tlreport.serve", "add_parsers")):
        try:
            module = __import__(mod, fromlist=[fn])
        except ImportError:
            continue
        getattr(module, fn)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if getattr(args, "top", 1) is not None and getattr(args, "top", 1) < 1:
        parser.error("--top must be >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            raise
        print(f"tlreport: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tlreport: interrupted; completed work is cached and will be reused", file=sys.stderr)
        return 130
