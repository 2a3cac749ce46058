"""The process pool child's entry point: ``python -m conveyor.worker.child_main APP PID``.

A module of its own, which nothing imports, so that running it with ``-m`` does
not re-execute `conveyor.worker.child` (already imported by `conveyor.worker`)
and Python's runpy does not warn on every child start.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from conveyor.worker.child import main

    raise SystemExit(main(sys.argv[1:]))
