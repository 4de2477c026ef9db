"""`ledger serve`: the app under uvicorn (uvloop + httptools), one server process, with
its appends in a writer child process (`api.writer`) unless told to use a thread."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Literal

import uvicorn
from litestar import Litestar

from api.app import create_app, end_streams
from api.importer import import_file
from api.settings import Settings
from api.writer import quiet_collector
from ledger import keys
from ledger.errors import LedgerUnavailable
from ledger.sqlite_store import SqliteStore, connect
from ledger.text import counted
from projections import all_projectors


class _Server(uvicorn.Server):
    """Stops promptly and cleanly on SIGTERM or SIGINT.

    Open event streams are ended first, so the graceful shutdown does not wait on them,
    and the writer (thread or child process) drains every queued append before the process
    exits 0.
    """

    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        end_streams(self._app)
        super().handle_exit(sig, frame)
        # uvicorn re-raises a caught signal once stopped (exit -15); this stop was graceful
        self._captured_signals.clear()


def can_listen(host: str, port: int) -> None:
    """Bind each address the server will listen on, and let go: an address in use, or not
    one of this machine's, is a :class:`LedgerUnavailable` here, before anything starts,
    instead of a server that starts up and stops again."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise LedgerUnavailable(f"cannot listen on {host} port {port}: {exc}") from None
    usable = False
    for family, kind, proto, _, address in dict.fromkeys(found):
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:  # e.g. IPv6 off in the kernel: the server skips that address too
            continue
        usable = True
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise LedgerUnavailable(
                    f"cannot listen on {host} port {port}: {exc.strerror or exc}"
                ) from None
    if not usable:
        raise LedgerUnavailable(f"cannot listen on {host} port {port}: no address it can open")


def fixtures_dir() -> Path:
    here = Path.cwd() / "fixtures"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "fixtures"


def views_stuck(reach: int, size: int, refusal: str | None, first: str = "") -> str:
    """Why the views are behind the log and stay so, and what to do: `first` (if any), then
    what the cause needs. The cause is why appends are refused (a full disk, a read-only
    file, a log that failed its start-up check), or, with appends not refused, a catch-up
    that could not commit (a disk that filled)."""
    message = f"the views hold the log up to seq {reach} of {size} and could not catch up"
    cause = refusal.removeprefix("appends are refused: ") if refusal else None
    if cause is None:
        return (
            f"{message} (is its disk full?): {first}free some room on its disk and open the "
            "ledger again"
        )
    if "disk is full" in cause:
        return f"{message} ({cause}): {first}free some room on its disk and open it again"
    if "read-only" in cause:
        return f"{message} ({cause}): {first}open the ledger once with write access"
    return f"{message}, since {cause}"


def load_demo(db: str) -> str:
    """Import the fixtures into an empty ledger; return a new admin token."""
    store = SqliteStore(db, all_projectors())
    try:
        if store.size() == 0:
            for path in sorted(fixtures_dir().glob("*.jsonl")):
                result = import_file(store, path, "demo")
                if (problem := result.problem()) is not None:
                    raise SystemExit(f"demo fixtures: {path}: {problem}")
                print(f"loaded {path.name}: {counted(result.appended, 'event')}")
        else:
            print(
                f"{db} already holds {counted(store.size(), 'event')}; not loading fixtures again"
            )
    finally:
        store.close()
    conn = connect(db)
    try:
        _, token = keys.create_key(conn, "admin")
    finally:
        conn.close()
    return token


def demo_banner(host: str, port: int, token: str, public_read: bool) -> str:
    base = f"http://{host}:{port}"
    subject = "north-korea.russia-deployment"
    auth = f"-H 'Authorization: Bearer {token}'"
    read = "" if public_read else f" {auth}"
    reads = "public reads on" if public_read else "reads need a token too: --public-read opens them"
    return f"""
OSINT ledger demo on {base}  ({reads})
the page: {base}/   the API docs: {base}/schema
admin token (shown once): {token}

Try:
  curl -s{read} '{base}/v1/subjects/{subject}/estimates/troops.deployed'
  curl -s{read} '{base}/v1/subjects/{subject}/estimates/troops.deployed?as_of=2025-02'
  curl -s{read} '{base}/v1/subjects/{subject}/statuses/deployment.status'
Write with:  {auth}
"""


def serve(
    *,
    db: str,
    host: str,
    port: int,
    public_read: bool,
    demo: bool,
    synchronous: str,
    rate_limit: int,
    writer_process: bool = True,
) -> int:
    mode: Literal["FULL", "NORMAL"] = "NORMAL" if synchronous == "NORMAL" else "FULL"
    can_listen(host, port)
    if demo:
        token = load_demo(db)
        print(demo_banner(host, port, token, public_read), flush=True)
    else:  # a path that cannot hold a ledger is a one-line error here, not a startup trace
        store = SqliteStore(db, all_projectors(), background_checkpoints=False)
        try:
            # only where the views could not be caught up on opening (the file cannot be
            # written): an import appending beside may leave them behind meanwhile, which
            # the views say (they answer at the seq they hold)
            stuck = store.write_refusal is not None
            reach, size = store.views_reach(), store.size()
        finally:
            store.close()
        if stuck and reach < size:  # every current view would answer for an older seq
            raise LedgerUnavailable(views_stuck(reach, size, store.write_refusal))
    settings = Settings(
        db=Path(db),
        public_read=public_read,
        synchronous=mode,
        rate_limit_per_minute=rate_limit,
        writer_process=writer_process,
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    quiet_collector()
    _Server(config, app).run()
    return 0
