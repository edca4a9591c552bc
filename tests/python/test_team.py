"""Project roles: who may read a private project, and how owners grant and revoke access."""

from __future__ import annotations

import pytest
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ProjectVisibility
from specklepy.api.inputs.project_inputs import (
    ProjectCreateInput,
    ProjectUpdateInput,
    ProjectUpdateRoleInput,
)
from specklepy.api.models import Project, ProjectWithTeam
from specklepy.logging.exceptions import GraphQLException

from strata_e2e import error_codes, unique_name, user_projects


def _create_project(client: SpeckleClient, visibility: ProjectVisibility) -> Project:
    return client.project.create(
        ProjectCreateInput(
            name=unique_name("team project"),
            description="shared in the strata e2e suite",
            visibility=visibility,
        )
    )


def _user_id(client: SpeckleClient) -> str:
    me = client.active_user.get()
    assert me is not None
    return me.id


def _assert_forbidden(client: SpeckleClient, project_id: str) -> None:
    with pytest.raises(GraphQLException) as caught:
        client.project.get(project_id)
    assert "FORBIDDEN" in error_codes(caught.value), caught.value.errors


def _team_roles(project: ProjectWithTeam) -> dict[str, str]:
    roles = {member.user.id: member.role for member in project.team}
    # `ProjectCollaborator.id` is the member's user id, as in the original.
    assert {member.id for member in project.team} == set(roles)
    return roles


def test_private_project_is_forbidden_to_a_non_member(
    first_client: SpeckleClient, second_client: SpeckleClient
) -> None:
    project = _create_project(first_client, ProjectVisibility.PRIVATE)

    _assert_forbidden(second_client, project.id)
    assert project.id not in {p.id for p in user_projects(second_client)}
    # The owner still reads it.
    assert first_client.project.get(project.id).role == "stream:owner"


def test_public_project_is_readable_by_a_non_member(
    first_client: SpeckleClient, second_client: SpeckleClient
) -> None:
    project = _create_project(first_client, ProjectVisibility.PUBLIC)

    seen = second_client.project.get(project.id)

    assert seen.id == project.id
    assert seen.name == project.name
    assert seen.role is None
    # Readable is not the same as being a member.
    assert project.id not in {p.id for p in user_projects(second_client)}


def test_owner_grants_and_revokes_a_role(
    first_client: SpeckleClient, second_client: SpeckleClient
) -> None:
    owner_id = _user_id(first_client)
    member_id = _user_id(second_client)
    project = _create_project(first_client, ProjectVisibility.PRIVATE)
    _assert_forbidden(second_client, project.id)

    granted = first_client.project.update_role(
        ProjectUpdateRoleInput(user_id=member_id, project_id=project.id, role="stream:contributor")
    )

    assert isinstance(granted, ProjectWithTeam)
    assert granted.id == project.id
    assert _team_roles(granted) == {
        owner_id: "stream:owner",
        member_id: "stream:contributor",
    }
    assert granted.invited_team == []

    seen = second_client.project.get(project.id)
    assert seen.id == project.id
    assert seen.name == project.name
    assert seen.role == "stream:contributor"
    assert project.id in {p.id for p in user_projects(second_client)}

    revoked = first_client.project.update_role(
        ProjectUpdateRoleInput(user_id=member_id, project_id=project.id, role=None)
    )

    assert _team_roles(revoked) == {owner_id: "stream:owner"}
    _assert_forbidden(second_client, project.id)
    assert project.id not in {p.id for p in user_projects(second_client)}


def test_reviewer_reads_but_cannot_update(
    first_client: SpeckleClient, second_client: SpeckleClient
) -> None:
    member_id = _user_id(second_client)
    project = _create_project(first_client, ProjectVisibility.PRIVATE)
    first_client.project.update_role(
        ProjectUpdateRoleInput(user_id=member_id, project_id=project.id, role="stream:reviewer")
    )

    assert second_client.project.get(project.id).role == "stream:reviewer"

    with pytest.raises(GraphQLException) as caught:
        second_client.project.update(
            ProjectUpdateInput(id=project.id, name=unique_name("taken over"))
        )
    assert "FORBIDDEN" in error_codes(caught.value), caught.value.errors

    assert first_client.project.get(project.id).name == project.name


def test_non_member_cannot_grant_itself_a_role(
    first_client: SpeckleClient, second_client: SpeckleClient
) -> None:
    intruder_id = _user_id(second_client)
    project = _create_project(first_client, ProjectVisibility.PRIVATE)

    with pytest.raises(GraphQLException) as caught:
        second_client.project.update_role(
            ProjectUpdateRoleInput(user_id=intruder_id, project_id=project.id, role="stream:owner")
        )
    assert "FORBIDDEN" in error_codes(caught.value), caught.value.errors

    _assert_forbidden(second_client, project.id)
    team = first_client.project.get_with_team(project.id)
    assert intruder_id not in _team_roles(team)
