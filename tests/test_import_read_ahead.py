"""`ledger import` with its lines decoded by a reader process: the same log as decoding
them on the importing thread, the same stops at a bad line, and a reader that dies or is
sent Ctrl-C never costs a line or appends one twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api import cli, importer
from api.importer import ImportResult, import_file
from ledger.replay import audit_projections
from ledger.sqlite_store import SqliteStore, connect
from projections import all_projectors
from tests.store_contract import read_all

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "seed.jsonl"


def _seed_with_ids(tmp_path: Path) -> Path:
    """The seed file with an id on every assertion, so two imports of it append the same
    events (a server-made id is new each time)."""
    lines = []
    for number, raw in enumerate(SEED.read_bytes().splitlines(), 1):
        record = json.loads(raw)
        if record["record"] == "assertion":
            record.setdefault("assertion_id", f"seed-line-{number}")
        lines.append(json.dumps(record))
    path = tmp_path / "seed-ids.jsonl"
    path.write_text("\n\n".join(lines[:3]) + "\n" + "\n".join(lines[3:]) + "\n")  # blank lines too
    return path


def _import(
    db: Path, source: Path, *, ahead: bool, **kw: Any
) -> tuple[ImportResult, list[tuple[str, str, int, Any]]]:
    store = SqliteStore(db, all_projectors())
    try:
        result = import_file(store, source, "test", read_ahead=ahead, chunk_size=4, **kw)
        events = [(e.type, e.stream, e.version, e.data) for e in read_all(store)]
    finally:
        store.close()
    return result, events


def _outcome(result: ImportResult) -> tuple[Any, ...]:
    error = None if result.error is None else result.error.describe()
    return (result.lines, result.appended, result.done_lines, error, result.read_failure)


def test_a_reader_process_appends_what_the_importing_thread_would(tmp_path: Path) -> None:
    source = _seed_with_ids(tmp_path)
    here, here_events = _import(tmp_path / "here.db", source, ahead=False)
    ahead, ahead_events = _import(tmp_path / "ahead.db", source, ahead=True)
    assert here.error is None
    assert here.appended == len(here_events) > 20
    assert _outcome(ahead) == _outcome(here)
    assert ahead_events == here_events
    conn = connect(tmp_path / "ahead.db")
    try:
        assert audit_projections(conn, all_projectors) == []
    finally:
        conn.close()


def test_a_reader_process_starts_at_the_line_asked(tmp_path: Path) -> None:
    source = _seed_with_ids(tmp_path)
    runs = [
        _import(tmp_path / f"{ahead}.db", source, ahead=ahead, from_line=9)
        for ahead in (False, True)
    ]
    (here, here_events), (ahead, ahead_events) = runs
    assert _outcome(ahead) == _outcome(here)
    assert ahead_events == here_events
    assert 0 < ahead.appended < 20


@pytest.mark.parametrize(
    "bad",
    [
        b'{"record":"assertion","subject":"x"',  # not JSON
        # well-formed but wrong: its unknown claimant is named once the lines before are in
        b'{"record":"assertion","subject":"s","property":"p","value":{"low":1,"high":2},'
        b'"claimants":["nobody-at-all"],"stated_at":"2025","document":{"publisher":"p"},'
        b'"quote":"","credibility":9}',
        # refused by the rules, on the writer, in the middle of a chunk
        b'{"record":"retraction","assertion_id":"no-such-assertion","reason":"x"}',
    ],
)
def test_a_bad_line_stops_a_reader_process_where_it_stops_the_thread(
    tmp_path: Path, bad: bytes
) -> None:
    lines = _seed_with_ids(tmp_path).read_bytes().splitlines(keepends=True)
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"".join([*lines[:10], bad + b"\n", *lines[10:]]))
    here, here_events = _import(tmp_path / "here.db", source, ahead=False)
    ahead, ahead_events = _import(tmp_path / "ahead.db", source, ahead=True)
    assert here.error is not None
    assert here.error.line == 11
    assert _outcome(ahead) == _outcome(here)
    assert ahead_events == here_events
    if b"nobody-at-all" in bad:
        assert "nobody-at-all" in ahead.error.describe()  # type: ignore[union-attr]


def _dying_reader(frames: int) -> Any:
    """A reader command that passes on the real reader's first `frames` chunks, then dies
    saying why on stderr."""

    def command(path: Path, size: int, from_line: int) -> list[str]:
        real = [sys.executable, "-m", "api.importer", str(path), str(size), str(from_line)]
        script = (
            "import subprocess, sys\n"
            f"out = subprocess.run({real!r}, capture_output=True, check=True).stdout\n"
            "at = 0\n"
            f"for _ in range({frames}):\n"
            "    at += 4 + int.from_bytes(out[at:at + 4], 'big')\n"
            "sys.stdout.buffer.write(out[:at] + out[at:at + 2])\n"  # and a torn frame
            "sys.stderr.write('the disk went away\\n')\n"
            "sys.exit(3)\n"
        )
        return [sys.executable, "-c", script]

    return command


def test_a_reader_process_that_dies_keeps_what_it_read_and_says_where_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _seed_with_ids(tmp_path)
    monkeypatch.setattr(importer, "_reader_command", _dying_reader(2))
    db = tmp_path / "l.db"
    result, events = _import(db, source, ahead=True)
    assert result.read_failure is not None
    assert (
        result.read_failure == "its reader process stopped with exit status 3 (the disk went away)"
    )
    assert result.error is None
    assert not result.interrupted
    assert result.appended == len(events) == 8  # two chunks of four lines
    rest = source.read_bytes().splitlines(keepends=True)[result.done_lines :]
    (tmp_path / "rest.jsonl").write_bytes(b"".join(rest))
    monkeypatch.undo()
    again, events = _import(db, tmp_path / "rest.jsonl", ahead=True)
    _, whole = _import(tmp_path / "whole.db", source, ahead=False)
    assert (again.error, again.read_failure) == (None, None)
    assert events == whole  # nothing lost, nothing twice


def test_the_command_line_says_the_reader_died_and_where_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _seed_with_ids(tmp_path)
    monkeypatch.setattr(importer, "READ_AHEAD_BYTES", 0)  # the file is large enough
    monkeypatch.setattr(importer, "_reader_command", _dying_reader(0))
    db = tmp_path / "l.db"
    code = cli.main(["import", str(source), "--db", str(db), "--actor", "test"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(
        f"ledger import: stopped, {source} was not read to the end: its reader process "
        "stopped with exit status 3 (the disk went away); "
    )
    assert "no line was imported (0 events appended); nothing from line 1 on" in err
    assert err.rstrip().endswith("(`--from-line 1` imports the rest)")
    store = SqliteStore(db, all_projectors())
    try:
        assert store.size() == 0
    finally:
        store.close()


def test_small_files_are_read_on_the_importing_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Path] = []
    real = importer._reader_command

    def spy(path: Path, size: int, from_line: int) -> list[str]:
        started.append(path)
        return real(path, size, from_line)

    monkeypatch.setattr(importer, "_reader_command", spy)
    source = _seed_with_ids(tmp_path)
    for threshold, db in [(source.stat().st_size + 1, "small.db"), (0, "large.db")]:
        monkeypatch.setattr(importer, "READ_AHEAD_BYTES", threshold)
        store = SqliteStore(tmp_path / db, all_projectors())
        try:
            assert import_file(store, source, "test").error is None
        finally:
            store.close()
    assert started == [source]  # only for the file at the threshold


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_reader_process_leaves_ctrl_c_to_the_import(
    tmp_path: Path, sent: signal.Signals
) -> None:
    """A terminal's Ctrl-C, and a `timeout` or a service stop's SIGTERM, reach every
    process of the group: the reader goes on, and the import decides what stops (between
    chunks)."""
    lines = _seed_with_ids(tmp_path).read_bytes()
    source = tmp_path / "long.jsonl"
    source.write_bytes(lines * 200)  # more than a pipe holds: the reader waits to write
    proc = subprocess.Popen(
        importer._reader_command(source, 2, 1),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    first = proc.stdout.read(4)
    assert proc.poll() is None
    proc.send_signal(sent)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    frames = []
    data = first + rest
    while data:
        size = int.from_bytes(data[:4], "big")
        frames.append(importer._read_decoder.decode(data[4 : 4 + size]))
        data = data[4 + size :]
    assert frames[-1].last
    assert frames[-1].bad is None
    assert sum(len(f.lines) for f in frames) == 200 * sum(1 for x in lines.splitlines() if x)


def test_ctrl_c_stops_an_import_read_ahead_between_chunks(tmp_path: Path) -> None:
    source = _seed_with_ids(tmp_path)
    calls = 0

    def progress(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, to this process alone

    result, events = _import(tmp_path / "l.db", source, ahead=True, progress=progress)
    assert result.interrupted
    assert result.error is None
    assert 0 < result.done_lines < 29
    assert result.appended == len(events)
    rest = source.read_bytes().splitlines(keepends=True)[result.done_lines :]
    (tmp_path / "rest.jsonl").write_bytes(b"".join(rest))
    again, events = _import(tmp_path / "l.db", tmp_path / "rest.jsonl", ahead=True)
    _, whole = _import(tmp_path / "whole.db", source, ahead=False)
    assert (again.error, again.interrupted) == (None, False)
    assert events == whole


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n  \n", SEED.read_bytes().rstrip(b"\n"), b"\xef\xbb\xbf" + SEED.read_bytes()],
    ids=["empty", "blank lines only", "no newline at the end", "byte order mark"],
)
def test_odd_files_read_ahead_as_on_the_thread(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "odd.jsonl"
    source.write_bytes(content)
    here, here_events = _import(tmp_path / "here.db", source, ahead=False)
    ahead, ahead_events = _import(tmp_path / "ahead.db", source, ahead=True)
    assert here.problem() is None
    assert _outcome(ahead) == _outcome(here)
    assert ahead_events == here_events


def test_a_refused_line_is_what_is_reported_when_the_reader_then_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer refuses a line of the first chunk while the reader dies after it: the
    refused line is why the import stopped, and what it names."""
    lines = [
        x for x in _seed_with_ids(tmp_path).read_bytes().splitlines(keepends=True) if x.strip()
    ]
    bad = b'{"record":"retraction","assertion_id":"no-such-assertion","reason":"x"}\n'
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"".join([*lines[:2], bad, *lines[2:]]))
    monkeypatch.setattr(importer, "_reader_command", _dying_reader(1))
    result, events = _import(tmp_path / "l.db", source, ahead=True)
    assert result.read_failure is None
    assert result.error is not None
    assert result.error.line == 3
    assert result.done_lines == 2
    assert result.appended == len(events) == 2


def test_a_reader_dead_before_the_line_asked_is_not_a_file_too_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _seed_with_ids(tmp_path)
    monkeypatch.setattr(importer, "READ_AHEAD_BYTES", 0)
    monkeypatch.setattr(importer, "_reader_command", _dying_reader(0))
    db = tmp_path / "l.db"
    args = ["import", str(source), "--db", str(db), "--actor", "test", "--from-line", "9"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "there is no line" not in err
    assert "was not read to the end" in err
    assert err.rstrip().endswith("(`--from-line 9` imports the rest)")


def test_a_reader_that_writes_something_else_stops_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def command(path: Path, size: int, from_line: int) -> list[str]:
        script = "import sys; sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x05hello')"
        return [sys.executable, "-c", script]

    monkeypatch.setattr(importer, "_reader_command", command)
    result, events = _import(tmp_path / "l.db", _seed_with_ids(tmp_path), ahead=True)
    assert result.read_failure == "its reader process wrote something other than chunks"
    assert (result.appended, result.done_lines, events) == (0, 0, [])


def test_without_a_python_to_start_the_lines_are_read_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "_reader_command", lambda *_: [str(tmp_path / "no-such-python")])
    source = _seed_with_ids(tmp_path)
    result, events = _import(tmp_path / "l.db", source, ahead=True)
    _, whole = _import(tmp_path / "whole.db", source, ahead=False)
    assert result.problem() is None
    assert events == whole


def _children() -> list[int]:
    """This process's children (Linux's /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_an_import_that_stops_early_leaves_no_reader_behind(tmp_path: Path) -> None:
    lines = _seed_with_ids(tmp_path).read_bytes()
    bad = b'{"record":"retraction","assertion_id":"no-such-assertion","reason":"x"}\n'
    source = tmp_path / "long.jsonl"
    source.write_bytes(lines + bad + lines * 300)  # the reader is still busy at the stop
    before = _children()
    result, _ = _import(tmp_path / "l.db", source, ahead=True)
    assert result.error is not None
    assert _children() == before
