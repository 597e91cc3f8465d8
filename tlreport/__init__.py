"""tlreport: a reproducible transfer-learning report, built as a Jekyll post."""

__version__ = "0.1.0"
