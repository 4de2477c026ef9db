"""Schemathesis against the live OpenAPI schema, in process: no 5xx, every default check.

Positive and negative cases for every operation, sent with an admin token (given as the
schema's `bearer` scheme, so a case that leaves it out on purpose goes without); every
default check runs on each answer (`not_a_server_error`, the status, content type, header and
response-schema conformance checks, `negative_data_rejection`, `positive_data_acceptance`,
`ignored_auth`, `unsupported_method`, ...). A few examples per operation keep the suite
fast; `scripts/fuzz_api.py` runs the schemathesis CLI with many more against a real
server (figures in docs/reliability.md).

`positive_data_acceptance` also accepts a 422: a schema cannot say that a claimant must
be registered, that `seq` must not exceed `size`, or that 2025-02-30 is no date, and the
contract answers those with a 422 naming the field. It accepts a 412 too: an `If-Match`
that names another version than the stream's is a well-formed header, and every write
answers it with a 412.

The schema is loaded when the module is collected (schemathesis' lazy `from_fixture`
reads `node._nodeid`, which pytest 9 no longer has), so the fuzzed ledger lives in a
temporary directory made here and removed at exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from api.app import create_app
from tests.api_helpers import make_ledger

EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "4"))
COVERAGE = os.environ.get("LEDGER_FUZZ_COVERAGE", "0") == "1"
"""The coverage phase (its ~1000 boundary cases take ~20 s) runs in scripts/fuzz_api.py."""

_DIR = Path(tempfile.mkdtemp(prefix="ledger-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
FUZZED = make_ledger(_DIR)
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all"},
        "phases": {"coverage": {"enabled": COVERAGE}},
        # the scheme the schema declares, so negative cases that drop the token stay dropped
        "auth": {"openapi": {"bearer": {"bearer": FUZZED.tokens["admin"]}}},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "412", "422", "429"]
            }
        },
    }
)
STATUSES: list[int] = []
APP = create_app(FUZZED.settings(sse_heartbeat_seconds=0.05))
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", APP, config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 10,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms(case: schemathesis.Case[Any]) -> None:
    response = case.call_and_validate()
    STATUSES.append(response.status_code)


def test_the_fuzzer_got_past_auth() -> None:
    """The cases above ran first (same module) and were mostly let in: the token was sent."""
    assert STATUSES
    assert sum(200 <= s < 300 for s in STATUSES) >= 10
    assert STATUSES.count(401) < len(STATUSES) // 2  # some cases drop the token on purpose
    assert not [s for s in STATUSES if s >= 500]
