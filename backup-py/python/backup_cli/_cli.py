"""The ``backup-cli`` command of the Python package: the binary's own
command line, run in this process (same options, exit codes and JSON)."""

import signal
import sys

from . import _native


def main() -> None:
    """Entry point of the ``backup-cli`` script."""
    # Ctrl+C stops the run at once, as it stops the binary (whose commit is
    # crash-safe): Python's own handler would wait for the run to return.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_native.main(["backup-cli", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
