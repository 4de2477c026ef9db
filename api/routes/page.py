"""The analyst's page: `GET /` and the static assets under `/static`, served by the API itself.

The page is plain HTML, CSS and ES modules in `api/static/` (no build step, no outside host):
it reads the same public `/v1` API any client does, with the reader's token when reads need
one. Neither route needs a token (`need: none`) and neither is in the OpenAPI schema.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import MediaType, Response, get
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# Everything the page loads or calls comes from this server: the policy makes it so.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_NO_TOKEN = {"need": "none"}


@cache
def _index_html() -> bytes:
    return (STATIC_DIR / "index.html").read_bytes()


@get("/", include_in_schema=False, opt=_NO_TOKEN, sync_to_thread=False)
def page() -> Response[bytes]:
    """The page; its state (subject, `as_of`, `seq`) lives in the query string."""
    return Response(content=_index_html(), media_type=MediaType.HTML, headers=_PAGE_HEADERS)


static_files = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    name="static",
    opt=_NO_TOKEN,
    include_in_schema=False,
    # revalidated on every load, so a new release's page never runs an old script
    cache_control=CacheControlHeader(no_cache=True),
)

PAGE_HANDLERS: list[ControllerRouterHandler] = [page, static_files]
