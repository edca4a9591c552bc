"""specklepy calls that connectors make beyond plain CRUD: filtered model lists, permission
checks, project invites, the workspace queries of a server without workspaces, and the refusal
of a version whose root object was never sent."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ProjectVisibility
from specklepy.api.inputs.model_inputs import CreateModelInput
from specklepy.api.inputs.project_inputs import (
    ProjectCreateInput,
    ProjectInviteCreateInput,
    ProjectModelsFilter,
)
from specklepy.api.inputs.version_inputs import CreateVersionInput
from specklepy.api.models import (
    Model,
    PendingStreamCollaborator,
    Project,
    ProjectWithModels,
    ProjectWithTeam,
    ResourceCollection,
)
from specklepy.api.models.current import ModelPermissionChecks, PermissionCheckResult
from specklepy.logging.exceptions import GraphQLException

from strata_e2e import RegisteredUser, error_codes, object_id, stored_object, unique_name

WORKSPACES_DISABLED = r"WORKSPACES_MODULE_DISABLED_ERROR|Workspaces are not enabled"


def _create_project(
    client: SpeckleClient, visibility: ProjectVisibility = ProjectVisibility.PRIVATE
) -> Project:
    return client.project.create(
        ProjectCreateInput(
            name=unique_name("compat"), description="strata e2e compat", visibility=visibility
        )
    )


def _create_model(client: SpeckleClient, project_id: str, name: str) -> Model:
    return client.model.create(
        CreateModelInput(name=name, description=None, project_id=project_id)
    )


def _create_version(
    client: SpeckleClient, project_id: str, model_id: str, source_application: str
) -> None:
    client.version.create(
        CreateVersionInput(
            object_id=stored_object(client, project_id),
            model_id=model_id,
            project_id=project_id,
            message=f"sent from {source_application}",
            source_application=source_application,
        )
    )


def _user_id(client: SpeckleClient) -> str:
    me = client.active_user.get()
    assert me is not None
    return me.id


def _ids(models: Iterable[Model]) -> set[str]:
    return {model.id for model in models}


def _assert_authorized(check: PermissionCheckResult) -> None:
    assert isinstance(check, PermissionCheckResult)
    assert check.authorized is True, check
    assert check.code == "OK", check


def test_models_list_with_filters(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    alpha_one = _create_model(first_client, project.id, "alpha/one")
    alpha_two = _create_model(first_client, project.id, "alpha/two")
    beta = _create_model(first_client, project.id, "beta")
    _create_version(first_client, project.id, alpha_one.id, "Rhino7")
    _create_version(first_client, project.id, beta.id, "Revit")
    alphas = {alpha_one.id, alpha_two.id}

    def listed(models_filter: ProjectModelsFilter | None) -> set[str]:
        page = first_client.model.get_models(project.id, models_filter=models_filter)
        assert isinstance(page, ResourceCollection)
        assert page.total_count == len(page.items)
        return _ids(page.items)

    # An empty `main` is not listed, so the three models are all there is.
    assert listed(None) == alphas | {beta.id}
    assert listed(ProjectModelsFilter(search="ALPHA")) == alphas
    assert listed(ProjectModelsFilter(source_apps=["rhino"])) == {alpha_one.id}
    assert listed(ProjectModelsFilter(only_with_versions=True)) == {alpha_one.id, beta.id}
    assert listed(ProjectModelsFilter(ids=[beta.id])) == {beta.id}
    assert listed(ProjectModelsFilter(exclude_ids=[beta.id])) == alphas
    assert listed(ProjectModelsFilter(contributors=[_user_id(first_client)])) == {
        alpha_one.id,
        beta.id,
    }
    # The filters combine.
    assert listed(ProjectModelsFilter(search="alpha", only_with_versions=True)) == {alpha_one.id}

    # The same list, one model a page, following the cursor.
    seen: list[str] = []
    cursor = None
    for _ in range(10):  # 3 pages are expected; 10 bounds a cursor that never ends
        page = first_client.model.get_models(project.id, models_limit=1, models_cursor=cursor)
        assert page.total_count == 3
        assert len(page.items) <= 1
        seen.extend(model.id for model in page.items)
        if page.cursor is None or not page.items:
            break
        assert page.cursor != cursor, "the cursor did not move"
        cursor = page.cursor
    else:
        pytest.fail("get_models(models_limit=1) never returned a null cursor")
    assert sorted(seen) == sorted(alphas | {beta.id})

    # The project query with its models takes the same filter.
    with_models = first_client.project.get_with_models(
        project.id, models_filter=ProjectModelsFilter(search="alpha/")
    )
    assert isinstance(with_models, ProjectWithModels)
    assert with_models.id == project.id
    assert with_models.name == project.name
    assert with_models.models.total_count == 2
    assert _ids(with_models.models.items) == alphas
    # Both applications that sent to the project are on record.
    assert {"Rhino7", "Revit"} <= set(with_models.source_apps), with_models.source_apps


def test_model_permissions(first_client: SpeckleClient, second_client: SpeckleClient) -> None:
    project = _create_project(first_client, ProjectVisibility.PUBLIC)
    model = _create_model(first_client, project.id, "permissions")

    owner = first_client.model.get_permissions(project.id, model.id)
    assert isinstance(owner, ModelPermissionChecks)
    _assert_authorized(owner.can_update)
    _assert_authorized(owner.can_delete)
    _assert_authorized(owner.can_create_version)

    # A public project is readable by anyone, but only members may change it.
    outsider = second_client.model.get_permissions(project.id, model.id)
    for check in (outsider.can_update, outsider.can_delete, outsider.can_create_version):
        assert check.authorized is False, check
        assert check.code == "ProjectNoAccess", check
        assert check.message


def test_can_create_personal_projects(first_client: SpeckleClient) -> None:
    _assert_authorized(first_client.active_user.can_create_personal_projects())


def test_project_invite_create_get_cancel(
    first_client: SpeckleClient,
    second_client: SpeckleClient,
    second_user: RegisteredUser,
) -> None:
    project = _create_project(first_client)
    invitee_id = _user_id(second_client)
    # Nothing is pending before the invite.
    assert second_client.project_invite.get(project.id, None) is None

    created = first_client.project_invite.create(
        project.id,
        ProjectInviteCreateInput(email=second_user.email, role=None, server_role=None, userId=None),
    )
    assert isinstance(created, ProjectWithTeam)
    assert created.id == project.id
    assert len(created.invited_team) == 1
    assert created.invited_team[0].role == "stream:contributor"

    invite = second_client.project_invite.get(project.id, None)
    assert isinstance(invite, PendingStreamCollaborator)
    assert invite.projectId == project.id
    assert invite.project_name == project.name
    assert invite.role == "stream:contributor"
    assert invite.invite_id == created.invited_team[0].invite_id
    # The addressee sees the token that answers the invite.
    assert invite.token
    assert invite.invited_by is not None and invite.invited_by.id == _user_id(first_client)
    # It is also among the invitee's pending invites.
    assert invite.invite_id in {i.invite_id for i in second_client.active_user.get_project_invites()}

    cancelled = first_client.project_invite.cancel(project.id, invite.invite_id)
    assert isinstance(cancelled, ProjectWithTeam)
    assert cancelled.invited_team == []
    assert second_client.project_invite.get(project.id, None) is None
    # Cancelling did not make the invitee a member.
    assert invitee_id not in {member.user.id for member in cancelled.team}


def test_workspaces_are_not_enabled(first_client: SpeckleClient) -> None:
    assert first_client.active_user.get_active_workspace() is None

    with pytest.raises(GraphQLException, match=WORKSPACES_DISABLED) as caught:
        first_client.active_user.get_workspaces()
    assert "WORKSPACES_MODULE_DISABLED_ERROR" in error_codes(caught.value), caught.value.errors

    with pytest.raises(GraphQLException, match=WORKSPACES_DISABLED) as caught:
        first_client.workspace.get("x")
    assert "WORKSPACES_MODULE_DISABLED_ERROR" in error_codes(caught.value), caught.value.errors


def test_version_of_an_unstored_object_is_refused(first_client: SpeckleClient) -> None:
    project = _create_project(first_client)
    model = _create_model(first_client, project.id, "refused")

    with pytest.raises(GraphQLException, match="Couldn't find commit object") as caught:
        first_client.version.create(
            CreateVersionInput(object_id=object_id(), model_id=model.id, project_id=project.id)
        )
    assert "COMMIT_CREATE_ERROR" in error_codes(caught.value), caught.value.errors
    assert first_client.version.get_versions(model.id, project.id).total_count == 0

    # An object stored in another project does not count either.
    elsewhere = _create_project(first_client)
    foreign = stored_object(first_client, elsewhere.id)
    with pytest.raises(GraphQLException, match="Couldn't find commit object"):
        first_client.version.create(
            CreateVersionInput(object_id=foreign, model_id=model.id, project_id=project.id)
        )

    # Once stored in the project, the same kind of call succeeds.
    root = stored_object(first_client, project.id)
    version = first_client.version.create(
        CreateVersionInput(object_id=root, model_id=model.id, project_id=project.id)
    )
    assert version.referenced_object == root
