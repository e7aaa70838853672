"""The package's functions: the same reports as ``backup-cli --json``, and
errors as exceptions."""

import json
import shutil
import subprocess
import sys
import sysconfig
import threading
import time

import pytest

import backup_cli


def test_backup_list_verify_restore_round_trip(project, tmp_path):
    project.write("app.py", "print('hi')\n")
    project.write("data/rows.csv", "a,b\n1,2\n")
    report = backup_cli.backup(project.profile, force=True)
    assert report["outcome"] == "created"
    assert report["files_total"] == 2 and report["files_copied"] == 2
    listed = backup_cli.list_snapshots(project.profile)
    assert [s["name"] for s in listed] == [report["snapshot"]]
    assert listed[0]["status"] == "complete"
    checked = backup_cli.verify(project.profile)
    assert (checked["corrupt"], checked["missing"], checked["unexpected"]) == ([], [], [])
    out = tmp_path / "restored"
    restored = backup_cli.restore(project.profile, to=out)
    assert restored["files_restored"] == 2
    assert (out / "data/rows.csv").read_text() == "a,b\n1,2\n"
    one = backup_cli.restore(project.profile, report["snapshot"], to=tmp_path / "one", paths=["app.py"])
    assert one["files_restored"] == 1 and not (tmp_path / "one/data").exists()


def test_dry_run_writes_nothing_and_once_per_day_skips(project):
    project.write("a.txt", "a")
    plan = backup_cli.backup(project.profile, dry_run=True)
    assert plan["outcome"] == "dry_run" and project.snapshots() == []
    assert backup_cli.backup(project.profile)["outcome"] == "created"
    assert backup_cli.backup(project.profile)["outcome"] == "skipped_not_due"


def test_a_bad_profile_is_a_profile_error_naming_the_key(project):
    project.write("a.txt", "a")
    project.write_profile("max_backups = 0\n")
    with pytest.raises(backup_cli.ProfileError) as err:
        backup_cli.backup(project.profile)
    assert err.value.key == "max_backups"
    assert err.value.path == str(project.profile)
    assert "max_backups" in str(err.value)
    with pytest.raises(backup_cli.ProfileError) as err:
        backup_cli.trigger_startup_backup(project.profile)
    assert err.value.key == "max_backups"
    with pytest.raises(backup_cli.ProfileError) as err:
        backup_cli.trigger_startup_backup(project.root / "no-such-profile.toml")
    with pytest.raises(backup_cli.ProfileError) as err:
        backup_cli.list_snapshots(project.root / "missing.toml")
    assert "missing.toml" in str(err.value) and err.value.key is None


def test_a_missing_source_is_a_profile_error_naming_source(project):
    project.src.rmdir()
    with pytest.raises(backup_cli.ProfileError) as err:
        backup_cli.trigger_startup_backup(project.profile)
    assert err.value.key == "source"


def test_a_failed_run_is_a_backup_error_with_its_report(project):
    project.write("a.txt", "a")
    (project.root / "blocker").write_text("a file where a folder should be")
    project.profile.write_text('name = "Proj"\nsource = "src"\ndestination = "blocker/dest"\n')
    with pytest.raises(backup_cli.BackupError) as err:
        backup_cli.backup(project.profile, force=True)
    assert err.value.report["outcome"] == "failed"
    assert "blocker" in err.value.message


def test_a_restore_into_a_folder_with_content_is_refused(project, tmp_path):
    project.write("a.txt", "a")
    backup_cli.backup(project.profile)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    with pytest.raises(backup_cli.ProfileError) as err:
        backup_cli.restore(project.profile, to=busy)
    assert "not empty" in str(err.value)
    assert (busy / "mine.txt").read_text() == "keep"


def test_the_trigger_returns_at_once_and_join_gives_the_report(project):
    project.many_files(3000)
    t0 = time.monotonic()
    handle = backup_cli.trigger_startup_backup(project.profile)
    assert time.monotonic() - t0 < 0.2, "the trigger did not return at once"
    assert not handle.done() and handle.join(timeout=0) is None, "3,000 files took no time?"
    report = handle.join()
    assert handle.done()
    assert report["outcome"] == "created" and report["files_total"] == 3000
    # Joining again gives the same report; the next start-up is skipped.
    assert handle.join()["snapshot"] == report["snapshot"]
    assert backup_cli.trigger_startup_backup(project.profile).join()["outcome"] == "skipped_not_due"


def test_two_triggers_at_once_make_one_snapshot_the_other_skips_locked(project):
    project.many_files(5000)
    first = backup_cli.trigger_startup_backup(project.profile)
    second = backup_cli.trigger_startup_backup(project.profile)
    outcomes = sorted([first.join()["outcome"], second.join()["outcome"]])
    assert outcomes == ["created", "skipped_locked"], outcomes
    assert len(project.snapshots()) == 1


def test_the_gil_is_released_while_a_backup_runs(project):
    project.many_files(5000)
    handle = backup_cli.trigger_startup_backup(project.profile)
    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=count)
    t.start()
    time.sleep(0.05)
    before = ticks
    report = handle.join()
    during = ticks - before
    stop.set()
    t.join()
    assert report["outcome"] == "created"
    assert during > 1000, "Python threads did not run while join() waited"


def test_the_backup_cli_script_is_the_cli(project):
    project.write("a.txt", "a")
    scripts = sysconfig.get_path("scripts")
    exe = shutil.which("backup-cli", path=scripts)
    assert exe is not None, f"no backup-cli script in {scripts}"
    run = subprocess.run(
        [exe, "--profile", str(project.profile), "backup", "--json"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["outcome"] == "created"
    project.write_profile("max_backups = 0\n")
    run = subprocess.run([exe, "--profile", str(project.profile), "list"], capture_output=True, text=True)
    assert run.returncode == 2 and "max_backups" in run.stderr
    run = subprocess.run([sys.executable, "-m", "backup_cli", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("backup-cli ")


def test_done_answers_at_once_while_another_thread_joins(project):
    project.many_files(5000)
    handle = backup_cli.trigger_startup_backup(project.profile)
    joined = []
    waiter = threading.Thread(target=lambda: joined.append(handle.join()))
    waiter.start()
    slowest = 0.0
    while not handle.done():
        t0 = time.monotonic()
        handle.done()
        slowest = max(slowest, time.monotonic() - t0)
        assert handle.join(timeout=0.01) is None or handle.done()
    waiter.join()
    assert joined[0]["outcome"] == "created"
    assert handle.join(timeout=0)["snapshot"] == joined[0]["snapshot"]
    assert slowest < 0.05, f"done() took {slowest * 1000:.0f} ms while a join waited"
