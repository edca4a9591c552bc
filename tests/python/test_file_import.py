"""File import as specklepy 2026.9.1 drives it (`client.file_import`): an upload URL, the file
PUT straight to S3, `startFileIngestion`, then the ingestion's status until the version exists.
The importer runs in strata's worker; these files are written by the test itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ModelIngestionStatus, ProjectVisibility
from specklepy.api.inputs.file_import_inputs import (
    GenerateFileUploadUrlInput,
    StartFileImportInput,
)
from specklepy.api.inputs.model_inputs import CreateModelInput
from specklepy.api.inputs.project_inputs import ProjectCreateInput
from specklepy.api.models.current import ModelIngestion

from strata_e2e import unique_name

FINISHED_WITHIN_SECONDS = 30.0
TERMINAL = {
    ModelIngestionStatus.SUCCESS,
    ModelIngestionStatus.FAILED,
    ModelIngestionStatus.CANCELLED,
}

TRIANGLE_STL = """solid triangle
facet normal 0 0 1
 outer loop
  vertex 0 0 0
  vertex 1 0 0
  vertex 0 1 0
 endloop
endfacet
endsolid triangle
"""


def _upload(client: SpeckleClient, tmp_path: Path, name: str, text: str) -> tuple[str, str, str, str]:
    """A new project and model, and `text` uploaded as `name`: project, model, file id, ETag."""
    project = client.project.create(
        ProjectCreateInput(
            name=unique_name("imports"), description=None, visibility=ProjectVisibility.PRIVATE
        )
    )
    model = client.model.create(CreateModelInput(name="uploads", description=None, project_id=project.id))
    path = tmp_path / name
    path.write_text(text)
    upload = client.file_import.generate_upload_url(
        GenerateFileUploadUrlInput(project_id=project.id, file_name=name)
    )
    etag = client.file_import.upload_file(path, upload.url).etag
    assert etag.startswith('"'), etag  # the ETag travels verbatim, quotes included
    return project.id, model.id, upload.file_id, etag


def _finished(client: SpeckleClient, project_id: str, ingestion_id: str) -> ModelIngestion:
    deadline = time.monotonic() + FINISHED_WITHIN_SECONDS
    while True:
        ingestion = client.model_ingestion.get_ingestion(project_id, ingestion_id)
        if ingestion.status_data.status in TERMINAL:
            return ingestion
        assert time.monotonic() < deadline, f"import still {ingestion.status_data.status}"
        time.sleep(0.1)


def _import(client: SpeckleClient, tmp_path: Path, name: str, text: str) -> tuple[str, ModelIngestion]:
    project_id, model_id, file_id, etag = _upload(client, tmp_path, name, text)
    started = client.file_import.start_file_ingestion(
        StartFileImportInput(project_id=project_id, model_id=model_id, file_id=file_id, etag=etag)
    )
    assert started.model_id == model_id
    return project_id, _finished(client, project_id, started.id)


def test_an_stl_file_becomes_a_version(first_client: SpeckleClient, tmp_path: Path) -> None:
    project_id, done = _import(first_client, tmp_path, "triangle.stl", TRIANGLE_STL)
    assert done.status_data.status == ModelIngestionStatus.SUCCESS, done
    version = first_client.version.get(done.status_data.version_id, project_id)
    assert version.message == "File upload: triangle.stl"
    assert version.source_application == "stl"


def test_a_broken_file_fails_with_a_reason(first_client: SpeckleClient, tmp_path: Path) -> None:
    _, done = _import(first_client, tmp_path, "broken.stl", "solid x\nfacet normal 0 0")
    assert done.status_data.status == ModelIngestionStatus.FAILED, done


def test_the_2_31_flow_and_the_model_uploads_list(
    first_client: SpeckleClient, tmp_path: Path
) -> None:
    project_id, model_id, file_id, etag = _upload(first_client, tmp_path, "legacy.stl", TRIANGLE_STL)
    started = first_client.file_import.start_file_import(
        StartFileImportInput(project_id=project_id, model_id=model_id, file_id=file_id, etag=etag)
    )
    assert started.id == file_id
    assert started.converted_status in (0, 1, 2), started
    deadline = time.monotonic() + FINISHED_WITHIN_SECONDS
    while True:
        jobs = first_client.file_import.get_model_file_import_jobs(
            project_id=project_id, model_id=model_id
        )
        assert jobs.total_count == 1
        job = jobs.items[0]
        if job.converted_status >= 2:
            break
        assert time.monotonic() < deadline, f"import still {job.converted_status}"
        time.sleep(0.1)
    assert job.converted_status == 2, job
    version = first_client.version.get(job.converted_version_id, project_id)
    assert version.message == "File upload: legacy.stl"
