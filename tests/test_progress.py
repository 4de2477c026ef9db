"""The progress bars a long command draws on a terminal: counts, phases and rates that
say what happened, after an interrupt too."""

from __future__ import annotations

import io
import re
from pathlib import Path

from api.cli import _Phases, two_passes
from api.importer import import_file
from api.progress import Progress
from tests.factories import ledger

ROOT = Path(__file__).resolve().parent.parent


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(out: Terminal) -> list[str]:
    """What the terminal shows: each line as its last redraw left it."""
    return [part.split("\r")[-1] for part in out.getvalue().split("\n") if part]


def test_a_rate_counts_from_the_first_count_reported() -> None:
    out = Terminal()
    bar = Progress("folding the views", 2_000_000, out)
    bar(1_000_000)  # a phase that starts part-way through its count: no rate measured yet
    assert "/s)" not in lines(out)[-1]
    bar(2_000_000)
    rate = re.search(r"\(([\d,]+)/s\)", lines(out)[-1])
    assert rate is not None
    assert rate.group(1) != "0"
    quick = Terminal()
    small = Progress("importing f.jsonl", 500, quick, unit="bytes")
    small(500, 500)  # done at its first report: no "(0/s)"
    small.finish()
    assert lines(quick) == [
        "importing f.jsonl [##############################] 100.0% 500/500 bytes"
    ]


def test_an_import_stopped_part_way_shows_where_reading_stopped() -> None:
    out = Terminal()
    phases = _Phases(Progress("importing f.jsonl", 1000, out, unit="bytes"))
    phases.read(100, 1000)
    phases.read(400, 1000)  # within the 0.1 s throttle: not drawn yet
    phases.fold(0, 30)
    phases.fold(30, 30)
    phases.read(1000, 1000)  # the importer's last report, after the fold: not drawn
    phases.finish()
    shown = lines(out)
    assert len(shown) == 2
    assert "40.0% 400/1,000 bytes" in shown[0]
    assert shown[1].startswith("folding the views")
    assert "30/30 events" in shown[1]


def test_the_audit_shows_two_passes_of_the_events_each() -> None:
    out = Terminal()
    bar = Progress("auditing: verifying", 50, out)
    report = two_passes(bar)
    for done in range(0, 101, 10):  # the audit counts 2 x 50
        report(done, 100)
    bar.finish()
    shown = lines(out)
    assert len(shown) == 2
    assert shown[0].startswith("auditing: verifying")
    assert "50/50 events" in shown[0]
    assert shown[1].startswith("auditing: replaying")
    assert "50/50 events" in shown[1]


def test_an_import_never_counts_more_bytes_than_its_file(tmp_path: Path) -> None:
    """A last line without its newline was counted with one: 14,471/14,470 bytes."""
    seed = (ROOT / "fixtures" / "seed.jsonl").read_bytes()
    source = tmp_path / "no-final-newline.jsonl"
    source.write_bytes(seed.rstrip(b"\n"))
    reports: list[tuple[int, int]] = []
    with ledger(tmp_path / "l.db") as store:
        result = import_file(store, source, "test", lambda d, t: reports.append((d, t)))
    assert result.problem() is None
    size = source.stat().st_size
    assert reports[-1] == (size, size)
    assert all(done <= total for done, total in reports)
