"""Projects, models and versions through specklepy's current-API resources."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ProjectVisibility
from specklepy.api.inputs.model_inputs import (
    CreateModelInput,
    DeleteModelInput,
    UpdateModelInput,
)
from specklepy.api.inputs.project_inputs import ProjectCreateInput, ProjectUpdateInput
from specklepy.api.inputs.version_inputs import (
    CreateVersionInput,
    DeleteVersionsInput,
    MarkReceivedVersionInput,
    UpdateVersionInput,
)
from specklepy.api.models import Model, Project, ResourceCollection, Version
from specklepy.logging.exceptions import GraphQLException

from strata_e2e import (
    ENTITY_ID,
    RegisteredUser,
    error_codes,
    stored_object,
    unique_name,
    user_projects,
)


def _create_project(
    client: SpeckleClient,
    visibility: ProjectVisibility | None = ProjectVisibility.PRIVATE,
) -> Project:
    return client.project.create(
        ProjectCreateInput(
            name=unique_name("e2e project"),
            description="made by the strata e2e suite",
            visibility=visibility,
        )
    )


def test_project_create_get_update_delete(first_client: SpeckleClient) -> None:
    name = unique_name("Bridge")
    created = first_client.project.create(
        ProjectCreateInput(
            name=name,
            description="steel, two spans",
            visibility=ProjectVisibility.PRIVATE,
        )
    )

    assert isinstance(created, Project)
    assert ENTITY_ID.match(created.id), created.id
    assert created.name == name
    assert created.description == "steel, two spans"
    assert created.visibility == ProjectVisibility.PRIVATE
    assert created.role == "stream:owner"
    assert created.source_apps == []
    assert created.workspace_id is None
    assert created.created_at <= created.updated_at

    fetched = first_client.project.get(created.id)
    assert fetched.id == created.id
    assert fetched.name == name
    assert fetched.description == created.description
    assert fetched.visibility == ProjectVisibility.PRIVATE
    assert fetched.role == "stream:owner"
    assert fetched.created_at == created.created_at

    renamed = unique_name("Bridge, revised")
    updated = first_client.project.update(
        ProjectUpdateInput(
            id=created.id,
            name=renamed,
            description="steel, three spans",
            visibility=ProjectVisibility.PUBLIC,
        )
    )
    assert updated.id == created.id
    assert updated.name == renamed
    assert updated.description == "steel, three spans"
    assert updated.visibility == ProjectVisibility.PUBLIC
    assert updated.updated_at >= created.updated_at
    assert updated.created_at == created.created_at

    refetched = first_client.project.get(created.id)
    assert refetched.name == renamed
    assert refetched.visibility == ProjectVisibility.PUBLIC

    # An update that names only the description leaves the rest alone.
    described = first_client.project.update(
        ProjectUpdateInput(id=created.id, description="closed for works")
    )
    assert described.name == renamed
    assert described.description == "closed for works"
    assert described.visibility == ProjectVisibility.PUBLIC

    assert created.id in {project.id for project in user_projects(first_client)}

    assert first_client.project.delete(created.id) is True

    with pytest.raises(GraphQLException) as caught:
        first_client.project.get(created.id)
    assert "STREAM_NOT_FOUND" in error_codes(caught.value), caught.value.errors

    assert created.id not in {project.id for project in user_projects(first_client)}

    with pytest.raises(GraphQLException):
        first_client.project.delete(created.id)


def test_project_created_without_visibility_is_private(first_client: SpeckleClient) -> None:
    created = first_client.project.create(
        ProjectCreateInput(name=unique_name("defaults"), description=None, visibility=None)
    )

    assert created.visibility == ProjectVisibility.PRIVATE
    assert first_client.project.get(created.id).visibility == ProjectVisibility.PRIVATE


def test_model_create_get_update_delete(
    first_client: SpeckleClient, first_user: RegisteredUser
) -> None:
    project = _create_project(first_client)
    me = first_client.active_user.get()
    assert me is not None

    created = first_client.model.create(
        CreateModelInput(name="facade/north", description="curtain wall", project_id=project.id)
    )

    assert isinstance(created, Model)
    assert ENTITY_ID.match(created.id), created.id
    assert created.name.lower() == "facade/north"
    assert created.display_name.lower() == "north"
    assert created.description == "curtain wall"
    assert created.author is not None and created.author.id == me.id
    assert created.author.name == first_user.name
    # No version yet, so no preview.
    assert created.preview_url is None

    fetched = first_client.model.get(created.id, project.id)
    assert fetched.id == created.id
    assert fetched.name == created.name
    assert fetched.description == created.description
    assert fetched.created_at == created.created_at
    assert fetched.updated_at == created.updated_at

    # Model names are unique per project, whatever the case.
    with pytest.raises(GraphQLException):
        first_client.model.create(
            CreateModelInput(name="FACADE/NORTH", description=None, project_id=project.id)
        )

    updated = first_client.model.update(
        UpdateModelInput(
            id=created.id,
            name="facade/south",
            description="glazing",
            project_id=project.id,
        )
    )
    assert updated.id == created.id
    assert updated.name.lower() == "facade/south"
    assert updated.display_name.lower() == "south"
    assert updated.description == "glazing"
    assert updated.updated_at >= created.updated_at

    refetched = first_client.model.get(created.id, project.id)
    assert refetched.name.lower() == "facade/south"
    assert refetched.description == "glazing"

    delete_input = DeleteModelInput(id=created.id, project_id=project.id)
    assert first_client.model.delete(delete_input) is True

    with pytest.raises(GraphQLException) as caught:
        first_client.model.get(created.id, project.id)
    assert "NOT_FOUND_ERROR" in error_codes(caught.value), caught.value.errors

    with pytest.raises(GraphQLException):
        first_client.model.delete(delete_input)


def test_version_create_list_update_receive_delete(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = first_client.model.create(
        CreateModelInput(name="structure", description=None, project_id=project.id)
    )
    me = first_client.active_user.get()
    assert me is not None

    # A version must reference an object the project holds (see test_compat.py for the refusal).
    first_object = stored_object(first_client, project.id)
    second_object = stored_object(first_client, project.id)
    assert first_object != second_object
    first = first_client.version.create(
        CreateVersionInput(
            object_id=first_object,
            model_id=model.id,
            project_id=project.id,
            message="first send",
            source_application="strata-e2e",
            total_children_count=0,
        )
    )

    assert isinstance(first, Version)
    assert ENTITY_ID.match(first.id), first.id
    assert first.referenced_object == first_object
    assert first.message == "first send"
    assert first.source_application == "strata-e2e"
    assert first.author_user is not None and first.author_user.id == me.id
    assert first.preview_url

    second = first_client.version.create(
        CreateVersionInput(
            object_id=second_object,
            model_id=model.id,
            project_id=project.id,
            message="second send",
        )
    )
    assert second.id != first.id
    assert second.referenced_object == second_object
    # specklepy sends "py" when the caller names no source application.
    assert second.source_application == "py"

    listed = first_client.version.get_versions(model.id, project.id)
    assert isinstance(listed, ResourceCollection)
    assert listed.total_count == 2
    # Newest first.
    assert [version.id for version in listed.items] == [second.id, first.id]
    assert listed.items[0].created_at >= listed.items[1].created_at

    fetched = first_client.version.get(first.id, project.id)
    assert fetched.id == first.id
    assert fetched.referenced_object == first_object
    assert fetched.message == "first send"
    assert fetched.created_at == first.created_at

    updated = first_client.version.update(
        UpdateVersionInput(version_id=first.id, project_id=project.id, message="renamed send")
    )
    assert updated.id == first.id
    assert updated.message == "renamed send"
    assert updated.referenced_object == first_object
    assert first_client.version.get(first.id, project.id).message == "renamed send"

    received = first_client.version.received(
        MarkReceivedVersionInput(
            version_id=second.id,
            project_id=project.id,
            source_application="strata-e2e",
            message="opened in the test suite",
        )
    )
    assert received is True

    delete_input = DeleteVersionsInput(version_ids=[first.id], project_id=project.id)
    assert first_client.version.delete(delete_input) is True

    after = first_client.version.get_versions(model.id, project.id)
    assert after.total_count == 1
    assert [version.id for version in after.items] == [second.id]

    with pytest.raises(GraphQLException):
        first_client.version.get(first.id, project.id)
    with pytest.raises(GraphQLException):
        first_client.version.delete(delete_input)


def test_user_projects_paginate_with_cursors(
    register: Callable[[str], tuple[RegisteredUser, SpeckleClient]],
) -> None:
    # A user of its own, so that the count is exactly what this test made.
    _, client = register("pager")
    created = [_create_project(client) for _ in range(5)]
    created_ids = {project.id for project in created}

    pages = []
    cursor = None
    for _ in range(10):  # 3 pages are expected; 10 bounds a cursor that never ends
        page = client.active_user.get_projects(limit=2, cursor=cursor)
        assert isinstance(page, ResourceCollection)
        assert page.total_count == 5
        assert len(page.items) <= 2
        pages.append(page)
        if page.cursor is None:
            break
        assert page.cursor != cursor, "the cursor did not move"
        cursor = page.cursor
    else:
        pytest.fail("get_projects(limit=2) never returned a null cursor over 5 projects")

    seen = [project.id for page in pages for project in page.items]
    assert len(seen) == len(set(seen)), f"a project came back twice: {seen}"
    assert set(seen) == created_ids
    assert len([page for page in pages if page.items]) >= 3
    # Most recently updated first, across page boundaries too.
    updated = [project.updated_at for page in pages for project in page.items]
    assert updated == sorted(updated, reverse=True)
    assert all(project.role == "stream:owner" for page in pages for project in page.items)
