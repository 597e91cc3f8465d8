"""Keying and looking up stages: reads only, writes nothing.

A stage's key is the hash of its inputs, its code (:mod:`tlreport.engine.code`)
and its dependencies' keys, so a change anywhere upstream reruns exactly what
depends on it.  In a read-only plan (``--dry-run``, ``cache prune``) an input
that a real build would download is not downloaded: the stage's row says what
it needs, and what depends on it is planned to run after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tlreport.engine.code import code_fingerprint
from tlreport.engine.stage import BuildContext, Stage
from tlreport.errors import NeedsDownload, UserError
from tlreport.util.hashing import hash_obj


@dataclass
class PlanRow:
    stage: Stage
    enabled: bool
    key: str | None = None          # None: off, or not computable yet (a download, an unknown upstream)
    hit: Path | None = None         # the cached output, when there is one
    needs: list[str] = field(default_factory=list)   # downloads a real build would make first
    waits_for: list[str] = field(default_factory=list)  # upstream stages whose keys are not known yet

    @property
    def to_run(self) -> bool:
        return self.enabled and self.hit is None

    def status(self, ctx: BuildContext) -> str:
        if not self.enabled:
            return "off"
        if self.hit is not None:
            return "cached"
        if self.needs:
            return "needs " + ", ".join(self.needs)
        if self.waits_for:
            return "after " + ", ".join(self.waits_for)
        return self.stage.detail(ctx) if self.stage.detail else "rerun"


def order(stages: list[Stage], only: str | None) -> list[Stage]:
    """``stages``, or with ``only`` that stage and the ones it needs."""
    by_name = {s.name: s for s in stages}
    if only is None:
        return stages
    if only not in by_name:
        raise UserError(f"unknown stage {only!r} for --only (known: {', '.join(by_name)})")
    needed: set[str] = set()

    def visit(n: str) -> None:
        if n not in needed:
            needed.add(n)
            for d in (*by_name[n].deps, *by_name[n].after):
                visit(d)

    visit(only)
    return [s for s in stages if s.name in needed]


def plan(ctx: BuildContext, stages: list[Stage]) -> list[PlanRow]:
    """Key every stage (cheap, no TF) and look it up; nothing is written."""
    rows: list[PlanRow] = []
    enabled = {s.name: s.enabled(ctx) for s in stages}
    unknown: set[str] = set()       # enabled stages whose key this plan could not compute
    for st in stages:
        row = PlanRow(st, enabled[st.name])
        rows.append(row)
        if not row.enabled:
            continue
        row.waits_for = [d for d in (*st.deps, *st.after) if d in unknown]
        if row.waits_for:           # its inputs read what those stages have not got yet
            unknown.add(st.name)
            continue
        try:
            inputs = st.inputs(ctx)
        except NeedsDownload as e:
            if not ctx.read_only:
                raise
            row.needs = e.downloads
            unknown.add(st.name)
            continue
        key = hash_obj({"stage": st.name, "code": code_fingerprint(st.run.__module__), "inputs": inputs,
                        "deps": {d: ctx.keys.get(d) for d in st.deps if enabled.get(d)}})
        ctx.keys[st.name] = key
        row.key = key
        row.hit = None if ctx.force else ctx.store.get(st.name, key, repair=not ctx.read_only)
        if row.hit is not None:
            ctx.outputs[st.name] = row.hit
    return rows
