"""Sending and receiving objects with specklepy's own operations and ServerTransport."""

from __future__ import annotations

import pytest
import requests
from specklepy.api import operations
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ProjectVisibility
from specklepy.api.inputs.project_inputs import ProjectCreateInput
from specklepy.logging.exceptions import SpeckleException
from specklepy.objects import Base
from specklepy.transports.memory import MemoryTransport
from specklepy.transports.server import ServerTransport

from strata_e2e import unique_name


def make_tree(children: int) -> Base:
    root = Base()
    root.name = "root"
    root["@children"] = []
    for i in range(children):
        child = Base()
        child.index = i
        child.label = f"child {i}"
        root["@children"].append(child)
    return root


def new_project(client: SpeckleClient, visibility: ProjectVisibility) -> str:
    project = client.project.create(
        ProjectCreateInput(name=unique_name("objects"), description=None, visibility=visibility)
    )
    return project.id


def test_send_then_receive_round_trips_ids_and_values(first_client: SpeckleClient) -> None:
    project_id = new_project(first_client, ProjectVisibility.PRIVATE)
    tree = make_tree(120)
    sent_id = operations.send(tree, [ServerTransport(project_id, client=first_client)], use_default_cache=False)
    assert len(sent_id) == 32

    received = operations.receive(
        sent_id, ServerTransport(project_id, client=first_client), MemoryTransport()
    )
    assert received.id == sent_id
    assert received.name == "root"
    assert received.totalChildrenCount == 120
    children = received["@children"]
    assert [c.index for c in children] == list(range(120))
    assert children[7].label == "child 7"
    assert children[7].id == tree["@children"][7].get_id()

    # Sending the same tree again stores nothing new and gives the same id.
    again = operations.send(tree, [ServerTransport(project_id, client=first_client)], use_default_cache=False)
    assert again == sent_id


def test_objects_of_a_private_project_stay_private(
    first_client: SpeckleClient, second_client: SpeckleClient
) -> None:
    project_id = new_project(first_client, ProjectVisibility.PRIVATE)
    sent_id = operations.send(make_tree(3), [ServerTransport(project_id, client=first_client)], use_default_cache=False)
    # The object routes answer a non-member 401. specklepy reports the download's status in a
    # SpeckleException, and lets the upload's `/api/diff` status escape as requests' HTTPError;
    # matching the status keeps a connection error from passing for a refusal.
    with pytest.raises(SpeckleException, match=r"HTTP error 401"):
        operations.receive(sent_id, ServerTransport(project_id, client=second_client), MemoryTransport())
    with pytest.raises(requests.HTTPError, match=r"^401 Client Error"):
        operations.send(make_tree(2), [ServerTransport(project_id, client=second_client)], use_default_cache=False)
