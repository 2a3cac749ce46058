"""Entry point of a process-pool child: ``python -m conveyor.child_process module:app PID``.

It loads the app and serves attempts with `conveyor.worker.child.main`; the
loading lives here, above the worker, so that nothing in `conveyor.worker`
imports the app.
"""

from __future__ import annotations

import sys

from conveyor.app import load_app
from conveyor.worker.child import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], load_app))
