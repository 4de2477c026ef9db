"""A synthetic import file: sources, then assertions over many subjects, with the lifecycle
events a real ledger carries (supersessions, retractions, ranks).

Deterministic for a given `(n, seed)`, so two runs import the same ledger. Each subject has
:data:`QUANTITIES` and :data:`STATUSES` properties; lines are ~400-600 bytes, like the seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

GENERATOR_VERSION = 1
SOURCES = 40
SUBJECTS = 1000
QUANTITIES = (
    "troops.deployed",
    "troops.rotated",
    "casualties.killed",
    "casualties.wounded",
    "casualties.killed_or_wounded",
    "prisoners.captured",
    "equipment.tanks",
    "equipment.artillery",
    "equipment.drones",
    "munitions.shells",
    "refugees.displaced",
    "aid.tonnes",
)
STATUSES = ("deployment.status", "ceasefire.status", "withdrawal.status", "training.status")
PROPERTIES = QUANTITIES + STATUSES
_WORDS = [
    "officials",
    "said",
    "the",
    "figure",
    "was",
    "based",
    "on",
    "intercepted",
    "communications",
    "and",
    "satellite",
    "imagery",
    "of",
    "the",
    "staging",
    "areas",
    "near",
    "the",
    "border",
    "while",
    "ministry",
    "spokesmen",
    "declined",
    "to",
    "confirm",
    "the",
    "report",
    "citing",
    "operational",
    "security",
    "though",
    "independent",
    "analysts",
    "broadly",
    "agreed",
    "with",
    "it",
]
_PUBLISHERS = [f"Publisher {i}" for i in range(20)]
_encode = msgspec.json.Encoder().encode


def subject_name(i: int) -> str:
    return f"subject-{i:04d}"


def source_id(i: int) -> str:
    return f"src-{i:02d}"


def _date(rng: random.Random) -> str:
    y = rng.randint(2015, 2025)
    m = rng.randint(1, 12)
    d = rng.randint(1, 28)
    r = rng.random()
    if r < 0.05:
        return f"{y}"
    if r < 0.20:
        return f"{y}-{m:02d}"
    if r < 0.90:
        return f"{y}-{m:02d}-{d:02d}"
    return f"{y}-{m:02d}-{d:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"


def lines(n: int, subjects: int = SUBJECTS, seed: int = 1) -> Iterator[dict[str, Any]]:
    """The records of a file with `n` assertions (plus sources, retractions and ranks)."""
    rng = random.Random(seed)
    for i in range(SOURCES):
        yield {
            "record": "source",
            "id": source_id(i),
            "name": f"Source number {i}",
            "kind": rng.choice(["intelligence", "military", "government", "state_media"]),
            "country": rng.choice(["US", "KR", "UA", "RU", "KP", "GB", "FR"]),
            "reliability": rng.choice("ABCDEF"),
        }
    last: dict[tuple[int, str], str] = {}
    recent: list[str] = []
    retracted: set[str] = set()
    for i in range(n):
        s = rng.randrange(subjects)
        prop = rng.choice(PROPERTIES)
        aid = f"a{i:08d}"
        line: dict[str, Any] = {
            "record": "assertion",
            "assertion_id": aid,
            "subject": subject_name(s),
            "property": prop,
        }
        if prop in STATUSES:
            line["value"] = {"status": rng.choice(["reported", "confirmed", "denied"])}
        else:
            low = rng.randint(0, 20_000)
            value = {"low": low, "high": low + rng.randint(0, 5_000)}
            if rng.random() < 0.5:
                value["best"] = rng.randint(value["low"], value["high"])
            line["value"] = value
            line["mode"] = "increment" if rng.random() < 0.2 else "total"
        line["qualifier"] = rng.choice(["about", "about", "at least", "exactly", "more than"])
        line["claimants"] = [source_id(c) for c in rng.sample(range(SOURCES), rng.randint(1, 3))]
        line["stated_at"] = _date(rng)
        if rng.random() < 0.4:
            a, b = sorted(f"{rng.randint(2014, 2025)}-{rng.randint(1, 12):02d}" for _ in "ab")
            line["valid_from"], line["valid_to"] = a, b
        document: dict[str, Any] = {
            "publisher": rng.choice(_PUBLISHERS),
            "published_at": _date(rng),
        }
        if rng.random() < 0.7:
            document["url"] = f"https://news.example/{s}/{i}"
        if rng.random() < 0.5:
            document["title"] = " ".join(rng.sample(_WORDS, 6)).capitalize()
        if rng.random() < 0.3:
            document["sha256"] = f"{rng.getrandbits(256):064x}"
        line["document"] = document
        line["quote"] = " ".join(rng.choices(_WORDS, k=rng.randint(12, 30))).capitalize() + "."
        if rng.random() < 0.5:
            line["credibility"] = rng.randint(1, 6)
        key = (s, prop)
        if key in last and rng.random() < 0.02:
            line["supersedes"] = last[key]
        last[key] = aid
        yield line
        recent.append(aid)
        if len(recent) > 5000:
            del recent[:1000]
        r = rng.random()
        if r < 0.005:
            target = rng.choice(recent)
            if target not in retracted:
                retracted.add(target)
                yield {"record": "retraction", "assertion_id": target, "reason": "wrong entry"}
        elif r < 0.01:
            yield {
                "record": "rank",
                "assertion_id": rng.choice(recent),
                "rank": rng.choice(["preferred", "deprecated", "normal"]),
                "reason": "judged against other reporting",
            }


def write(path: Path, n: int, subjects: int = SUBJECTS, seed: int = 1) -> int:
    """Write the file; returns its number of lines."""
    count = 0
    buf: list[bytes] = []
    with path.open("wb") as fh:
        for record in lines(n, subjects, seed):
            buf.append(_encode(record))
            count += 1
            if len(buf) >= 10_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    return count


def ensure(directory: Path, n: int, subjects: int = SUBJECTS, seed: int = 1) -> Path:
    """The file for `(n, subjects, seed)` in `directory`, written once and reused."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"gen-v{GENERATOR_VERSION}-{n}-{subjects}-{seed}.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write(tmp, n, subjects, seed)
        tmp.replace(path)
    return path
