"""``python -m bench [SCENARIO] [--quick]``: the same as ``kefu bench``."""

from __future__ import annotations

import sys

from kefu.bench_cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
