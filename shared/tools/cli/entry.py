"""The `creatorflow` console script: Ctrl-C while the commands are still being loaded (a few
seconds on a busy machine) ends quietly, as it does once a command runs."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from shared.tools.cli.main import main as run
    except KeyboardInterrupt:
        sys.exit(130)  # 128 + SIGINT, as shells report it
    run()
