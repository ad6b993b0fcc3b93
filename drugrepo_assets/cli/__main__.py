"""``python -m drugrepo_assets.cli``: the ``drugrepo`` command (the benchmarks start it this way)."""

from drugrepo_assets.cli import main

raise SystemExit(main())
