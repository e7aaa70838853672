"""The ``backup-cli`` command of the Python package: the binary's own
command line, run in this process (same options, exit codes and JSON)."""

import sys

from . import _native


def main() -> None:
    """Entry point of the ``backup-cli`` script."""
    sys.exit(_native.main(["backup-cli", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
