"""``python -m tlreport``: the CLI."""

from tlreport.cli import main

raise SystemExit(main())
