"""The Flask example (``examples/flask_app``) as its users run it: a real
server process started by the test, a 20,000-file project, several servers
or workers at once."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request

import pytest

APP = pathlib.Path(__file__).resolve().parents[2] / "examples" / "flask_app"


def get(addr, path, timeout=10.0):
    with urllib.request.urlopen(f"http://{addr}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


class Server:
    """``python serve.py PROFILE`` in the example's folder."""

    def __init__(self, profile, env=None):
        self.proc = subprocess.Popen(
            [sys.executable, "serve.py", str(profile)],
            cwd=APP,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )

    def wait_listening(self):
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"no 'listening' line: {line!r}; stderr: {self.proc.stderr.read()}")
        self.addr = m.group(1)
        return self.addr

    def backup_status(self):
        return json.loads(get(self.addr, "/backup")[1])

    def wait_backup(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.backup_status()
            if s["state"] != "running":
                return s
            time.sleep(0.05)
        raise AssertionError("the start-up backup did not end")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def servers():
    started = []
    yield lambda *a, **k: started.append(Server(*a, **k)) or started[-1]
    for s in started:
        s.stop()


def test_the_first_request_is_answered_within_200ms_while_a_20000_file_backup_runs(project, servers):
    project.many_files(20_000)
    server = servers(project.profile)
    addr = server.wait_listening()
    t0 = time.monotonic()
    status, body = get(addr, "/")
    first = time.monotonic() - t0
    assert status == 200 and "InsightMiner is up" in body
    assert server.backup_status()["state"] == "running", "the backup ended before the first request"
    print(f"first request answered in {first * 1000:.1f} ms while the backup ran")
    assert first < 0.200, f"the first request took {first * 1000:.0f} ms"
    done = server.wait_backup()
    assert done["report"]["outcome"] == "created"
    assert done["report"]["files_total"] == 20_000
    assert len(project.snapshots()) == 1


def test_two_servers_started_together_make_one_snapshot(project, servers):
    project.many_files(20_000)
    a, b = servers(project.profile), servers(project.profile)
    a.wait_listening()
    b.wait_listening()
    outcomes = sorted(s.wait_backup()["report"]["outcome"] for s in (a, b))
    assert outcomes == ["created", "skipped_locked"], outcomes
    assert len(project.snapshots()) == 1


def test_a_bad_profile_names_the_key_and_the_server_still_starts(project, servers):
    project.write("a.txt", "a")
    project.write_profile("max_backups = 0\n")
    server = servers(project.profile)
    server.wait_listening()
    assert get(server.addr, "/")[0] == 200
    s = server.backup_status()
    assert s["state"] == "not_started" and s["key"] == "max_backups", s
    assert project.snapshots() == []


def test_a_strict_app_refuses_to_start_on_a_bad_profile(project):
    project.write("a.txt", "a")
    project.write_profile("max_backups = 0\n")
    run = subprocess.run(
        [sys.executable, "serve.py", str(project.profile)],
        cwd=APP,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BACKUP_STRICT": "1"},
    )
    assert run.returncode != 0
    assert "ProfileError" in run.stderr and "max_backups" in run.stderr


def test_gunicorn_workers_each_trigger_and_one_backs_up(project):
    gunicorn = shutil.which("gunicorn", path=sysconfig.get_path("scripts"))
    if gunicorn is None:
        pytest.fail("gunicorn is not installed: pip install 'backup-cli[test]'")
    project.many_files(20_000)
    log = project.src / "backup_operations.log"
    proc = subprocess.Popen(
        [gunicorn, "-w", "3", "-b", "127.0.0.1:0", "app:create_app()"],
        cwd=APP,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BACKUP_PROFILE": str(project.profile)},
    )
    try:
        addr = None
        deadline = time.monotonic() + 60
        while addr is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            m = re.search(r"Listening at: http://(\S+)", line)
            addr = m and m.group(1)
        assert addr, "gunicorn did not say where it listens"
        # Every worker triggers: one backs up, the two others skip (the lock).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if text.count("holds the lock; skipping") == 2 and project.snapshots():
                break
            time.sleep(0.1)
        assert get(addr, "/")[0] == 200
        assert len(project.snapshots()) == 1
        text = log.read_text()
        assert text.count("holds the lock; skipping") == 2, text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
