"""The page's routes and files, without a browser: `GET /`, `/static/*`, no token needed,
nothing from an outside host, and every module the page imports is shipped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient, TestClient

from api.app import create_app
from api.routes.page import CONTENT_SECURITY_POLICY, PAGE_HANDLERS, STATIC_DIR
from api.settings import Settings
from tests.browser import page_wired


def _app(db: Path) -> Litestar:
    app = create_app(Settings(db=db))  # reads need a token
    if not page_wired():
        for handler in PAGE_HANDLERS:
            app.register(handler)
    return app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    with TestClient(_app(tmp_path / "l.db")) as started:
        yield started


def test_the_page_is_served_without_a_token(client: TestClient[Litestar]) -> None:
    assert client.get("/v1/subjects").status_code == 401
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/app.js"></script>' in response.text


@pytest.mark.parametrize(
    ("name", "media_type"),
    [("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")],
)
def test_the_assets_are_served_without_a_token(
    client: TestClient[Litestar], name: str, media_type: str
) -> None:
    response = client.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.content == (STATIC_DIR / name).read_bytes()


def test_only_the_static_folder_is_served(client: TestClient[Litestar]) -> None:
    assert client.get("/static/nothing.js").status_code == 404
    assert client.get("/static/%2e%2e/app.py").status_code == 404


def test_the_page_is_not_in_the_api_schema(client: TestClient[Litestar]) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [path for path in paths if path.startswith("/static")]


def test_every_file_the_page_loads_is_shipped_flat() -> None:
    """The package ships `api/static/*`: no subfolders, and every reference resolves."""
    files = {path.name for path in STATIC_DIR.iterdir()}
    assert all((STATIC_DIR / name).is_file() for name in files)
    html = (STATIC_DIR / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert ref in files, ref
    for script in STATIC_DIR.glob("*.js"):
        for ref in re.findall(r'from "\./([^"]+)"', script.read_text()):
            assert ref in files, f"{script.name} imports {ref}"


def test_nothing_is_loaded_from_an_outside_host() -> None:
    """No markup, style or script names another host to load from (the browser tests also
    watch every request the page makes, and the CSP forbids it)."""
    pattern = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//""")
    for path in STATIC_DIR.iterdir():
        assert not pattern.search(path.read_text()), path.name


async def test_the_schema_page_loads_nothing_from_outside(tmp_path: Path) -> None:
    """The interactive OpenAPI page is served whole by the app: no CDN, no outside host."""
    async with AsyncTestClient(create_app(Settings(db=tmp_path / "l.db"))) as client:
        page = await client.get("/schema")
        assert page.status_code == 200
        assert re.findall(r"https?://", page.text) == []
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        assert assets
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
