"""A throwaway PostgreSQL server for the tests of :mod:`ledger.postgres_store`.

`LEDGER_TEST_POSTGRES_DSN` names a server to use instead (its tests make schemas of their
own in it). Otherwise the server binaries (`initdb`, `postgres`, found on PATH or under
/usr/lib/postgresql) start a cluster in a temporary folder, listening only on a Unix
socket there, without fsync: it holds test data and is deleted afterwards. PostgreSQL
refuses to run as root, so as root (CI) the cluster runs as `nobody`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DSN_VARIABLE = "LEDGER_TEST_POSTGRES_DSN"
START_TIMEOUT = 60.0


def _binaries() -> tuple[str, str] | None:
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if initdb and postgres:
        return initdb, postgres
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{folder}/initdb", os.X_OK) and os.access(f"{folder}/postgres", os.X_OK):
            return f"{folder}/initdb", f"{folder}/postgres"
    return None


class NoServer(Exception):
    """No PostgreSQL server can be had here; the message says why."""


@contextlib.contextmanager
def postgres_dsn() -> Iterator[str]:
    """A DSN of a PostgreSQL server for the duration of the block, for a test; skips it
    (saying why) when neither `psycopg` nor a server can be had."""
    try:
        with server() as dsn:
            yield dsn
    except NoServer as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def server(*, durable: bool = False) -> Iterator[str]:
    """A DSN of a PostgreSQL server for the duration of the block: the one
    `LEDGER_TEST_POSTGRES_DSN` names, or a throwaway cluster, without fsync unless
    `durable` (a benchmark's). :class:`NoServer` says why there is none."""
    try:
        import psycopg
    except ImportError:
        raise NoServer("psycopg is not installed (pip install -e '.[dev]')") from None
    given = os.environ.get(DSN_VARIABLE)
    if given:
        yield given
        return
    found = _binaries()
    if found is None:
        raise NoServer(
            f"no PostgreSQL server binaries (initdb, postgres) on PATH or under "
            f"/usr/lib/postgresql, and {DSN_VARIABLE} is not set"
        )
    initdb, postgres = found
    user = "nobody" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
    if user is not None:
        shutil.chown(folder, user)
    data, logfile = folder / "data", folder / "server.log"
    subprocess.run(
        [initdb, "-D", str(data), "-U", "ledger", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
        user=user,
    )
    fast = [] if durable else [
        "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"
    ]  # fmt: skip
    with open(logfile, "wb") as out:
        process = subprocess.Popen(
            [postgres, "-D", str(data), "-k", str(folder), "-c", "listen_addresses=", *fast],
            stdout=out,
            stderr=subprocess.STDOUT,
            user=user,
        )
    dsn = f"host={folder} port=5432 user=ledger dbname=postgres"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg.connect(dsn).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the test PostgreSQL server did not start:\n{logfile.read_text()}"
                    ) from None
                time.sleep(0.05)
        yield dsn
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
