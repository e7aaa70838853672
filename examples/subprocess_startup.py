#!/usr/bin/env python3
"""Back a project up when a Python web server starts, without blocking it,
with only the backup-cli binary (no Python package).

With the package (`pip install backup-cli`), the backup runs in the server's
own process instead: see examples/flask_app/. Here it is one detached process:
once-per-day and the run lock live in the tool, so calling this on every
start (and from several workers at once) is safe.

On Windows too: there the child is started with DETACHED_PROCESS (no console
window, none inherited) and CREATE_NEW_PROCESS_GROUP (a Ctrl+C in the server's
console does not reach it), the equivalent of a new session on Linux; pass
the path of backup-cli.exe, or put it on PATH.

In a Flask app:

    from subprocess_startup import trigger_startup_backup

    if __name__ == "__main__":
        trigger_startup_backup("insightminer.toml")
        app.run(port=8502)

Run this file itself for a stdlib-only demo server:

    python3 examples/subprocess_startup.py insightminer.toml [path/to/backup-cli]

It prints "listening on HOST:PORT" as soon as it serves; GET /shutdown stops it.
"""
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def trigger_startup_backup(profile, exe=None):
    """Start `backup-cli --profile PROFILE --quiet` detached and return at once."""
    exe = exe or os.environ.get("BACKUP_CLI", "backup-cli")
    kwargs = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True  # survives the server, no signals from its terminal
    else:
        kwargs["creationflags"] = subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP
    return subprocess.Popen(
        [exe, "--profile", profile, "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        **kwargs,
    )


def main():
    profile = sys.argv[1] if len(sys.argv) > 1 else "insightminer.toml"
    exe = sys.argv[2] if len(sys.argv) > 2 else None
    backup = trigger_startup_backup(profile, exe)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            running = backup.poll() is None
            body = f"backup_running={str(running).lower()}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            if self.path == "/shutdown":
                self.server.stop = True

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.stop = False
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    while not server.stop:
        server.handle_request()
    # Only for the demo: report how the backup ended.
    print(f"backup_exit={backup.wait()}", flush=True)


if __name__ == "__main__":
    main()
