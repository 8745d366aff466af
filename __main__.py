"""Allows `python -m dasc` (and `torchrun -m dasc`) to behave like the `dasc` script."""

from dasc.cli.main import main

raise SystemExit(main())
