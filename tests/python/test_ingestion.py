"""Model ingestions and the `/api/v2` bundle rail, driven the way specklepy 2026.9 drives them.

Covered (the wire contract is `speckle-ingestion-wire.md`, §2.6, §3, §5 and §8):

- `operations.send3` → `operations.receive3` round trip: create the ingestion, read its reserved
  version id, sign, PUT, complete; the version is born with the reserved id and
  `referencedObject = bundle.<project>.<model>.<version>`; the ingestion ends in `success`;
  the bundle downloads and parses back (units, object, property, collection path, mesh); the
  legacy `operations.receive` routes a bundle reference to `receive3`.
- The REST rail by hand: sign refuses non-bare names and anonymous callers; the signed PUT needs
  no auth and answers an ETag; complete refuses a wrong ETag (400, JSON error) and a file that
  was never uploaded, accepts the verbatim ETag, answers the reserved id, and is idempotent (one
  version); the artifacts listing gives the uploaded bytes back through self-authorising URLs.
- `receive3` of a version without a bundle (unknown, or a legacy JSON version) raises.
- The ingestion lifecycle through `client.model_ingestion`: create (processing) → update
  progress → requeue (queued) → start processing → request cancellation → fail with cancel
  (twice: idempotent); fail with error; no version for a failed ingestion; unknown ids and
  ingestions of another project are GraphQL errors.
- The `projectModelIngestionUpdated` subscription by ingestion id: `updated`,
  `cancellationRequested`, the `messageType` filter, and the ingestion filter.
- `Model.permissions.canCreateIngestion` and the refusals a non-member gets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests
from specklepy.api import operations
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import (
    ModelIngestionStatus,
    ProjectModelIngestionUpdatedMessageType,
    ProjectVisibility,
)
from specklepy.api.inputs.model_ingestion_inputs import (
    ModelIngestionCancelledInput,
    ModelIngestionCreateInput,
    ModelIngestionFailedInput,
    ModelIngestionReference,
    ModelIngestionRequestCancellationInput,
    ModelIngestionRequeueInput,
    ModelIngestionStartProcessingInput,
    ModelIngestionUpdateInput,
    ProjectModelIngestionSubscriptionInput,
    SourceDataInput,
)
from specklepy.api.inputs.model_inputs import CreateModelInput
from specklepy.api.inputs.project_inputs import ProjectCreateInput
from specklepy.api.inputs.version_inputs import CreateVersionInput
from specklepy.api.models import Model, Project
from specklepy.api.models.current import ModelIngestion, PermissionCheckResult
from specklepy.bundle import BundleBuilder, Producer
from specklepy.logging.exceptions import GraphQLException, SpeckleException
from specklepy.objects.geometry import Mesh
from specklepy.objects.models.collections.collection import Collection
from specklepy.transports.server import ServerTransport

from strata_e2e import (
    ENTITY_ID,
    HTTP_TIMEOUT_SECONDS,
    RegisteredUser,
    authenticated_client,
    error_codes,
    stored_object,
    unique_name,
)
from test_subscriptions import receive_one

# The server creates the version inside `uploads/complete`; read models may lag a moment.
VISIBLE_WITHIN_SECONDS = 15.0

# send3's default, and what connectors send for short jobs.
MAX_IDLE_TIMEOUT_SECONDS = 600

PRODUCER_SLUG = "strata-e2e"
PRODUCER_VERSION = "0.0.0"

T = TypeVar("T")


# ── helpers ──────────────────────────────────────────────────────────────────


def _create_project(
    client: SpeckleClient, visibility: ProjectVisibility = ProjectVisibility.PRIVATE
) -> Project:
    return client.project.create(
        ProjectCreateInput(
            name=unique_name("ingestion"), description="strata e2e ingestion", visibility=visibility
        )
    )


def _create_model(client: SpeckleClient, project_id: str, name: str = "bundles") -> Model:
    return client.model.create(CreateModelInput(name=name, description=None, project_id=project_id))


def _create_ingestion(
    client: SpeckleClient, project_id: str, model_id: str, message: str = "Sending from e2e"
) -> ModelIngestion:
    return client.model_ingestion.create(
        ModelIngestionCreateInput(
            model_id=model_id,
            project_id=project_id,
            progress_message=message,
            source_data=SourceDataInput(
                source_application_slug=PRODUCER_SLUG,
                source_application_version=PRODUCER_VERSION,
                file_name=None,
                file_size_bytes=None,
            ),
            max_idle_timeout_seconds=MAX_IDLE_TIMEOUT_SECONDS,
        )
    )


def _update(
    client: SpeckleClient, project_id: str, ingestion_id: str, message: str, progress=None
) -> ModelIngestion:
    return client.model_ingestion.update_progress(
        ModelIngestionUpdateInput(
            ingestion_id=ingestion_id,
            project_id=project_id,
            progress=progress,
            progress_message=message,
        )
    )


def _request_cancellation(
    client: SpeckleClient, project_id: str, ingestion_id: str
) -> ModelIngestion:
    return client.model_ingestion.request_cancellation(
        ModelIngestionRequestCancellationInput(
            ingestion_id=ingestion_id,
            project_id=project_id,
            cancellation_message="stop, please",
        )
    )


def _eventually(read: Callable[[], T], what: str) -> T:
    """Calls `read` until it returns without raising, for at most VISIBLE_WITHIN_SECONDS."""
    deadline = time.monotonic() + VISIBLE_WITHIN_SECONDS
    while True:
        try:
            return read()
        except (AssertionError, SpeckleException) as error:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{what} not visible after {VISIBLE_WITHIN_SECONDS:.0f} s: {error!r}"
                ) from error
        time.sleep(0.1)


def _ingestion_succeeded(
    client: SpeckleClient, project_id: str, ingestion_id: str, version_id: str
) -> ModelIngestion:
    ingestion = client.model_ingestion.get_ingestion(project_id, ingestion_id)
    assert ingestion.status_data.status == ModelIngestionStatus.SUCCESS, ingestion
    assert ingestion.status_data.version_id == version_id, ingestion
    return ingestion


def _random_id() -> str:
    return uuid.uuid4().hex[:10]


# REST rail: what specklepy's ArtifactPipeline sends, by hand.


def _rail(url: str, project_id: str, ingestion_id: str, step: str) -> str:
    return f"{url}/api/v2/projects/{project_id}/modelingestion/{ingestion_id}/uploads/{step}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sign(url: str, token: str | None, project_id: str, ingestion_id: str, files: list[str]):
    return requests.post(
        _rail(url, project_id, ingestion_id, "sign"),
        json={"files": files},
        headers=_bearer(token) if token else {},
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def _complete(
    url: str, token: str, project_id: str, ingestion_id: str, etags: dict[str, str], root_id: str
):
    return requests.post(
        _rail(url, project_id, ingestion_id, "complete"),
        json={"etags": etags, "rootId": root_id, "totalChildrenCount": 0},
        headers=_bearer(token),
        timeout=HTTP_TIMEOUT_SECONDS,
    )


def _put(presigned: dict, body: bytes) -> str:
    """The presigned PUT as specklepy makes it: no Speckle headers; returns the ETag verbatim."""
    headers = {
        "Content-Type": "application/octet-stream",
        **(presigned.get("additionalRequestHeaders") or {}),
    }
    response = requests.put(
        presigned["url"], data=body, headers=headers, timeout=HTTP_TIMEOUT_SECONDS
    )
    assert response.ok, f"PUT answered {response.status_code}: {response.text[:300]}"
    etag = response.headers.get("ETag")
    assert etag, f"the PUT answered no ETag: {dict(response.headers)}"
    return etag


def _assert_json_error(response: requests.Response) -> None:
    body = response.json()
    assert isinstance(body, dict) and body.get("error"), body


# ── send3 → receive3 ─────────────────────────────────────────────────────────


def test_send3_then_receive3_round_trip(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)
    me = first_client.active_user.get()
    assert me is not None

    builder = BundleBuilder(Producer(PRODUCER_SLUG, PRODUCER_VERSION), "m")
    walls = builder.get_or_add_container_path(["Level 1", "Walls"])
    wall = builder.get_or_add_object("wall-1").set_properties({"Mark": "W-01"}, name="Wall")
    wall.collection = walls
    wall.add_geometry(Mesh(vertices=[0, 0, 0, 1, 0, 0, 0, 1, 0], faces=[3, 0, 1, 2], units="m"))

    sent = operations.send3(first_client.account, project.id, model.id, builder)

    assert ENTITY_ID.match(sent.version_id), sent.version_id
    assert sent.project_id == project.id and sent.model_id == model.id
    assert sent.object_count == 1
    reference = f"bundle.{project.id}.{model.id}.{sent.version_id}"
    assert sent.bundle_reference == reference

    # The version carries the reserved id and points at the bundle.
    version = _eventually(
        lambda: first_client.version.get(sent.version_id, project.id), "the sent version"
    )
    assert version.id == sent.version_id
    assert version.referenced_object == reference
    assert version.source_application == PRODUCER_SLUG
    assert version.author_user is not None and version.author_user.id == me.id
    listed = first_client.version.get_versions(model.id, project.id)
    assert [v.id for v in listed.items] == [sent.version_id]

    ingestion = _eventually(
        lambda: _ingestion_succeeded(first_client, project.id, sent.ingestion_id, sent.version_id),
        "the ingestion's success",
    )
    assert ingestion.id == sent.ingestion_id
    assert ingestion.model_id == model.id and ingestion.project_id == project.id
    assert ingestion.user_id == me.id

    with operations.receive3(first_client.account, project.id, model.id, sent.version_id) as got:
        assert got.units == "m"
        assert len(got.objects) == 1
        received = got.object_by_application_id("wall-1")
        assert received is not None
        assert received["Mark"] == "W-01"
        assert received.name == "Wall"
        assert received.collection_path == ["Level 1", "Walls"]
        assert len(received.geometries) == 1
        mesh = received.geometries[0].decode_mesh()
        assert mesh.vertices == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        assert mesh.faces == [3, 0, 1, 2]
        assert mesh.units == "m"

    # A script that still uses the JSON API gets the bundle projected onto a Base tree.
    root = operations.receive(
        version.referenced_object, ServerTransport(stream_id=project.id, client=first_client)
    )
    assert isinstance(root, Collection)
    assert root["version"] == 4
    assert root["units"] == "m"
    (level,) = root.elements
    assert level.name == "Level 1"
    (walls_collection,) = level.elements
    assert walls_collection.name == "Walls"
    (wall_object,) = walls_collection.elements
    assert wall_object.applicationId == "wall-1"
    assert wall_object.name == "Wall"
    assert wall_object.properties == {"Mark": "W-01"}


# ── the REST rail by hand ────────────────────────────────────────────────────


def test_upload_rail_checks_etags_and_completes_once(
    url: str, first_client: SpeckleClient, first_user: RegisteredUser
) -> None:
    token = first_user.token
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)
    ingestion = _create_ingestion(first_client, project.id, model.id)
    version_id = first_client.model_ingestion.get_reserved_version_id(project.id, ingestion.id)
    assert version_id and ENTITY_ID.match(version_id), version_id
    root_id = f"bundle.{project.id}.{model.id}.{version_id}"
    name = f"{version_id}.a.parquet"
    body = b"not really parquet: the server stores names and bytes opaquely\n" * 4

    # Names are bare file names; the caller must be signed in.
    non_bare = _sign(url, token, project.id, ingestion.id, ["a/b.parquet"])
    assert non_bare.status_code == 400, non_bare.text
    anonymous = _sign(url, None, project.id, ingestion.id, [name])
    assert anonymous.status_code in (401, 403), anonymous.text

    signed = _sign(url, token, project.id, ingestion.id, [name])
    assert signed.status_code == 200, signed.text
    uploads = signed.json()["uploads"]
    assert set(uploads) == {name}
    assert uploads[name]["url"]
    etag = _put(uploads[name], body)

    wrong = _complete(url, token, project.id, ingestion.id, {name: '"wrong"'}, root_id)
    assert wrong.status_code == 400, wrong.text
    _assert_json_error(wrong)

    never_uploaded = _complete(
        url, token, project.id, ingestion.id, {f"{version_id}.missing.parquet": etag}, root_id
    )
    assert 400 <= never_uploaded.status_code < 500, never_uploaded.text

    # Refused completes left the ingestion open and made no version.
    still_open = first_client.model_ingestion.get_ingestion(project.id, ingestion.id)
    assert still_open.status_data.status == ModelIngestionStatus.PROCESSING, still_open
    with pytest.raises(GraphQLException):
        first_client.version.get(version_id, project.id)

    # The ETag exactly as the PUT answered it, quotes and all.
    completed = _complete(url, token, project.id, ingestion.id, {name: etag}, root_id)
    assert completed.status_code == 200, completed.text
    assert completed.json()["versionId"] == version_id

    again = _complete(url, token, project.id, ingestion.id, {name: etag}, root_id)
    assert again.status_code == 200, again.text
    assert again.json()["versionId"] == version_id

    version = _eventually(
        lambda: first_client.version.get(version_id, project.id), "the completed version"
    )
    assert version.referenced_object == root_id
    versions = first_client.version.get_versions(model.id, project.id)
    assert versions.total_count == 1
    assert [v.id for v in versions.items] == [version_id]
    _eventually(
        lambda: _ingestion_succeeded(first_client, project.id, ingestion.id, version_id),
        "the ingestion's success",
    )

    # The listing names the uploaded file; its URL needs no Authorization.
    listing = requests.get(
        f"{url}/api/v2/projects/{project.id}/models/{model.id}/versions/{version_id}/artifacts",
        headers=_bearer(token),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert listing.status_code == 200, listing.text
    files = listing.json()["files"]
    assert [f["name"] for f in files] == [name]
    downloaded = requests.get(files[0]["url"], timeout=HTTP_TIMEOUT_SECONDS)
    assert downloaded.status_code == 200, downloaded.text[:300]
    assert downloaded.content == body


def test_receive3_without_a_bundle_raises(url: str, first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)

    # An unknown version: the artifacts listing answers 404.
    unknown = _random_id()
    listing = requests.get(
        f"{url}/api/v2/projects/{project.id}/models/{model.id}/versions/{unknown}/artifacts",
        headers=_bearer(first_client.account.token),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    assert listing.status_code == 404, listing.text
    with pytest.raises(SpeckleException, match="has no artefact bundle"):
        operations.receive3(first_client.account, project.id, model.id, unknown)

    # A legacy JSON version has no bundle either.
    legacy = first_client.version.create(
        CreateVersionInput(
            object_id=stored_object(first_client, project.id),
            model_id=model.id,
            project_id=project.id,
            message="sent as JSON",
        )
    )
    with pytest.raises(SpeckleException, match="has no artefact bundle"):
        operations.receive3(first_client.account, project.id, model.id, legacy.id)


# ── lifecycle ────────────────────────────────────────────────────────────────


def test_ingestion_lifecycle_to_cancelled(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)
    me = first_client.active_user.get()
    assert me is not None

    created = _create_ingestion(first_client, project.id, model.id, "Sending from e2e 1.0")
    assert created.model_id == model.id
    assert created.project_id == project.id
    assert created.user_id == me.id
    assert created.created_at <= created.updated_at
    assert created.cancellation_requested is False
    assert created.status_data.status == ModelIngestionStatus.PROCESSING
    assert created.status_data.progress_message == "Sending from e2e 1.0"
    reserved = first_client.model_ingestion.get_reserved_version_id(project.id, created.id)
    assert reserved and ENTITY_ID.match(reserved), reserved

    fetched = first_client.model_ingestion.get_ingestion(project.id, created.id)
    assert fetched.id == created.id
    assert fetched.created_at == created.created_at
    assert fetched.status_data.status == ModelIngestionStatus.PROCESSING
    assert fetched.status_data.version_id is None

    progressed = _update(first_client, project.id, created.id, "halfway", progress=0.5)
    assert progressed.id == created.id
    assert progressed.status_data.status == ModelIngestionStatus.PROCESSING
    assert progressed.status_data.progress_message == "halfway"
    assert progressed.cancellation_requested is False
    assert progressed.updated_at >= created.updated_at

    requeued = first_client.model_ingestion.requeue(
        ModelIngestionRequeueInput(
            ingestion_id=created.id, project_id=project.id, progress_message="back in line"
        )
    )
    assert requeued.status_data.status == ModelIngestionStatus.QUEUED
    assert requeued.status_data.progress_message == "back in line"
    assert (
        first_client.model_ingestion.get_ingestion(project.id, created.id).status_data.status
        == ModelIngestionStatus.QUEUED
    )

    started = first_client.model_ingestion.start_processing(
        ModelIngestionStartProcessingInput(
            ingestion_id=created.id,
            project_id=project.id,
            progress_message="picked up",
            source_data=SourceDataInput(
                source_application_slug="ifc",
                source_application_version="2026.9.1",
                file_name="tower.ifc",
                file_size_bytes=3 * 2**31,  # beyond a 32-bit Int
            ),
        )
    )
    assert started.status_data.status == ModelIngestionStatus.PROCESSING
    assert started.status_data.progress_message == "picked up"
    # A worker reads the reserved id after picking the job up.
    assert first_client.model_ingestion.get_reserved_version_id(project.id, created.id) == reserved

    asked = _request_cancellation(first_client, project.id, created.id)
    assert asked.cancellation_requested is True
    assert asked.status_data.status == ModelIngestionStatus.PROCESSING

    cancel = ModelIngestionCancelledInput(
        ingestion_id=created.id, project_id=project.id, cancellation_message="cancelled by user"
    )
    cancelled = first_client.model_ingestion.fail_with_cancel(cancel)
    assert cancelled.status_data.status == ModelIngestionStatus.CANCELLED
    assert cancelled.status_data.progress_message is None
    assert cancelled.cancellation_requested is True

    # Reporting the cancel again is a no-op, not an error.
    repeated = first_client.model_ingestion.fail_with_cancel(cancel)
    assert repeated.id == created.id
    assert repeated.status_data.status == ModelIngestionStatus.CANCELLED
    assert repeated.status_data.progress_message is None

    final = first_client.model_ingestion.get_ingestion(project.id, created.id)
    assert final.status_data.status == ModelIngestionStatus.CANCELLED
    assert final.status_data.version_id is None
    with pytest.raises(GraphQLException):
        first_client.version.get(reserved, project.id)


def test_ingestion_fails_with_error(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)
    created = _create_ingestion(first_client, project.id, model.id)
    reserved = first_client.model_ingestion.get_reserved_version_id(project.id, created.id)
    assert reserved

    failed = first_client.model_ingestion.fail_with_error(
        ModelIngestionFailedInput(
            ingestion_id=created.id,
            project_id=project.id,
            error_reason="the converter crashed",
            error_stacktrace="Traceback (most recent call last):\n  ...",
        )
    )
    assert failed.id == created.id
    assert failed.status_data.status == ModelIngestionStatus.FAILED
    assert failed.status_data.progress_message is None
    # A cancel request was never made.
    assert failed.cancellation_requested is False

    fetched = first_client.model_ingestion.get_ingestion(project.id, created.id)
    assert fetched.status_data.status == ModelIngestionStatus.FAILED
    assert fetched.status_data.progress_message is None
    # A failed ingestion never produces its version.
    with pytest.raises(GraphQLException):
        first_client.version.get(reserved, project.id)
    assert first_client.version.get_versions(model.id, project.id).total_count == 0


def test_unknown_ingestion_is_a_graphql_error(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)
    unknown = _random_id()

    with pytest.raises(GraphQLException):
        first_client.model_ingestion.get_ingestion(project.id, unknown)
    with pytest.raises(GraphQLException):
        _update(first_client, project.id, unknown, "nobody home")
    with pytest.raises(GraphQLException):
        _request_cancellation(first_client, project.id, unknown)

    # An ingestion is found only through its own project.
    ingestion = _create_ingestion(first_client, project.id, model.id)
    other = _create_project(first_client)
    with pytest.raises(GraphQLException):
        first_client.model_ingestion.get_ingestion(other.id, ingestion.id)
    with pytest.raises(GraphQLException):
        _update(first_client, other.id, ingestion.id, "wrong project")


# ── subscription ─────────────────────────────────────────────────────────────


def test_ingestion_subscription(
    url: str, first_client: SpeckleClient, first_user: RegisteredUser
) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id)
    watched = _create_ingestion(first_client, project.id, model.id)
    other = _create_ingestion(first_client, project.id, model.id)
    # One gql websocket session per subscription: a client of its own.
    listener = authenticated_client(url, first_user)

    def by_ingestion(ingestion_id: str) -> ProjectModelIngestionSubscriptionInput:
        return ProjectModelIngestionSubscriptionInput(
            project_id=project.id,
            ingestion_reference=ModelIngestionReference(ingestion_id=ingestion_id, model_id=None),
        )

    def progress_other_then_watched() -> None:
        # The other ingestion's event comes first and must not reach this subscription.
        _update(first_client, project.id, other.id, "not this one")
        _update(first_client, project.id, watched.id, "a third done", progress=0.33)

    updated = receive_one(
        url,
        lambda cb: listener.subscription.project_model_ingestion_updated(
            cb, by_ingestion(watched.id)
        ),
        progress_other_then_watched,
    )
    assert updated.type == ProjectModelIngestionUpdatedMessageType.UPDATED
    assert updated.model_ingestion.id == watched.id
    assert updated.model_ingestion.status_data.status == ModelIngestionStatus.PROCESSING
    assert updated.model_ingestion.status_data.progress_message == "a third done"
    assert updated.model_ingestion.cancellation_requested is False

    requested = receive_one(
        url,
        lambda cb: listener.subscription.project_model_ingestion_updated(
            cb, by_ingestion(watched.id)
        ),
        lambda: _request_cancellation(first_client, project.id, watched.id),
    )
    assert requested.type == ProjectModelIngestionUpdatedMessageType.CANCELLATION_REQUESTED
    assert requested.model_ingestion.id == watched.id
    assert requested.model_ingestion.cancellation_requested is True

    def progress_then_cancel() -> None:
        # The ordinary progress report comes first and must not pass the filter.
        _update(first_client, project.id, other.id, "still going")
        _request_cancellation(first_client, project.id, other.id)

    filtered = receive_one(
        url,
        lambda cb: listener.subscription.project_model_ingestion_cancellation_requested(
            cb, project.id, other.id
        ),
        progress_then_cancel,
    )
    assert filtered.type == ProjectModelIngestionUpdatedMessageType.CANCELLATION_REQUESTED
    assert filtered.model_ingestion.id == other.id
    assert filtered.model_ingestion.cancellation_requested is True


# ── permissions ──────────────────────────────────────────────────────────────


def test_can_create_ingestion_and_non_member_refusals(
    url: str,
    first_client: SpeckleClient,
    second_client: SpeckleClient,
    second_user: RegisteredUser,
) -> None:
    private = _create_project(first_client, ProjectVisibility.PRIVATE)
    private_model = _create_model(first_client, private.id)
    public = _create_project(first_client, ProjectVisibility.PUBLIC)
    public_model = _create_model(first_client, public.id)

    for project, model in ((private, private_model), (public, public_model)):
        owner = first_client.model.can_create_model_ingestion(project.id, model.id)
        assert isinstance(owner, PermissionCheckResult)
        assert owner.authorized is True, owner
        assert owner.code == "OK", owner

    # A public project is readable by anyone, but only members may publish to it.
    outsider = second_client.model.can_create_model_ingestion(public.id, public_model.id)
    assert outsider.authorized is False, outsider
    assert outsider.code == "ProjectNoAccess", outsider
    assert outsider.message

    # A private project is not even readable.
    with pytest.raises(GraphQLException) as caught:
        second_client.model.can_create_model_ingestion(private.id, private_model.id)
    assert "FORBIDDEN" in error_codes(caught.value), caught.value.errors

    for project, model in ((private, private_model), (public, public_model)):
        with pytest.raises(GraphQLException) as caught:
            _create_ingestion(second_client, project.id, model.id)
        assert "FORBIDDEN" in error_codes(caught.value), caught.value.errors

    # Nor may an outsider drive somebody else's ingestion, by GraphQL or by REST.
    owned = _create_ingestion(first_client, public.id, public_model.id)
    with pytest.raises(GraphQLException):
        _update(second_client, public.id, owned.id, "hijacked")
    with pytest.raises(GraphQLException):
        _request_cancellation(second_client, public.id, owned.id)
    signed = _sign(url, second_user.token, public.id, owned.id, ["x.a.parquet"])
    assert signed.status_code in (401, 403, 404), signed.text
    untouched = first_client.model_ingestion.get_ingestion(public.id, owned.id)
    assert untouched.status_data.status == ModelIngestionStatus.PROCESSING
    assert untouched.status_data.progress_message == "Sending from e2e"
    assert untouched.cancellation_requested is False
