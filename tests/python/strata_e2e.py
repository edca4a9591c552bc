"""Helpers shared by the end-to-end tests: where the server is, how users sign up, and how
specklepy reports GraphQL errors.

Nothing here talks to the server at import time, so `pytest --collect-only` works without one.
"""

from __future__ import annotations

import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import requests
from specklepy.api import operations
from specklepy.api.client import SpeckleClient
from specklepy.api.models import Project
from specklepy.logging.exceptions import GraphQLException
from specklepy.objects import Base
from specklepy.transports.server import ServerTransport

# The web app's client id and secret: the original upserts `spklwebapp` with secret == id, and
# registration issues its access code for that app.
WEB_APP_ID = "spklwebapp"
WEB_APP_SECRET = "spklwebapp"

# Long enough for the original's rule (>= 8 characters), with symbols as people type them.
PASSWORD = "c0rrect-h0rse-battery-$taple"

# Entity ids (projects, models, versions, users) are 10 lowercase hex characters on the wire.
ENTITY_ID = re.compile(r"^[0-9a-f]{10}$")

HTTP_TIMEOUT_SECONDS = 30


def server_url() -> str:
    """The server's origin: `STRATA_PUBLIC_URL` when set, else the address `strata` binds to.

    Mirrors the server's own default for the public URL (`http://BIND_ADDRESS:PORT`), except
    that a wildcard bind address is reached through loopback.
    """
    public = os.environ.get("STRATA_PUBLIC_URL", "").strip()
    if public:
        return public.rstrip("/")
    port = os.environ.get("STRATA_PORT", "").strip() or "3000"
    bind = os.environ.get("STRATA_BIND_ADDRESS", "").strip() or "127.0.0.1"
    if bind in ("0.0.0.0", "::", "[::]"):
        bind = "127.0.0.1"
    if ":" in bind and not bind.startswith("["):
        bind = f"[{bind}]"  # a literal IPv6 address
    return f"http://{bind}:{port}"


def client_host(url: str) -> tuple[str, bool]:
    """`SpeckleClient` wants a host without scheme, and `use_ssl` for https."""
    parsed = urlparse(url)
    return parsed.netloc + parsed.path.rstrip("/"), parsed.scheme == "https"


def new_client(url: str) -> SpeckleClient:
    """An anonymous client, as a script would make it."""
    host, use_ssl = client_host(url)
    return SpeckleClient(host=host, use_ssl=use_ssl)


def wait_until_ready(url: str, timeout_seconds: float) -> None:
    """Waits for `GET /readiness` to answer 200; fails with what it last saw."""
    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while True:
        try:
            response = requests.get(f"{url}/readiness", timeout=5)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:300]}"
        except requests.RequestException as error:
            last = repr(error)
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"strata at {url} was not ready after {timeout_seconds:.0f} s ({last}); "
                "start it with `deploy/dev up`"
            )
        time.sleep(0.5)


# Every secret the suite was handed by the server or gave it (access codes, tokens): the
# session's last check finds none of them in the server's log.
SECRETS: list[str] = []


@dataclass(frozen=True)
class RegisteredUser:
    email: str
    password: str
    name: str
    company: str
    token: str
    refresh_token: str


def register_user(url: str, label: str) -> RegisteredUser:
    """Signs a new user up the way the web app (and specklepy's own integration tests) do.

    1. `POST /auth/local/register?challenge=<c>` with a form body; the answer is a redirect to
       the frontend carrying `access_code` in its query (the redirect is not followed: no
       frontend runs here).
    2. `POST /auth/token` exchanges the code, with the same challenge and the web app's
       credentials, for `{token, refreshToken}`.
    """
    seed = uuid.uuid4().hex[:12]
    challenge = secrets.token_hex(16)
    form = {
        "email": f"{label}-{seed}@example.org",
        "password": PASSWORD,
        "name": f"{label.capitalize()} {seed[:6]}",
        "company": "strata e2e",
    }

    registered = requests.post(
        f"{url}/auth/local/register",
        params={"challenge": challenge},
        data=form,
        allow_redirects=False,
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert registered.status_code == 302, (
        f"register answered {registered.status_code}: {registered.text[:500]}"
    )
    location = registered.headers.get("Location", "")
    codes = parse_qs(urlparse(location).query).get("access_code", [])
    assert len(codes) == 1 and codes[0], f"no access_code in Location {location!r}"

    exchanged = requests.post(
        f"{url}/auth/token",
        json={
            "appId": WEB_APP_ID,
            "appSecret": WEB_APP_SECRET,
            "accessCode": codes[0],
            "challenge": challenge,
        },
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert exchanged.status_code == 200, (
        f"token exchange answered {exchanged.status_code}: {exchanged.text[:500]}"
    )
    tokens = exchanged.json()
    assert isinstance(tokens.get("token"), str) and tokens["token"], tokens
    assert isinstance(tokens.get("refreshToken"), str) and tokens["refreshToken"], tokens
    assert tokens["token"] != tokens["refreshToken"]
    SECRETS.extend([codes[0], tokens["token"], tokens["refreshToken"]])

    return RegisteredUser(
        email=form["email"],
        password=form["password"],
        name=form["name"],
        company=form["company"],
        token=tokens["token"],
        refresh_token=tokens["refreshToken"],
    )


def authenticated_client(url: str, user: RegisteredUser) -> SpeckleClient:
    """A client signed in with the user's token; checks what specklepy learnt on the way."""
    client = new_client(url)
    client.authenticate_with_token(user.token)

    account = client.account
    assert account.token == user.token
    assert account.userInfo.id, "authenticate_with_token found no active user"
    assert account.userInfo.name == user.name
    assert account.userInfo.email == user.email
    assert account.serverInfo.name
    assert account.serverInfo.url == client.url
    return client


def error_codes(error: GraphQLException) -> list[str]:
    """The `extensions.code` of every GraphQL error specklepy received."""
    codes = []
    for entry in error.errors or []:
        extensions = entry.get("extensions") if isinstance(entry, dict) else None
        code = extensions.get("code") if isinstance(extensions, dict) else None
        if code:
            codes.append(code)
    return codes


def unique_name(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


def object_id() -> str:
    """An object id as clients compute them (32 lowercase hex characters), of nothing stored:
    for the cases where an unknown id is the point."""
    return uuid.uuid4().hex


def stored_object(client: SpeckleClient, project_id: str) -> str:
    """Sends a small object to the project with specklepy's `ServerTransport` and returns its
    id, so that a version can reference it (the server refuses a version whose root object the
    project does not hold). A unique attribute makes every call's id different."""
    base = Base()
    base.name = "strata e2e root"
    base.nonce = uuid.uuid4().hex
    sent = operations.send(
        base, [ServerTransport(stream_id=project_id, client=client)], use_default_cache=False
    )
    assert len(sent) == 32, sent
    return sent


def user_projects(client: SpeckleClient, limit: int = 25) -> Iterator[Project]:
    """Every project of the active user, following cursors (bounded, in case they loop)."""
    cursor = None
    for _ in range(1000):
        page = client.active_user.get_projects(limit=limit, cursor=cursor)
        yield from page.items
        if page.cursor is None or not page.items:
            return
        cursor = page.cursor
    raise AssertionError("active_user.get_projects never returned a null cursor")
