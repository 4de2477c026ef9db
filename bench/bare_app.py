"""The baseline of target 1: a bare litestar app that decodes the assertion body and says 201.

Same server as `ledger serve` (uvicorn, uvloop, httptools, one process, no access log) and
the same request struct (`ledger.commands.RecordAssertion`, with its constraints), but no
auth, no middleware, no store: what the framework alone costs per request.
`python -m bench.bare_app --port P`.
"""

from __future__ import annotations

import argparse
import sys

import uvicorn
from litestar import Litestar, Response, get, post

from ledger.commands import RecordAssertion

_CREATED = b'{"assertion_id":"x","seq":1,"recorded_at":"2025-01-01T00:00:00.000000Z","hash":"0"}'


@post("/v1/assertions", status_code=201)
async def record(data: RecordAssertion) -> Response[bytes]:
    del data
    return Response(content=_CREATED, status_code=201, media_type="application/json")


@get("/v1/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = Litestar(route_handlers=[record, health], debug=False)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        http="httptools",
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
