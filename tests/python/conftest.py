"""Fixtures: the server's address, and users registered through the local sign-up flow.

Users are registered once per session (`first_user`, then `second_user`), like specklepy's own
integration tests; every test makes its own projects, so tests do not depend on each other.
On a fresh database the first user the server ever sees becomes `server:admin`; the suite may
run against a database that already has users, so it never relies on that.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from specklepy.api.client import SpeckleClient
from specklepy.logging import metrics

from strata_e2e import (
    PASSWORD,
    SECRETS,
    RegisteredUser,
    authenticated_client,
    register_user,
    server_url,
    wait_until_ready,
)

# specklepy only reports usage for app.speckle.systems, but say so explicitly: nothing here
# may talk to anything but the local server.
metrics.disable()


@pytest.fixture(scope="session")
def url() -> str:
    """The server's origin, once it answers `/readiness`."""
    origin = server_url()
    wait_until_ready(origin, float(os.environ.get("STRATA_E2E_READY_SECONDS", "60")))
    return origin


@pytest.fixture(scope="session")
def first_user(url: str) -> RegisteredUser:
    return register_user(url, "first")


@pytest.fixture(scope="session")
def second_user(url: str, first_user: RegisteredUser) -> RegisteredUser:
    # Depends on first_user so that the order of registration is always first, then second.
    return register_user(url, "second")


@pytest.fixture(scope="session")
def first_client(url: str, first_user: RegisteredUser) -> SpeckleClient:
    return authenticated_client(url, first_user)


@pytest.fixture(scope="session")
def second_client(url: str, second_user: RegisteredUser) -> SpeckleClient:
    return authenticated_client(url, second_user)


@pytest.fixture(scope="session")
def register(url: str) -> Callable[[str], tuple[RegisteredUser, SpeckleClient]]:
    """Registers another user, for tests that need an account nobody else touches."""

    def make(label: str) -> tuple[RegisteredUser, SpeckleClient]:
        user = register_user(url, label)
        return user, authenticated_client(url, user)

    return make


@pytest.fixture(scope="session", autouse=True)
def no_secret_reaches_the_server_log():
    """What the server logged during the run (`STRATA_E2E_SERVER_LOG`, which `deploy/dev test`
    sets) holds none of the secrets the run handled: passwords, access codes, tokens and
    refresh tokens, and the server's own pepper and S3 key."""
    path = os.environ.get("STRATA_E2E_SERVER_LOG")
    start = os.path.getsize(path) if path and os.path.exists(path) else 0
    yield
    if not path:
        return
    with open(path, encoding="utf-8", errors="replace") as log:
        log.seek(start)
        text = log.read()
    own = [os.environ.get(k, "") for k in ("STRATA_TOKEN_PEPPER", "STRATA_S3_SECRET_ACCESS_KEY")]
    secrets = [s for s in [PASSWORD, *SECRETS, *own] if len(s) >= 8]
    assert len(secrets) > 3, "the run recorded no secrets to look for"
    leaked = sorted({s[:4] + "…" for s in secrets if s in text})
    assert not leaked, f"secrets found in {path}: {leaked}"
