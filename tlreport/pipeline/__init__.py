"""The concrete pipeline: its stages in order, and the build that runs them.

Adding a stage is one module here (its ``inputs`` and ``run``) and one
:class:`~tlreport.engine.stage.Stage` in :data:`STAGES`.  Dependencies are
declared: ``deps`` are stages whose keys enter this one's, ``after`` stages
that must run first but whose outputs this one reads only through its own
inputs (train reads one backbone's features, not the whole features stage).
"""

from __future__ import annotations

from tlreport.config import Config
from tlreport.engine.run import run_build
from tlreport.engine.stage import BuildContext, BuildResult, Stage
from tlreport.pipeline.classify import classify_inputs, classify_run
from tlreport.pipeline.data import resolve_data_root
from tlreport.pipeline.experiments import experiments_inputs, experiments_run
from tlreport.pipeline.features import features_detail, features_inputs, features_run
from tlreport.pipeline.figures import figures_inputs, figures_run
from tlreport.pipeline.provenance import environment
from tlreport.pipeline.render import render_inputs, render_run
from tlreport.pipeline.train import train_inputs, train_run


def _tables_enabled(ctx: BuildContext) -> bool:
    e = ctx.config.experiments
    return e.enabled and bool(e.tables)


STAGES: list[Stage] = [
    Stage("classify", classify_inputs, classify_run, enabled=lambda ctx: ctx.config.classify.enabled,
          environment=environment),
    Stage("features", features_inputs, features_run, detail=features_detail,
          enabled=lambda ctx: ctx.config.train.enabled or _tables_enabled(ctx), environment=environment),
    Stage("train", train_inputs, train_run, after=("features",),
          enabled=lambda ctx: ctx.config.train.enabled, environment=environment),
    Stage("experiments", experiments_inputs, experiments_run, after=("features",), enabled=_tables_enabled,
          environment=environment),
    Stage("figures", figures_inputs, figures_run, deps=("train", "experiments"),
          enabled=lambda ctx: ctx.config.train.enabled or ctx.config.experiments.enabled),
    # render reads features.json (the datasets' summaries) besides the sections' outputs
    Stage("render", render_inputs, render_run, deps=("features", "classify", "train", "experiments", "figures"),
          publishes=True),
]


def build(config: Config, *, force: bool = False, only: str | None = None, dry_run: bool = False,
          dataset_override: str | None = None, data_root: str | None = None,
          quiet: bool = False) -> BuildResult:
    """``tlreport build``: run :data:`STAGES` for ``config`` and publish the post into its site."""
    return run_build(config, STAGES, force=force, only=only, dry_run=dry_run,
                     dataset_override=dataset_override, data_root=resolve_data_root(config, data_root),
                     quiet=quiet)
