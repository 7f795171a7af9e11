"""The admin token: where it comes from, and that every route but /health asks for it."""

from __future__ import annotations

import re
import stat
import uuid
from pathlib import Path
from typing import cast

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from consumers import Engine
from gateway import ADMIN_TOKEN_VARIABLE, create_app, load_or_create_admin_token
from streams import ConfigError, Settings
from streams.settings import GatewaySettings

from .conftest import TOKEN


def _routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app serves, OPTIONS aside, ids filled in."""
    # create_app does not touch the engine, so a stand-in will do for listing routes.
    app = create_app(cast(Engine, object()), admin_token=TOKEN)
    routes: list[tuple[str, str]] = []
    for route in app.routes:
        assert isinstance(route, HTTPRoute)
        path = re.sub(r"\{[a-z_]+:uuid\}", str(uuid.uuid4()), route.path).replace("{path:str}", "swagger.json")
        routes.extend((method, path) for method in sorted(route.methods) if method != "OPTIONS")
    return routes


ROUTES = _routes()
PROTECTED = [(method, path) for method, path in ROUTES if path not in ("/health", "/api/inbound/github")]


def test_every_route_is_listed() -> None:
    paths = {path for _, path in ROUTES}
    assert "/health" in paths and "/schema/openapi.json" in paths
    assert len(PROTECTED) >= 25  # 19 API operations and the schema's pages


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_protected_routes_want_the_token(anonymous: AsyncTestClient[Litestar], method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await anonymous.request(method, path, headers=headers, json={} if method != "GET" else None)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        body = response.json()
        assert body["status"] == 401 and body["type"] == "urn:turbohooks:problem:unauthorized"
        assert ADMIN_TOKEN_VARIABLE in body["detail"]


async def test_health_needs_no_token_and_the_schema_takes_it(anonymous: AsyncTestClient[Litestar]) -> None:
    assert (await anonymous.get("/health")).json() == {"status": "ok"}
    schema = await anonymous.get("/schema/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert schema.status_code == 200
    # The scheme is case-insensitive and surrounding blanks do not matter.
    again = await anonymous.get("/schema/openapi.json", headers={"Authorization": f"bearer  {TOKEN} "})
    assert again.status_code == 200


def test_create_app_refuses_an_empty_token() -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(cast(Engine, object()), admin_token=" ")


def test_token_from_the_environment_wins(settings: Settings) -> None:
    token, created = load_or_create_admin_token(
        settings, GatewaySettings.from_env({ADMIN_TOKEN_VARIABLE: " a-long-enough-token-123 "})
    )
    assert (token, created) == ("a-long-enough-token-123", False)
    assert not (settings.data_dir / "admin-token").exists()
    with pytest.raises(ConfigError, match=ADMIN_TOKEN_VARIABLE):
        load_or_create_admin_token(settings, GatewaySettings.from_env({ADMIN_TOKEN_VARIABLE: "short"}))


def test_token_is_generated_once_then_read_back(settings: Settings) -> None:
    token, created = load_or_create_admin_token(settings, GatewaySettings.from_env({}))
    assert created and len(token) >= 40
    path: Path = settings.data_dir / "admin-token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_admin_token(settings, GatewaySettings.from_env({})) == (token, False)
    assert load_or_create_admin_token(settings, GatewaySettings.from_env({ADMIN_TOKEN_VARIABLE: ""})) == (token, False)


def test_an_empty_token_file_is_replaced(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "admin-token").write_text("\n")
    token, created = load_or_create_admin_token(settings, GatewaySettings.from_env({}))
    assert created and (settings.data_dir / "admin-token").read_text().strip() == token
