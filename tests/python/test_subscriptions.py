"""specklepy's subscription helpers against strata: gql's WebsocketsTransport speaks the legacy
`graphql-ws` protocol with the token in `connection_init`, as connectors do.

Each scenario starts a subscription, waits until the server counts it on its
`strata_live_subscriptions` gauge (so the change that follows is known to reach it), makes the
change over HTTP, and waits for the message. The gauge is the whole server's: it tells about
this scenario's subscription only because the suite runs one scenario at a time against a
server nobody else subscribes to, and every scenario waits, before it returns, until the gauge
is back where it found it (its subscription closed on the server too). Without that wait the
previous scenario's closing subscription could cancel out this one's in the count.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

from specklepy.api.client import SpeckleClient
from specklepy.api.enums import (
    ProjectModelsUpdatedMessageType,
    ProjectUpdatedMessageType,
    ProjectVersionsUpdatedMessageType,
    UserProjectsUpdatedMessageType,
)
from specklepy.api.inputs.model_inputs import CreateModelInput
from specklepy.api.inputs.project_inputs import (
    ProjectCreateInput,
    ProjectUpdateInput,
    ProjectUpdateRoleInput,
)
from specklepy.api.inputs.version_inputs import CreateVersionInput

from strata_e2e import RegisteredUser, authenticated_client, stored_object, unique_name

WAIT_SECONDS = 20.0


def live_subscriptions(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^strata_live_subscriptions (\d+)", text, re.MULTILINE)
    assert match, "the server exports strata_live_subscriptions"
    return int(match.group(1))


async def _wait_counted(url: str, above: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while await asyncio.to_thread(live_subscriptions, url) <= above:
        assert time.monotonic() < deadline, "the subscription never became live"
        await asyncio.sleep(0.02)


async def _wait_closed(url: str, back_to: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while (now := await asyncio.to_thread(live_subscriptions, url)) > back_to:
        assert time.monotonic() < deadline, f"{now - back_to} subscriptions never closed"
        await asyncio.sleep(0.02)


def receive_one(
    url: str,
    subscribe: Callable[[Callable[[Any], None]], Awaitable[None]],
    change: Callable[[], object],
) -> Any:
    """Subscribes, makes `change` once the server counts the subscription, returns the first
    message."""

    async def scenario() -> Any:
        before = await asyncio.to_thread(live_subscriptions, url)
        received: asyncio.Queue[Any] = asyncio.Queue()
        task = asyncio.create_task(subscribe(received.put_nowait))
        try:
            await _wait_counted(url, before)
            await asyncio.to_thread(change)
            return await asyncio.wait_for(received.get(), WAIT_SECONDS)
        finally:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing the socket
                pass
            await _wait_closed(url, before)

    return asyncio.run(scenario())


def _project(client: SpeckleClient) -> str:
    return client.project.create(
        ProjectCreateInput(name=unique_name("live"), description=None, visibility=None)
    ).id


def test_project_updated(url: str, first_client: SpeckleClient) -> None:
    project_id = _project(first_client)
    name = unique_name("renamed live")
    message = receive_one(
        url,
        lambda cb: first_client.subscription.project_updated(cb, project_id),
        lambda: first_client.project.update(ProjectUpdateInput(id=project_id, name=name)),
    )
    assert message.id == project_id
    assert message.type == ProjectUpdatedMessageType.UPDATED
    # The read model has the change by the time the message arrives.
    assert message.project is not None and message.project.name == name


def test_project_models_and_versions_updated(url: str, first_client: SpeckleClient) -> None:
    project_id = _project(first_client)
    created = receive_one(
        url,
        lambda cb: first_client.subscription.project_models_updated(cb, project_id),
        lambda: first_client.model.create(
            CreateModelInput(name="live/walls", description="d", project_id=project_id)
        ),
    )
    assert created.type == ProjectModelsUpdatedMessageType.CREATED
    assert created.model is not None and created.model.name == "live/walls"
    assert created.model.display_name == "walls"

    # Stored before subscribing, so that the only change the subscription sees is the version.
    root = stored_object(first_client, project_id)
    version = receive_one(
        url,
        lambda cb: first_client.subscription.project_versions_updated(cb, project_id),
        lambda: first_client.version.create(
            CreateVersionInput(
                object_id=root,
                model_id=created.id,
                project_id=project_id,
                message="sent live",
                source_application="pytest",
            )
        ),
    )
    assert version.type == ProjectVersionsUpdatedMessageType.CREATED
    assert version.model_id == created.id
    assert version.version is not None and version.version.message == "sent live"


def test_user_projects_updated(
    url: str,
    first_client: SpeckleClient,
    second_user: RegisteredUser,
    second_client: SpeckleClient,
) -> None:
    project_id = _project(first_client)
    me = second_client.active_user.get()
    assert me is not None
    # A client of its own: one gql websocket session per subscription.
    listener = authenticated_client(url, second_user)
    added = receive_one(
        url,
        lambda cb: listener.subscription.user_projects_updated(cb),
        lambda: first_client.project.update_role(
            ProjectUpdateRoleInput(user_id=me.id, project_id=project_id, role="stream:reviewer")
        ),
    )
    assert added.type == UserProjectsUpdatedMessageType.ADDED
    assert added.id == project_id
    removed = receive_one(
        url,
        lambda cb: listener.subscription.user_projects_updated(cb),
        lambda: first_client.project.update_role(
            ProjectUpdateRoleInput(user_id=me.id, project_id=project_id, role=None)
        ),
    )
    assert removed.type == UserProjectsUpdatedMessageType.REMOVED
    assert removed.project is None
