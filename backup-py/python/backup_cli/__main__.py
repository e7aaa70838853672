"""``python -m backup_cli``: the same as the ``backup-cli`` command."""

from ._cli import main

main()
