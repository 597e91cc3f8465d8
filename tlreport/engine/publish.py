"""Publishing a rendered post into site/ by swapping files into place."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from tlreport.config import Config
from tlreport.util.faults import fault_point
from tlreport.util.files import atomic_write_json, disk_error, read_json
from tlreport.util.hashing import hash_obj


def _site_marker(site: Path, owner: str) -> Path:
    """What one config published into ``site/``: one marker per config, so two configs sharing a
    site never delete each other's posts, and a renamed slug still cleans up after itself."""
    return site / f".tlreport-build-{hash_obj(owner)[:12]}.json"


def owner_of(config: Config) -> str:
    """The config's identity for its site marker: its path relative to the site (stable if moved)."""
    if config.path is None:
        return "defaults"
    return os.path.relpath(config.path, config.site_dir.resolve() if config.site_dir.exists() else config.site_dir)


def site_is_current(site: Path, render_key: str | None, owner: str) -> bool:
    if render_key is None:
        return True
    try:
        meta = read_json(_site_marker(site, owner))
    except (OSError, ValueError):
        return False
    if meta.get("render_key") != render_key:
        return False
    files = meta.get("files", [])
    if not all(os.path.exists(site / rel) for rel in files):               # False, not an error, if unreadable
        return False
    # the files are this build's, not another config's with the same slug written over them since
    return meta.get("digest") == published_digest(site, files)


def published_digest(site: Path, files: list[str]) -> str | None:
    """sha256 over the bytes of what a post published into ``site`` (files, and folders file by file, in
    order); ``None`` when one cannot be read."""
    import hashlib

    h = hashlib.sha256()
    try:
        for rel in files:
            top = site / rel
            members = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
            for f in members:
                h.update(f.relative_to(site).as_posix().encode() + b"\0")
                h.update(f.read_bytes())
                h.update(b"\0")
    except OSError:
        return None
    return h.hexdigest()


PUBLISHED_FOLDERS = ("_posts", "images", "preview")  # where render puts the post, its figures, its preview


def publish(render_out: Path, site: Path, render_key: str, owner: str) -> list[str]:
    """Swap the rendered post, its images and its preview into ``site/``.

    Each piece is copied next to its final place under a temporary name and then
    renamed, so an interrupted publish leaves either the old or the new version.
    Files this post published before and no longer produces are removed.
    """
    src = render_out / "site"
    if not (site / "_config.yml").is_file():
        from tlreport.util.paths import shipped_path

        scaffold = shipped_path("site")
        if scaffold.resolve() != site.resolve():
            copy_scaffold(scaffold, site)
    try:
        old = read_json(_site_marker(site, owner)).get("files", [])
    except (OSError, ValueError):
        old = []
    published: list[str] = []
    # the post's markdown last: a post in _posts always finds its images and preview in place
    for top in sorted(src.iterdir(), key=lambda t: (t.name == "_posts", t.name)):
        for item in sorted(top.iterdir()):
            rel = item.relative_to(src)
            dest = site / rel
            tmp = dest.with_name(f".{dest.name}.tlreport-new")
            try:
                _swap_in(item, dest, tmp)
                fault_point("publish:mid")
            except OSError as e:          # a folder in site/ the user made unwritable, a full disk: one line
                with contextlib.suppress(OSError):
                    shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink(missing_ok=True)
                raise disk_error(dest, e) from None
            published.append(rel.as_posix())
    for rel in old:
        if rel not in published:
            p = site / rel
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
    atomic_write_json(_site_marker(site, owner), {"render_key": render_key, "files": published,
                                                  "digest": published_digest(site, published), "owner": owner})
    _warn_of_shared_files(site, owner, published)
    return published


def _warn_of_shared_files(site: Path, owner: str, published: list[str]) -> None:
    """A line on stderr when another config's post has the same files in ``site`` (the same slug): each
    build writes over the other's post, and the last one wins."""
    import sys

    mine = set(published)
    for marker in sorted(site.glob(".tlreport-build-*.json")):
        if marker == _site_marker(site, owner):
            continue
        try:
            meta = read_json(marker)
        except (OSError, ValueError):
            continue
        other = meta.get("owner")                  # the config's path relative to the site, or "defaults"
        if other and other != "defaults" and not (site / other).is_file():
            continue                               # a config renamed, moved or deleted since: nobody to clash with
        if shared := sorted(mine & set(meta.get("files", []))):
            print(f"tlreport: warning: another config ({other or marker.name}) published {shared[0]} into this "
                  f"site too (the same post.slug); each build replaces the other's post: give one its own "
                  f"post.slug", file=sys.stderr)
            return


def _swap_in(item: Path, dest: Path, tmp: Path) -> None:
    """Copy ``item`` (a file or folder) to ``tmp`` beside ``dest``, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if item.is_dir():
        shutil.copytree(item, tmp)
        if dest.exists():
            trash = dest.with_name(f".{dest.name}.tlreport-old")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(dest, trash)
            try:
                os.replace(tmp, dest)
            except OSError:
                os.replace(trash, dest)          # the old version back where it was
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    else:
        shutil.copy2(item, tmp)
        os.replace(tmp, dest)


def copy_scaffold(scaffold: Path, site: Path) -> list[Path]:
    """Copy the Jekyll site's layouts, styles and config into ``site`` where missing; returns the files written."""
    written = []
    for p in sorted(scaffold.rglob("*")):
        rel = p.relative_to(scaffold)
        if rel.parts[0] in ("_posts", "images", "preview", "_site", ".jekyll-cache") or \
                rel.name.startswith(".tlreport-build"):
            continue
        dest = site / rel
        if p.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        elif not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
            written.append(dest)
    return written
