#!/usr/bin/env python3
"""Check a ledger server's log from outside, trusting none of the ledger's code.

Python's standard library only, one file: read it, copy it, run it anywhere with
Python 3.9 or newer. It speaks to the public HTTP API (contract v1) and checks what the
contract promises, from the RFCs (RFC 8785 canonical JSON, RFC 9162 Merkle trees):

    python3 check_log.py https://ledger.example --state kept-head.json
        the log head, and that it is an extension of the head kept in the state file
        (a consistency proof): nothing the log held when the head was kept has been
        changed, reordered or removed; the new head is then kept in the file
    python3 check_log.py URL --seq 14 --seq 20
        each event's payload digest, and an inclusion proof that it is that leaf of
        the tree whose root the head gives; for a payload that is not there (erased by
        law), the later PayloadErased event that names it, checked the same way
    python3 check_log.py URL --all
        every event: seqs from 1 with no gap, every payload digest, every link of the
        hash chain, and the Merkle root of all of them against the head's; and that
        every payload that is not there (erased by law) has its erasure logged by a
        later PayloadErased event in the chain, naming it

Keep the state file where the server's operator cannot change it. A token for a server
that needs one comes from --token or $LEDGER_TOKEN. Exit 0: everything checked holds;
1: something does not (each failure is printed); 2: the check could not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

Say = Callable[[str], None]

ENVELOPE = ("seq", "type", "stream", "version", "recorded_at", "actor", "data_sha256")
PAGE = 1000


class CannotCheck(Exception):
    """The check could not run (the server, the network, the state file)."""


# ---- RFC 8785 (JCS) for JSON of strings, integers, booleans, null, arrays, objects ----


def jcs(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda item: item[0].encode("utf-16-be"))
        return "{" + ",".join(f"{jcs(k)}:{jcs(v)}" for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jcs(v) for v in value) + "]"
    if isinstance(value, float):  # the contract's events hold integers only
        raise ValueError(f"a number that is not an integer: {value!r}")
    # strings: json's escapes are JCS's (", \\, \b \f \n \r \t, other controls \u00xx)
    return json.dumps(value, ensure_ascii=False)


def canonical(event: dict[str, Any]) -> bytes:
    """The contract's canonical bytes of an event: JCS of its seven envelope keys."""
    return jcs({key: event[key] for key in ENVELOPE}).encode("utf-8")


# ---- RFC 9162 ----


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf_hash(event: dict[str, Any]) -> bytes:
    return sha256(b"\x00" + canonical(event))


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


class RootBuilder:
    """The Merkle tree hash (MTH, RFC 9162 2.1.1) of leaves added one at a time, in
    O(log n) memory: the roots of the complete subtrees so far, largest first."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def add(self, leaf: bytes) -> None:
        self.size += 1
        self._stack.append(leaf)
        carry = self.size
        while carry % 2 == 0:  # two subtrees of one size make the next size up
            right, left = self._stack.pop(), self._stack.pop()
            self._stack.append(node_hash(left, right))
            carry //= 2

    def root(self) -> bytes:
        if not self._stack:
            return sha256(b"")
        root = self._stack[-1]
        for subtree in reversed(self._stack[:-1]):
            root = node_hash(subtree, root)
        return root


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    while fn % 2 == 0 and fn != 0:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def inclusion_holds(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: `leaf` is leaf `index` (0-based) of the tree of `size` with `root`."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def consistency_holds(
    first: int, second: int, first_root: bytes, second_root: bytes, path: list[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: the tree of `first` leaves is a prefix of the one of `second`."""
    if first == second:
        return not path and first_root == second_root
    if first == 0:
        return not path
    if first > second or not path:
        return False
    if first & (first - 1) == 0:  # an exact power of two
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if fn % 2 == 0:
                fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


# ---- the server ----


class Server:
    def __init__(self, base: str, token: str | None, timeout: float = 30) -> None:
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise CannotCheck(f"{base}: not an http:// or https:// address")
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str, **params: int) -> Any:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        # the scheme is http or https (checked above), never file: or another
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise CannotCheck(f"GET {url}: {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise CannotCheck(f"GET {url}: {exc}") from None

    def events(self, after: int, until: int) -> Iterator[dict[str, Any]]:
        """Events after seq `after` up to seq `until`, in order, a page at a time."""
        while after < until:
            page = self.get("/v1/events", after=after, limit=min(PAGE, until - after))
            items: list[dict[str, Any]] = page["items"]
            if not items:
                return
            yield from items
            after = items[-1]["seq"]


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except (TypeError, ValueError):
        return b""


# ---- the checks: each returns the failures it found ----


def check_payload(event: dict[str, Any]) -> list[str]:
    """The payload digest, where the payload is there (an erased one is null)."""
    data = event.get("data")
    if data is None:
        return []
    try:
        digest = hashlib.sha256(jcs(data).encode("utf-8")).hexdigest()
    except ValueError as exc:
        return [f"seq {event['seq']}: payload: {exc}"]
    if digest != event["data_sha256"]:
        return [f"seq {event['seq']}: the payload does not hash to its data_sha256"]
    return []


def _named(event: dict[str, Any]) -> Any:
    """The seq a PayloadErased event names (whatever its data holds there)."""
    data = event.get("data")
    return data.get("seq") if isinstance(data, dict) else None


def _erasure_logged(event: dict[str, Any], logged: dict[int, int]) -> list[str]:
    """Take in a PayloadErased event: the seq it names, once, before it."""
    seq, named = event["seq"], _named(event)
    if type(named) is not int or not 1 <= named < seq:
        return [f"seq {seq}: a PayloadErased that names no earlier event"]
    if named in logged:
        return [f"seq {seq}: logs the erasure of seq {named} again (first at {logged[named]})"]
    logged[named] = seq
    return []


def _erasures_match(erased: list[int], logged: dict[int, int]) -> list[str]:
    """Every payload not there was erased with a logged erasure, and every logged one is
    not there."""
    gone = set(erased)
    failures = [
        f"seq {seq}: the payload is not there and no PayloadErased logs its erasure"
        for seq in erased
        if seq not in logged
    ]
    failures += [
        f"seq {at}: logs the erasure of seq {seq}, whose payload is still there"
        for seq, at in logged.items()
        if seq not in gone
    ]
    return failures


def check_events(server: Server, size: int, root: bytes, say: Say) -> tuple[list[str], int]:
    """Every event of the tree of `size`: returns the failures and the erased count."""
    failures: list[str] = []
    builder = RootBuilder()
    previous = bytes(32)
    erased: list[int] = []
    logged: dict[int, int] = {}  # erased seq -> the seq of the event that logs it
    for event in server.events(0, size):
        seq = event["seq"]
        if seq != builder.size + 1:
            failures.append(f"seq {builder.size + 1} is missing (the next event is {seq})")
            return failures, len(erased)
        failures += check_payload(event)
        if event.get("data") is None:
            erased.append(seq)
        elif event.get("type") == "PayloadErased":
            failures += _erasure_logged(event, logged)
        chained = sha256(previous + canonical(event))
        if chained.hex() != event["hash"]:
            failures.append(f"seq {seq}: the hash chain breaks here")
        previous = _hex(event["hash"])
        builder.add(leaf_hash(event))
        if seq % 10_000 == 0:
            say(f"  {seq:,} of {size:,} events checked")
    if builder.size != size:
        failures.append(f"the log ends at seq {builder.size}, its head says {size}")
    elif builder.root() != root:
        failures.append("the Merkle root of the events is not the head's root")
    unmatched = [seq for seq in erased if seq not in logged]
    if unmatched:  # erased while this check ran: logged past the head it checks
        _logged_later(server, size, set(unmatched), logged, say)
    return failures + _erasures_match(erased, logged), len(erased)


def _logged_later(
    server: Server, size: int, wanted: set[int], logged: dict[int, int], say: Say
) -> None:
    """Look past the checked head, to the log's end now, for the PayloadErased of each
    payload in `wanted`: one erased while the check ran is logged there."""
    now = int(server.get("/v1/log/head")["size"])
    for event in server.events(size, now):
        named = _named(event)
        if event.get("type") == "PayloadErased" and named in wanted and named not in logged:
            logged[named] = event["seq"]
            say(f"  seq {named} was erased while the check ran (logged at seq {event['seq']})")


def _event(server: Server, seq: int) -> dict[str, Any] | None:
    items = server.get("/v1/events", after=seq - 1, limit=1)["items"]
    return items[0] if items and items[0]["seq"] == seq else None


def _included(server: Server, event: dict[str, Any], size: int, root: bytes) -> list[str]:
    seq = event["seq"]
    proof = server.get("/v1/log/inclusion", seq=seq, size=size)
    path = [_hex(p) for p in proof["path"]]
    if not inclusion_holds(seq - 1, size, leaf_hash(event), path, root):
        return [f"seq {seq}: the inclusion proof does not lead to the head's root"]
    return []


def check_included(server: Server, seq: int, size: int, root: bytes) -> tuple[list[str], str]:
    """One event's payload digest and inclusion proof: the failures, and what held."""
    if not 1 <= seq <= size:
        return [f"seq {seq} is not in the log of {size} events"], ""
    event = _event(server, seq)
    if event is None:
        return [f"seq {seq}: the server did not give the event"], ""
    if event.get("data") is None:
        failures, held = check_erased(server, seq, size, root)
    else:
        failures, held = check_payload(event), "payload digest"
    failures += _included(server, event, size, root)
    return failures, f"seq {seq}: {held} and inclusion proof hold"


def check_erased(server: Server, seq: int, size: int, root: bytes) -> tuple[list[str], str]:
    """An event whose payload is not there: the PayloadErased that logs its erasure (its
    seq from `GET /v1/erasures`), checked in the log itself: its type, the seq it names,
    its payload digest, and its place in the tree (of the head now, tied to the one
    checked by a consistency proof, if it was logged past that head)."""
    missing = f"seq {seq}: the payload is not there and no PayloadErased logs its erasure"
    items = server.get("/v1/erasures", after=seq - 1, limit=1)["items"]
    logged = items[0].get("logged_seq") if items and items[0].get("seq") == seq else None
    if type(logged) is not int or logged <= seq:
        return [missing], ""
    if logged > size:  # erased since the head was read: prove it in the head now
        head = server.get("/v1/log/head")
        now, now_root = int(head["size"]), _hex(str(head["root"]))
        moved = check_extends(server, {"size": size, "root": root.hex()}, now, now_root)
        if moved or logged > now:
            return moved or [missing], ""
        size, root = now, now_root
    event = _event(server, logged)
    if event is None or event.get("type") != "PayloadErased" or _named(event) != seq:
        return [f"{missing} (seq {logged}, given as its erasure, is not one naming it)"], ""
    failures = check_payload(event) + _included(server, event, size, root)
    return failures, f"payload erased by law (logged at seq {logged}, which holds)"


def check_extends(server: Server, kept: dict[str, Any], size: int, root: bytes) -> list[str]:
    old_size, old_root = int(kept["size"]), _hex(kept["root"])
    if old_size > size:
        return [f"the log shrank: {old_size} events kept, {size} now"]
    path: list[bytes] = []
    if 0 < old_size < size:
        proof = server.get("/v1/log/consistency", **{"from": old_size, "to": size})
        path = [_hex(p) for p in proof["path"]]
    if not consistency_holds(old_size, size, old_root, root, path):
        return [
            f"the log of {size} events does not extend the one of {old_size} kept earlier: "
            "something it held was changed, reordered or removed"
        ]
    return []


def _read_state(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as file:
            kept: dict[str, Any] = json.load(file)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CannotCheck(f"{path}: {exc}") from None
    if not isinstance(kept, dict) or not isinstance(kept.get("size"), int):
        raise CannotCheck(f"{path}: not a kept head ({{size, root}})")
    if not isinstance(kept.get("root"), str):
        raise CannotCheck(f"{path}: not a kept head ({{size, root}})")
    return kept


def _keep_state(path: str, size: int, root: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    handle, partial = tempfile.mkstemp(dir=folder, prefix=".check_log-")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        json.dump({"size": size, "root": root}, file)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def run(args: argparse.Namespace, say: Say) -> int:
    server = Server(args.url, args.token or os.environ.get("LEDGER_TOKEN"), args.timeout)
    head = server.get("/v1/log/head")
    size, root_hex = int(head["size"]), str(head["root"])
    root = _hex(root_hex)
    say(f"head: {size} events, root {root_hex}")
    failures: list[str] = []
    kept = _read_state(args.state) if args.state else None
    if kept is not None:
        found = check_extends(server, kept, size, root)
        failures += found
        if not found:
            say(f"consistent with the head kept in {args.state} ({kept['size']} events)")
    for seq in args.seq:
        found, held = check_included(server, seq, size, root)
        failures += found
        if not found:
            say(held)
    if args.all:
        found, erased = check_events(server, size, root, say)
        failures += found
        if not found:
            gone = f" ({erased} payloads erased, each erasure logged)" if erased else ""
            say(f"all {size} events: seqs, payload digests, hash chain and root hold{gone}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if failures:
        return 1
    if args.state:
        _keep_state(args.state, size, root_hex)
        say(f"kept this head in {args.state}")
    return 0


def _seq(text: str) -> int:
    """A seq as the ledger writes one: digits 0-9, no sign, no leading 0, from 1."""
    if not (text.isascii() and text.isdigit() and text[0] != "0") or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(
            f"not a seq: {text!r} (digits 0-9, no leading 0, 1 to {2**63 - 1})"
        )
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"not a number of seconds over 0, at most 3600: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", help="a reader's token (default: $LEDGER_TOKEN)")
    parser.add_argument("--state", help="a file keeping the last head checked")
    parser.add_argument("--seq", type=_seq, action="append", default=[], help="an event to prove")
    parser.add_argument("--all", action="store_true", help="check every event")
    parser.add_argument("--timeout", type=_seconds, default=30, help="seconds per request")
    args = parser.parse_args(argv)
    try:
        return run(args, lambda line: print(line, flush=True))
    except CannotCheck as exc:
        print(f"check_log: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError) as exc:
        print(
            f"check_log: the server's answer is not what the contract says: {exc!r}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
