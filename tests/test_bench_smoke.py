"""The benchmark suite runs end to end at tiny sizes: a check that it works, not figures.

No timing is asserted; every scenario must finish, report a figure and leave a results
file, and the HTTP run must see only 201s.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.__main__ import run


def test_every_scenario_runs_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    results = run(
        [
            "--quick",
            "--n",
            "300",
            "--small",
            "120",
            "--peer-events",
            "64",
            "--seconds",
            "0.5",
            "--load",
            "python",
            "--work",
            str(tmp_path),
            "--out",
            str(out),
        ]
    )
    targets = {r.target for r in results}
    assert targets == {"1", "2", "3", "4", "5", "6", "7"}
    for result in results:
        assert math.isfinite(result.value)
        if result.ok is not None:  # a skipped peer reports no verdict
            assert result.value > 0, result
    http = next(r for r in results if r.target == "1" and r.baseline is not None)
    assert not any("not 201" in note for note in http.notes), http.notes
    views = [r for r in results if r.target == "4"]
    deep = next(r for r in views if "same history per property" in r.name)
    assert deep.baseline_name.endswith("over 400 subjects"), deep  # 1,000 x 120 / 300
    assert "assertions per (subject, property)" in deep.notes[0]
    audit = next(r for r in results if "audit" in r.name)
    assert not audit.notes, audit.notes  # the audit of the imported ledger passed
    saved = json.loads(out.read_text())
    assert len(saved["results"]) == len(results)
    assert saved["machine"]["cores"]
