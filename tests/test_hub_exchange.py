"""`make collect FROM=exchange` (grading/coursegrader/exchange.py) on a hand-made nbgrader exchange.

The real exchange, filled by students through JupyterLab, is exercised by `make test-hub`; here
every rule is checked on its own: latest submission kept, timestamps kept, ownership enforced,
symlinks never followed, backdated submissions caught, nothing half-written, a clear error.
"""

import datetime as dt
import os
import pwd
import shutil

import pytest

from course import ROOT
from coursegrader import exchange
from coursegrader.collect import collect, report
from coursegrader.settings import Course

AID = "hw1_matrix_gradients"
ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def course(tmp_path, monkeypatch):
    root = tmp_path / "course"
    (root / "grading").mkdir(parents=True)
    (root / "solutions").symlink_to(ROOT / "solutions", target_is_directory=True)
    (root / "course.toml").write_text('[course]\nid = "c1"\n[hub]\nexchange = "/nonexistent"\n')
    monkeypatch.setenv("EXCHANGE", str(tmp_path / "exchange"))
    (tmp_path / "exchange" / "c1" / "inbound").mkdir(parents=True)
    return Course.at(root)


def submit(course, student, when: dt.datetime, text="{}", extra=None):
    """What `nbgrader submit` leaves in the inbound folder."""
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    folder = exchange.exchange_root(course)[0] / "c1" / "inbound" / f"{student}+{AID}+{stamp}+abcdef123456"
    folder.mkdir()
    (folder / f"{AID}.ipynb").write_text(text)
    (folder / "timestamp.txt").write_text(stamp)
    (folder / "submission_secret.txt").write_text("s3cret")
    for name, target in (extra or {}).items():
        os.symlink(target, folder / name)
    return folder


def now():
    return dt.datetime.now(dt.UTC)


def test_latest_submission_is_collected_with_its_time_and_secret(course):
    t = now()
    submit(course, ME, t - dt.timedelta(minutes=1), '{"v": 1}')
    submit(course, ME, t, '{"v": 2}')
    items = collect(course, "exchange")
    status = sorted(i.status for i in items)
    assert status == ["collected", "duplicate"], report(items)
    got = course.submitted / ME / AID
    assert (got / f"{AID}.ipynb").read_text() == '{"v": 2}'
    assert (got / "timestamp.txt").read_text() == t.strftime("%Y-%m-%d %H:%M:%S.%f UTC") + "\n"
    assert (got / "submission_secret.txt").read_text() == "s3cret"  # release_feedback needs it
    assert (course.reports / "collect.csv").exists()
    # again: nothing changes
    assert sorted(i.status for i in collect(course, "exchange")) == ["duplicate", "unchanged"]
    # a newer submission replaces the whole folder
    submit(course, ME, t + dt.timedelta(seconds=5), '{"v": 3}')
    items = collect(course, "exchange")
    assert [i.reason for i in items if i.status == "collected"][0].endswith("(replaced)")
    assert (got / f"{AID}.ipynb").read_text() == '{"v": 3}'
    assert not [p for p in got.parent.iterdir() if p.name.startswith(".")], "no temp folder left"


def test_a_submission_in_someone_elses_name_is_refused(course):
    submit(course, "not-" + ME, now())
    items = collect(course, "exchange")
    assert [i.status for i in items] == ["bad"]
    assert "belongs to" in items[0].reason and not course.submitted.exists()


def test_symlinks_are_never_followed(course, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root only")
    submit(course, ME, now(), extra={"stolen.txt": secret, "other.ipynb": secret})
    items = collect(course, "exchange")
    assert [i.status for i in items] == ["collected"]
    got = course.submitted / ME / AID
    assert not (got / "stolen.txt").exists() and not (got / "other.ipynb").exists()
    assert any("stolen.txt (not a regular file)" in n for n in items[0].notes)


def test_a_backdated_submission_counts_from_when_it_was_made(course):
    claimed = now() - dt.timedelta(days=2)
    submit(course, ME, claimed)
    items = collect(course, "exchange")
    assert any("was changed at" in n for n in items[0].notes), items[0].notes
    stamp = (course.submitted / ME / AID / "timestamp.txt").read_text()
    assert not stamp.startswith(claimed.strftime("%Y-%m-%d %H:%M"))


def test_unknown_assignment_and_garbage_are_reported(course):
    inbound = exchange.exchange_root(course)[0] / "c1" / "inbound"
    (inbound / f"{ME}+hw99+2026-01-01 00:00:00.000000 UTC+x").mkdir()
    (inbound / "garbage").mkdir()
    (inbound / "file.txt").write_text("x")
    items = collect(course, "exchange")
    reasons = sorted(i.reason for i in items)
    assert [i.status for i in items] == ["bad"] * 3
    assert any("unknown assignment 'hw99'" in r for r in reasons)
    assert any("not named" in r for r in reasons) and any("not a submission folder" in r for r in reasons)


def test_missing_exchange_is_a_clear_error(course, tmp_path, monkeypatch):
    shutil.rmtree(tmp_path / "exchange")
    with pytest.raises(FileNotFoundError, match="inbound"):
        collect(course, "exchange")
