"""The README's walkthrough, run against a live demo: the docs cannot rot.

Every `console` block's `$ ` lines are run with bash, in order, against `ledger serve --demo`
with BASE, S, TOKEN and LEDGER_DB set as the README tells the reader to set them; what a
command prints must match the lines under it (as JSON where it is JSON, with `"..."`
matching any value; as text otherwise, with `...` in a line matching any text there).
`UPDATE_README=1` rewrites the shown output from a real run instead of comparing, masking
the values that change on every run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.browser import running_server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
VOLATILE = {"recorded_at", "hash", "root", "leaf_hash", "data_sha256"}
ANY = "..."


@dataclass
class Command:
    line: int  # 0-based index of the `$ ` line in the README
    text: str
    expected: list[str] = field(default_factory=list)


def commands(lines: list[str]) -> list[Command]:
    found: list[Command] = []
    inside = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            inside = line.strip() == "```console"
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            found.append(Command(number, line[2:]))
        elif found:
            found[-1].expected.append(line)
    return found


def matches(expected: Any, actual: Any) -> bool:
    if expected == ANY:
        return True
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            matches(expected[k], actual[k]) for k in expected
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(
            matches(e, a) for e, a in zip(expected, actual, strict=True)
        )
    return bool(expected == actual)


def mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ANY if k in VOLATILE else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def text_matches(expected: str, actual: str) -> bool:
    """Line by line; `...` in an expected line stands for any text."""
    want, got = expected.splitlines(), actual.splitlines()
    return len(want) == len(got) and all(
        re.fullmatch(".*".join(re.escape(part) for part in w.split(ANY)), g) is not None
        for w, g in zip(want, got, strict=True)
    )


def parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def shown(command: str, output: str) -> list[str]:
    value = parse(output)
    if value is None:
        return output.rstrip("\n").splitlines()
    if "json.tool" in command:
        return json.dumps(mask(value), indent=4).splitlines()
    return [json.dumps(mask(value), separators=(",", ":"))]


def test_readme_walkthrough(tmp_path: Path) -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    found = commands(lines)
    assert len(found) >= 10, "the walkthrough lost its examples"
    update = os.environ.get("UPDATE_README") == "1"
    outputs: dict[int, list[str]] = {}
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")  # the README's paths are the repo's
    (tmp_path / ".demo").mkdir()  # as `make demo` leaves it
    with running_server(tmp_path) as server:
        env = {
            **os.environ,
            "BASE": server.base,
            "S": "north-korea.russia-deployment",
            "TOKEN": server.token,
            "LEDGER_DB": str(tmp_path / "l.db"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for command in found:
            run = subprocess.run(
                ["bash", "-c", command.text],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, f"README line {command.line + 1}: {run.stderr}"
            if update:
                outputs[command.line] = shown(command.text, run.stdout)
                continue
            want_text = "\n".join(command.expected).strip()
            want = parse(want_text)
            if want is not None:
                got = parse(run.stdout)
                assert matches(want, got), (
                    f"README line {command.line + 1}: `{command.text}` printed\n{run.stdout}"
                )
            else:
                assert text_matches(want_text, run.stdout.strip()), (
                    f"README line {command.line + 1}: `{command.text}` printed\n{run.stdout}"
                )
    if update:
        rewritten: list[str] = []
        skip = {n for c in found for n in range(c.line + 1, c.line + 1 + len(c.expected))}
        for number, line in enumerate(lines):
            if number in skip:
                continue
            rewritten.append(line)
            rewritten.extend(outputs.get(number, []))
        README.write_text("\n".join(rewritten) + "\n", encoding="utf-8")
