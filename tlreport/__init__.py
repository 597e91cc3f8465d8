"""tlreport: a reproducible transfer-learning report, built as a Jekyll post."""

from tlreport.util.quiet_tf import install as _quiet_tensorflow

__version__ = "0.1.0"

# Before anything can import TensorFlow: its C++ start-up lines never reach a user's terminal.
_quiet_tensorflow()
