"""Keep TensorFlow's C++ start-up lines off the user's terminal.

Importing TensorFlow 2.21 (directly or through Keras) on a CPU with oneDNN's
custom operations writes lines such as ``oneDNN custom operations are on`` and
``All log messages before absl::InitializeLog() is called are written to
STDERR`` straight to file descriptor 2.  ``TF_CPP_MIN_LOG_LEVEL`` does not
silence them, because absl prints them before it reads its settings.

:func:`install` puts an import hook in front of ``tensorflow`` and ``keras``:
while either module first executes, descriptor 2 goes to a temporary file;
afterwards every line that is not known start-up noise is written back to the
real stderr, so real warnings and errors still reach the user.  Installing
the hook imports nothing heavy: TensorFlow is still loaded only when used.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

#: Lines TensorFlow's native libraries print at import that tell a user nothing they can act on.
NOISE = re.compile(
    rb"oneDNN custom operations are on"
    rb"|All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|Unable to register cu(DNN|FFT|BLAS) factory"
    rb"|computation placer already registered"
    rb"|Could not find cuda drivers on your machine"
)
_WATCHED = ("tensorflow", "keras")
_lock = threading.RLock()
_depth = 0


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send descriptor 2 to a temporary file for the block, then replay it without :data:`NOISE`."""
    global _depth
    with _lock:
        _depth += 1
        if _depth > 1:              # keras importing tensorflow: the outer filter already holds fd 2
            try:
                yield
            finally:
                _depth -= 1
            return
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                _depth -= 1
                capture.seek(0)
                kept = [line for line in capture.read().splitlines(keepends=True) if not NOISE.search(line)]
                if kept:
                    os.write(2, b"".join(kept))


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):  # noqa: ANN001 - the importlib protocol
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        with filtered_stderr():
            self.inner.exec_module(module)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # noqa: ANN001
        if name not in _WATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Filter the C++ start-up lines of the first ``import tensorflow`` / ``import keras`` (idempotent)."""
    # 3, not 2: TF 2.21 logs spurious E-level lines at run time too (a tf.data "NodeDef mentions attribute
    # use_unbounded_threadpool" on every extraction); set TF_CPP_MIN_LOG_LEVEL yourself to see them
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
