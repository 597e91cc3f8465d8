"""User-facing error types.

A :class:`UserError` is printed by the CLI as one plain line and a non-zero exit
code; anything else is a bug and keeps its traceback (``--debug`` shows it for
user errors too).
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: a missing file, a bad value, no network."""


class ConfigError(UserError):
    """One or more invalid config fields; every problem is listed at once."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = list(problems)
        self.source = source
        super().__init__(self._format())

    def _format(self) -> str:
        if len(self.problems) == 1:             # one problem, one line
            return f"{self.source}: {self.problems[0]}"
        head = f"{self.source}: {len(self.problems)} invalid fields"
        return head + "".join(f"\n  {p}" for p in self.problems)


class IntegrityError(UserError):
    """A downloaded or cached file does not match its pinned hash."""


class NeedsDownload(UserError):
    """An input that a real build would download first; a read-only plan reports it instead.

    ``downloads`` are human-readable, e.g. ``"inception_v3 (92 MB download)"``.
    """

    def __init__(self, downloads: list[str]):
        self.downloads = list(downloads)
        super().__init__("needs " + ", ".join(self.downloads))
