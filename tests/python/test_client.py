"""Connecting: what specklepy learns about the server and the signed-in user."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from gql.transport.exceptions import TransportServerError
from specklepy.api.client import SpeckleClient
from specklepy.api.models import ServerInfo, User
from specklepy.logging.exceptions import SpeckleException

from strata_e2e import ENTITY_ID, RegisteredUser, new_client


def test_anonymous_client_reads_server_info(url: str) -> None:
    client = new_client(url)
    assert client.url == url

    info = client.server.get()

    assert isinstance(info, ServerInfo)
    assert info.name
    # specklepy splits the version on "." and "-" and compares the tuple to gate features, so it
    # must look like a release ("2.31.14"), with a numeric major version of at least 2.
    assert info.version
    version = client.server.version()
    assert isinstance(version[0], int) and version[0] >= 2, version
    assert all(isinstance(part, int) for part in version[:3]), version

    canonical = urlparse(info.canonical_url or "")
    assert canonical.scheme in ("http", "https"), info.canonical_url
    assert canonical.port == urlparse(url).port, (info.canonical_url, url)

    scope_names = {scope["name"] for scope in info.scopes or []}
    assert {"streams:read", "streams:write", "profile:read", "profile:email"} <= scope_names
    assert "local" in {strategy["id"] for strategy in info.auth_strategies or []}
    # Workspaces are not offered: specklepy must not be sent down the workspace paths.
    assert info.workspaces is not None
    assert info.workspaces.workspaces_enabled is False


def test_anonymous_client_has_no_active_user(url: str) -> None:
    assert new_client(url).active_user.get() is None


def test_authenticated_client_knows_the_registered_user(
    first_client: SpeckleClient, first_user: RegisteredUser
) -> None:
    me = first_client.active_user.get()

    assert isinstance(me, User)
    assert ENTITY_ID.match(me.id), me.id
    assert me.name == first_user.name
    assert me.email == first_user.email
    assert me.company == first_user.company
    # Admin on a fresh database, a plain user where others registered first.
    assert me.role in ("server:admin", "server:user")

    # authenticate_with_token copied the profile and the server info into the account.
    assert first_client.account.userInfo.id == me.id
    assert first_client.account.userInfo.company == first_user.company
    assert first_client.account.serverInfo.version == first_client.server.get().version


def test_second_user_is_a_distinct_plain_user(
    first_client: SpeckleClient,
    second_client: SpeckleClient,
    second_user: RegisteredUser,
) -> None:
    first = first_client.active_user.get()
    second = second_client.active_user.get()

    assert first is not None and second is not None
    assert second.id != first.id
    assert second.email == second_user.email
    # Only the first user a server ever sees becomes admin.
    assert second.role == "server:user"


def test_invalid_token_is_refused_with_403(url: str) -> None:
    client = new_client(url)

    # A token of the right shape that the server never issued: the server refuses the request
    # outright (HTTP 403), which specklepy surfaces as a transport error, not a GraphQL one.
    with pytest.raises(SpeckleException) as caught:
        client.authenticate_with_token("0123456789" + "ab" * 16)

    transport_error = caught.value.exception
    assert isinstance(transport_error, TransportServerError), caught.value
    assert transport_error.code == 403


def test_user_search_finds_users_by_email(
    first_client: SpeckleClient, second_user: RegisteredUser
) -> None:
    found = first_client.other_user.user_search(second_user.email, emailOnly=True)
    assert [u.name for u in found.items] == [second_user.name]
    assert found.items[0].id
