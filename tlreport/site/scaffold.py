"""A Jekyll site and a GitHub Pages workflow for the user's own repository (``tlreport init``).

The repository needs nothing of tlreport's to publish: the workflow builds the
committed ``site/`` with Jekyll and checks the HTML with a copy of
:mod:`tlreport.site.lint` written beside it (standard library only), so it runs
on a plain GitHub runner.  Files that exist are left as they are.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tlreport.util.files import atomic_write_text
from tlreport.util.paths import shipped_path

WORKFLOW = Path(".github") / "workflows" / "pages.yml"
CHECKER = Path(".github") / "tlreport" / "check_site.py"

_CHECKER_MAIN = '''

if __name__ == "__main__":
    import sys

    problems = html_problems(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
    print("\\n".join(problems) or "built HTML: no problems")
    sys.exit(1 if problems else 0)
'''


def repository_root(folder: Path) -> Path:
    """The git work tree holding ``folder``, else ``folder`` itself (a repository not made yet)."""
    try:
        r = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return folder
    return Path(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else folder


def lay_site(site_dir: Path, repo: Path) -> list[Path]:
    """Write what is missing of the Jekyll site in ``site_dir`` and of the Pages workflow in ``repo``;
    returns the files written."""
    from tlreport.engine.publish import copy_scaffold

    written = copy_scaffold(shipped_path("site"), site_dir)
    site_rel = Path(os.path.relpath(site_dir, repo)).as_posix()
    if site_rel.startswith(".."):
        return written                       # the site lies outside the repository: no workflow can build it
    for rel, text in ((WORKFLOW, shipped_path("templates", "pages", "pages.yml").read_text(encoding="utf-8")
                       .replace("@SITE@", site_rel)),
                      (CHECKER, checker_source())):
        path = repo / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            written.append(path)
    return written


def checker_source() -> str:
    """:mod:`tlreport.site.lint` as a script: ``python3 check_site.py BUILT_SITE [BASE_PATH]``."""
    from tlreport.site import lint

    return Path(lint.__file__).read_text(encoding="utf-8") + _CHECKER_MAIN
