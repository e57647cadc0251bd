"""`python -m harness.cli`: the storlab command."""

from harness.cli.main import main

raise SystemExit(main())
