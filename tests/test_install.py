"""Users and CI install the same tested dependency set."""

from __future__ import annotations

import re

from helpers import REPO


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_readme_and_ci_install_with_the_constraints() -> None:
    readme_install = next(line for line in (REPO / "README.md").read_text().splitlines() if "pip install" in line)
    assert "-c constraints.txt" in readme_install
    ci_install = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if "pip install -q -e" in line]
    assert ci_install and all("-c constraints.txt" in line for line in ci_install)


def test_the_constraints_pin_the_stack() -> None:
    pins = _pins()
    for name in ("tensorflow-cpu", "keras", "numpy", "pillow", "matplotlib", "jinja2", "pandas", "scikit-learn",
                 "pytest"):
        assert name in pins, name
