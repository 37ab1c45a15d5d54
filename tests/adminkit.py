"""Driving a node's admin pages over HTTP, as a browser does (cookies, forms, CSRF tokens)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

PASSWORD = "correct-horse-battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LOGIN = re.compile(r'name="login_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


class Admin:
    """An https client (so Secure cookies are sent) for one node app's admin pages."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def login(self, password: str = PASSWORD) -> httpx.Response:
        page = await self.client.get("/admin/login")
        assert page.status_code == 200, page.text
        token = _LOGIN.search(page.text)
        assert token is not None
        return await self.client.post(
            "/admin/login", data={"password": password, "login_token": token.group(1)}
        )

    async def page(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params or None)

    async def submit(
        self, page_path: str, action: str, data: dict[str, Any] | None = None, **options: Any
    ) -> httpx.Response:
        """Load ``page_path`` for its CSRF token, then POST the form to ``action``."""
        page = await self.client.get(page_path)
        assert page.status_code == 200, page.text
        return await self.client.post(
            action, data={"csrf": csrf_of(page.text), **(data or {})}, **options
        )


@asynccontextmanager
async def admin_client(app: FastAPI, client_host: str = "127.0.0.1") -> AsyncIterator[Admin]:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False, client=(client_host, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://node.test") as client:
        yield Admin(client)
