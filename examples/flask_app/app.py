"""A Flask app that backs its project up when it starts, as the original
InsightMiner app did, with the backup-cli Python package:

    pip install backup-cli flask
    BACKUP_PROFILE=insightminer.toml flask --app app:create_app run

The app factory starts the backup on a background thread and returns at
once: the server answers while the backup runs. Once-per-day and the run
lock live in backup-cli, so every worker of a multi-process server (gunicorn
-w 4 'app:create_app()', without --preload; waitress) may trigger it: one backs up, the others
report ``skipped_locked`` (or ``skipped_not_due``).

A bad profile raises ``backup_cli.ProfileError`` (naming the key) in
create_app; this app logs it and serves anyway, unless BACKUP_STRICT=1 makes
it refuse to start.
"""

import os

from flask import Flask, jsonify

import backup_cli


def create_app(profile=None):
    app = Flask(__name__)
    profile = profile or os.environ.get("BACKUP_PROFILE", "insightminer.toml")
    try:
        handle = backup_cli.trigger_startup_backup(profile)
        problem = None
    except backup_cli.ProfileError as e:
        if os.environ.get("BACKUP_STRICT") == "1":
            raise
        app.logger.error("start-up backup not started: %s", e)
        handle, problem = None, {"error": e.message, "key": e.key, "path": e.path}
    app.extensions["backup"] = handle

    @app.get("/")
    def index():
        return "InsightMiner is up\n"

    @app.get("/backup")
    def backup_status():
        """The start-up backup: running, its report, or why it did not start."""
        if handle is None:
            return jsonify({"state": "not_started", **problem})
        report = handle.join(timeout=0) if handle.done() else None
        if report is None:
            return jsonify({"state": "running", "pid": os.getpid()})
        return jsonify({"state": "done", "pid": os.getpid(), "report": report})

    return app
