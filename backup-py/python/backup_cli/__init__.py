"""backup-cli from Python: the start-up trigger and the commands, in-process.

Every function runs the same code as the ``backup-cli`` binary (a Rust
extension module, with the GIL released while it works) and returns what
``backup-cli --json`` prints, parsed::

    import backup_cli

    handle = backup_cli.trigger_startup_backup("insightminer.toml")  # returns at once
    ...                                   # serve requests
    report = handle.join()                # {"outcome": "created", ...}

Errors: :class:`ProfileError` for what the binary refuses with exit code 2
(a bad profile, bad arguments), with the key at fault; :class:`BackupError`
for a run that failed (exit code 1), with its report.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from . import _native

__all__ = [
    "BackupCliError",
    "BackupError",
    "BackupHandle",
    "ProfileError",
    "backup",
    "list_snapshots",
    "restore",
    "trigger_startup_backup",
    "verify",
]

__version__: str = _native.__version__

PathLike = Union[str, "os.PathLike[str]"]


class BackupCliError(Exception):
    """Anything backup-cli reports as an error."""


class ProfileError(BackupCliError):
    """The profile (or an argument) is not usable: the binary's exit code 2.

    ``key`` is the profile key at fault (``"destination"``, ``"max_backups"``)
    when one is, ``path`` the profile file.
    """

    def __init__(self, message: str, key: Optional[str] = None, path: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.key = key
        self.path = path


class BackupError(BackupCliError):
    """A run failed (the binary's exit code 1); ``report`` is its JSON report
    (``{"outcome": "failed", "error": ...}``) when it printed one."""

    def __init__(self, message: str, report: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.message = message
        self.report = report


def _run(profile: PathLike, args: Sequence[str]) -> Any:
    """Runs ``backup-cli --profile PROFILE --quiet ARGS --json``; the parsed
    JSON, or raises as the exit code says."""
    profile = os.fspath(profile)
    argv = ["backup-cli", "--profile", profile, "--quiet", *args, "--json"]
    code, text, error = _native.run_json(argv)
    if code == 2:
        # The key at fault, for a backup (whose checks profile_problem makes);
        # another command's refusal (a restore target) is its own message.
        problem = _native.profile_problem(profile) if args[0] == "backup" else None
        if problem is not None and (error is None or problem[0] == error):
            message, key, path = problem
            raise ProfileError(message, key, path)
        raise ProfileError(error or "backup-cli refused the arguments", None, profile)
    if text is None:
        raise BackupError(error or f"backup-cli exited with {code}")
    return json.loads(text)


def backup(profile: PathLike, force: bool = False, dry_run: bool = False) -> Dict[str, Any]:
    """Backs the profile's source up now (``backup-cli backup``) and returns
    the report. ``force`` ignores the once-per-day rule; ``dry_run`` writes
    nothing and reports the plan. A run that finds the lock held returns
    ``outcome == "skipped_locked"``; some unreadable files are listed in
    ``report["failed"]`` (exit code 3), not raised. Raises
    :class:`BackupError` when the run failed (it was rolled back)."""
    args = ["backup"]
    if force:
        args.append("--force")
    if dry_run:
        args.append("--dry-run")
    report = _run(profile, args)
    if report.get("outcome") == "failed":
        raise BackupError(report.get("error") or "the backup failed", report)
    return report


def list_snapshots(profile: PathLike) -> List[Dict[str, Any]]:
    """The profile's snapshots, oldest first (``backup-cli list``)."""
    return _run(profile, ["list"])


def restore(
    profile: PathLike,
    snapshot: str = "latest",
    *,
    to: PathLike,
    paths: Optional[Sequence[str]] = None,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Restores a snapshot (``"latest"``, a name or a date) into the folder
    ``to`` (new or empty unless ``overwrite``); ``paths`` restores only those
    files or folders. Every file is checked against its SHA-256 as it is
    written. Raises :class:`BackupError`, with the report, when a file did
    not restore intact."""
    args = ["restore", snapshot, "--to", os.fspath(to)]
    for p in paths or ():
        args += ["--path", p]
    if overwrite:
        args.append("--overwrite")
    report = _run(profile, args)
    if report.get("mismatches") or report.get("errors"):
        raise BackupError(f"the restore of {report.get('snapshot')} was not clean", report)
    return report


def verify(
    profile: PathLike,
    snapshot: Optional[str] = None,
    *,
    all: bool = False,
    quick: bool = False,
) -> Dict[str, Any]:
    """Checks a snapshot (the latest by default; every one with ``all``)
    against its manifest: the report lists ``corrupt``, ``missing`` and
    ``unexpected`` paths (empty lists when all is well). ``quick`` compares
    sizes only."""
    args = ["verify"]
    if snapshot is not None:
        args.append(snapshot)
    if all:
        args.append("--all")
    if quick:
        args.append("--quick")
    return _run(profile, args)


class BackupHandle:
    """A backup started by :func:`trigger_startup_backup`, running on a
    thread of this process."""

    def __init__(self, native: "_native.StartupHandle"):
        self._native = native

    def done(self) -> bool:
        """Whether the backup has ended."""
        return self._native.done()

    def join(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """Waits for the backup (at most ``timeout`` seconds) and returns its
        report, the same as ``backup-cli --json`` prints; ``None`` when it is
        still running after ``timeout``. Never raises: a failed run is
        ``{"outcome": "failed", "error": ...}``."""
        text = self._native.wait(timeout)
        if text is None:
            return None
        return json.loads(text)


def trigger_startup_backup(profile: PathLike = "insightminer.toml") -> BackupHandle:
    """Starts a backup of the profile on a background thread and returns at
    once, as the original Flask app did at start-up. The profile's
    once-per-day rule and run lock apply, so every worker of a multi-process
    server may call it: one runs, the others report ``skipped_locked`` (or
    ``skipped_not_due``). The operations log records the run.

    Raises :class:`ProfileError` at once, naming the key, when the profile
    is not usable; the server may catch it and start anyway."""
    profile = os.fspath(profile)
    problem = _native.profile_problem(profile)
    if problem is not None:
        message, key, path = problem
        raise ProfileError(message, key, path)
    return BackupHandle(_native.start(profile))
