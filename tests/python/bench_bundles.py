"""Bundle benchmark end to end, against a running strata (`deploy/dev up`); not a test.

    set -a; . .local/strata.env; set +a
    .local/venv/bin/python tests/python/bench_bundles.py

One large model, 200 meshes of about 1 MB each (random float vertices, random triangles;
"1 MB" is the mesh's binary size, 8 bytes a coordinate and 4 an index), sent and received two
ways:

1. The JSON rail: a `Collection` whose 200 `Mesh` elements are detached, through specklepy's
   `operations.send` / `receive` and `ServerTransport`. Both times are reported as a multiple
   of specklepy's own serialisation of the same tree (`operations.serialize` into a
   `MemoryTransport`), measured in the same run.
2. The bundle rail: a `BundleBuilder` with 200 objects of one mesh each, through
   `operations.send3` / `receive3` (files go straight to S3 through presigned URLs). send3 is
   reported as a multiple of building the same bundle (`builder.build()` into a temp dir) plus
   plain `requests.put`s of those files' bytes to the same S3 through URLs signed for an
   ingestion of our own (the floor); receive3 as a multiple of plain GETs of the send3
   version's files through the artifacts listing's URLs. The builders are filled before any
   clock starts (the SGEO encoding happens there, outside send3 too).

Beside every time: the server's CPU seconds meanwhile, and as a percentage of the wall time
(the server's CPU while idle, its pollers, is measured first for comparison). The server's pid
comes from `.local/strata.pid` (or `--pid`). send3 and receive3 are also broken down into
their steps (build, sign, PUTs, complete; download, read_bundle, mark received), timed by
wrapping specklepy's functions for the duration of the call. The issue's goal is printed
beside the figures: send3 within 1.5x of building the bundle plus the plain PUTs, and the
server's own CPU under 5% of the wall time.

`--meshes` (200) and `--mesh-bytes` (1,000,000) change the model's size.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import random
import shutil
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import requests
from specklepy.api import operations
from specklepy.api.client import SpeckleClient
from specklepy.api.inputs.model_ingestion_inputs import (
    ModelIngestionCancelledInput,
    ModelIngestionCreateInput,
    SourceDataInput,
)
from specklepy.api.inputs.model_inputs import CreateModelInput
from specklepy.bundle import BundleBuilder, Producer
from specklepy.bundle.upload import ArtifactPipeline
from specklepy.objects.geometry import Mesh
from specklepy.objects.models.collections.collection import Collection
from specklepy.transports.memory import MemoryTransport

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import cpu_seconds, json_round_trip, sign_up, timed  # noqa: E402
from strata_e2e import HTTP_TIMEOUT_SECONDS  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

# The module, not the `receive` function `specklepy.bundle` exports under the same name.
bundle_receive = importlib.import_module("specklepy.bundle.receive")

PRODUCER = Producer("strata-bench", "0.0.0")
UNITS = "m"
# SGEO bytes per vertex (3 x f64) plus per triangle (count + 3 indices, u32 each).
BYTES_PER_VERTEX_AND_TRIANGLE = 3 * 8 + 4 * 4
GOAL_RATIO = 1.5
GOAL_CPU_PERCENT = 5.0
TRANSFER_TIMEOUT_SECONDS = 600

SERVER_PID = 0


def server_cpu_seconds() -> float:
    """User + system CPU time the server has used so far."""
    return cpu_seconds(SERVER_PID)


def idle_cpu_percent(seconds: float = 3.0) -> float:
    """The server's CPU while nobody asks it anything (its pollers), as % of one core."""
    cpu = server_cpu_seconds()
    time.sleep(seconds)
    return 100 * (server_cpu_seconds() - cpu) / seconds


def cpu_note(cpu: float, wall: float) -> str:
    return f"server CPU {cpu:.2f} s = {100 * cpu / wall:.1f}%"


class Phases:
    """Wall time spent inside chosen functions while active (patched in, restored after)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def watching(self, *targets: tuple[object, str, str]):
        originals = []
        for owner, attribute, label in targets:
            original = getattr(owner, attribute)
            originals.append((owner, attribute, original))
            setattr(owner, attribute, self._wrap(original, label))
        try:
            yield self
        finally:
            for owner, attribute, original in reversed(originals):
                setattr(owner, attribute, original)

    def _wrap(self, function, label: str):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started
                self.calls[label] += 1

        return wrapper

    def summary(self, total: float) -> str:
        parts = []
        for label, seconds in self.seconds.items():
            calls = self.calls[label]
            times = f" x{calls}" if calls > 1 else ""
            parts.append(f"{label}{times} {seconds:.2f} s")
        parts.append(f"the rest {total - sum(self.seconds.values()):.2f} s")
        return ", ".join(parts)


# ── the model ────────────────────────────────────────────────────────────────


def random_mesh(vertex_count: int, rng: random.Random) -> Mesh:
    """`vertex_count` random vertices and as many random triangles over them."""
    vertices = [rng.uniform(-1000.0, 1000.0) for _ in range(3 * vertex_count)]
    corners = rng.choices(range(vertex_count), k=3 * vertex_count)
    faces = []
    for first in range(0, len(corners), 3):
        faces.append(3)
        faces.extend(corners[first : first + 3])
    return Mesh(vertices=vertices, faces=faces, units=UNITS)


def json_tree(meshes: list[Mesh]) -> Collection:
    return Collection(name="bench model", elements=list(meshes))


def filled_builder(meshes: list[Mesh]) -> BundleBuilder:
    builder = BundleBuilder(PRODUCER, UNITS)
    collection = builder.get_or_add_container_path(["bench model"])
    for index, mesh in enumerate(meshes):
        item = builder.get_or_add_object(f"mesh-{index}")
        item.collection = collection
        item.add_geometry(mesh)
    return builder


def total_bytes(paths) -> int:
    return sum(os.path.getsize(p) for p in paths)


# ── the REST rail by hand (the floors) ───────────────────────────────────────


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def reference_ingestion(client: SpeckleClient, project_id: str, model_id: str):
    """An ingestion of our own, as send3 creates it; returns its id and reserved version id."""
    ingestion = client.model_ingestion.create(
        ModelIngestionCreateInput(
            model_id=model_id,
            project_id=project_id,
            progress_message="bench: plain PUTs",
            source_data=SourceDataInput(
                source_application_slug=PRODUCER.slug,
                source_application_version=PRODUCER.version,
                file_name=None,
                file_size_bytes=None,
            ),
            max_idle_timeout_seconds=600,
        )
    )
    version_id = client.model_ingestion.get_reserved_version_id(project_id, ingestion.id)
    assert version_id, "the server reserved no version id"
    return ingestion.id, version_id


def sign(url: str, token: str, project_id: str, ingestion_id: str, names) -> dict:
    """`uploads/sign` for `names`; returns {name: presigned}."""
    signed = requests.post(
        f"{url}/api/v2/projects/{project_id}/modelingestion/{ingestion_id}/uploads/sign",
        json={"files": list(names)},
        headers=bearer(token),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    signed.raise_for_status()
    return signed.json()["uploads"]


def plain_puts(uploads: dict, bodies: dict[str, bytes]) -> int:
    """One plain `requests.put` per file, with the headers specklepy sends; returns the bytes
    sent."""
    sent = 0
    for name, body in bodies.items():
        presigned = uploads[name]
        headers = {
            "Content-Type": "application/octet-stream",
            **(presigned.get("additionalRequestHeaders") or {}),
        }
        response = requests.put(
            presigned["url"], data=body, headers=headers, timeout=TRANSFER_TIMEOUT_SECONDS
        )
        response.raise_for_status()
        assert response.headers.get("ETag"), f"no ETag for {name}"
        sent += len(body)
    return sent


def artifact_urls(url: str, token: str, project_id: str, model_id: str, version_id: str):
    listing = requests.get(
        f"{url}/api/v2/projects/{project_id}/models/{model_id}/versions/{version_id}/artifacts",
        headers=bearer(token),
        timeout=HTTP_TIMEOUT_SECONDS,
    )
    listing.raise_for_status()
    # receive3 skips the server's viewer files; so does the floor.
    return {f["name"]: f["url"] for f in listing.json()["files"] if ".viewer." not in f["name"]}


def plain_gets(urls: dict[str, str]) -> int:
    """One plain unauthenticated `requests.get` per file, streamed and discarded; returns the
    bytes read. A connection each: kept-alive connections to the dev S3 (s3s-fs) stall about
    40 ms on small answers after the first few, which is not what a floor should measure."""
    received = 0
    for address in urls.values():
        with requests.get(address, stream=True, timeout=TRANSFER_TIMEOUT_SECONDS) as got:
            got.raise_for_status()
            for chunk in got.iter_content(1 << 20):
                received += len(chunk)
    return received


# ── the two rails ────────────────────────────────────────────────────────────


def json_rail(client: SpeckleClient, project_id: str, meshes: list[Mesh]) -> None:
    tree = json_tree(meshes)
    memory = MemoryTransport()
    _, serialise, _ = timed(SERVER_PID, lambda: operations.serialize(tree, [memory]))
    json_bytes = sum(len(v) for v in memory.objects.values())
    print(
        f"JSON rail: serialise {serialise:.2f} s ({len(memory.objects)} objects, "
        f"{json_bytes / 1e6:.0f} MB of JSON)"
    )
    del memory
    trip = json_round_trip(SERVER_PID, client, project_id, tree)
    send, receive = trip.send_seconds, trip.receive_seconds
    print(
        f"  send    {send:7.2f} s = {send / serialise:5.2f}x serialise "
        f"({cpu_note(trip.send_cpu, send)})"
    )
    print(
        f"  receive {receive:7.2f} s = {receive / serialise:5.2f}x serialise "
        f"({cpu_note(trip.receive_cpu, receive)})"
    )


def bundle_rail(url: str, client: SpeckleClient, project_id: str, meshes: list[Mesh]) -> None:
    model_id = client.model.create(
        CreateModelInput(name="bundles", description=None, project_id=project_id)
    ).id
    token = client.account.token

    started = time.perf_counter()
    reference_builder = filled_builder(meshes)
    send_builder = filled_builder(meshes)
    filling = (time.perf_counter() - started) / 2
    print(
        f"bundle rail: filling a builder {filling:.2f} s (SGEO encoding; outside every clock)"
    )

    # Reference 1: the bundle build, into its own temp dir (after a tiny one, so that neither
    # clock pays for pyarrow's first use).
    shutil.rmtree(filled_builder(meshes[:1]).build().directory, ignore_errors=True)
    files, build, _ = timed(SERVER_PID, reference_builder.build)
    bundle_bytes = total_bytes(files.files)
    largest = max(files.files, key=os.path.getsize)
    print(
        f"  build   {build:7.2f} s ({len(files.files)} files, {bundle_bytes / 1e6:.1f} MB; "
        f"largest {os.path.basename(largest)[len(files.base_name) + 1 :]} "
        f"{os.path.getsize(largest) / 1e6:.1f} MB)"
    )

    # Reference 2: plain PUTs of the same files through URLs signed for our own ingestion.
    floor_ingestion, floor_version = reference_ingestion(client, project_id, model_id)
    renamed = files.rename_to(floor_version)
    uploads = sign(url, token, project_id, floor_ingestion, renamed.by_name)
    bodies = {name: Path(path).read_bytes() for name, path in renamed.by_name.items()}
    put_bytes, puts, puts_cpu = timed(SERVER_PID, lambda: plain_puts(uploads, bodies))
    del bodies
    print(
        f"  PUTs    {puts:7.2f} s ({put_bytes / puts / 1e6:.0f} MB/s; {cpu_note(puts_cpu, puts)})"
    )
    client.model_ingestion.fail_with_cancel(
        ModelIngestionCancelledInput(
            ingestion_id=floor_ingestion,
            project_id=project_id,
            cancellation_message="bench: the plain PUTs were only a reference",
        )
    )
    shutil.rmtree(renamed.directory, ignore_errors=True)

    floor = build + puts
    phases = Phases()
    with phases.watching(
        (BundleBuilder, "build", "build"),
        (ArtifactPipeline, "_sign", "sign"),
        (ArtifactPipeline, "_upload_file", "PUT"),
        (ArtifactPipeline, "_complete", "complete"),
    ):
        result, send3, send3_cpu = timed(
            SERVER_PID,
            lambda: operations.send3(client.account, project_id, model_id, send_builder),
        )
    assert result.object_count == len(meshes), result
    ratio = send3 / floor
    print(
        f"  send3   {send3:7.2f} s = {ratio:5.2f}x build + PUTs ({floor:.2f} s) "
        f"({cpu_note(send3_cpu, send3)})"
    )
    print(f"          {phases.summary(send3)}")

    # Reference 3: plain GETs of the send3 version's files.
    urls = artifact_urls(url, token, project_id, model_id, result.version_id)
    got_bytes, gets, gets_cpu = timed(SERVER_PID, lambda: plain_gets(urls))
    print(
        f"  GETs    {gets:7.2f} s ({len(urls)} files, {got_bytes / gets / 1e6:.0f} MB/s; "
        f"{cpu_note(gets_cpu, gets)})"
    )

    phases = Phases()
    with phases.watching(
        (bundle_receive, "download_bundle", "download"),
        (bundle_receive, "read_bundle", "read_bundle"),
        (bundle_receive, "_mark_received", "mark received"),
    ):
        model, receive3, receive3_cpu = timed(
            SERVER_PID,
            lambda: operations.receive3(client.account, project_id, model_id, result.version_id),
        )
    with model:
        assert len(model.objects) == len(meshes), len(model.objects)
    print(
        f"  receive3 {receive3:6.2f} s = {receive3 / gets:5.2f}x GETs "
        f"({cpu_note(receive3_cpu, receive3)})"
    )
    print(f"          {phases.summary(receive3)}")

    met = ratio <= GOAL_RATIO and 100 * send3_cpu / send3 < GOAL_CPU_PERCENT
    print(
        f"goal (the issue): send3 within {GOAL_RATIO}x of building the bundle plus the plain "
        f"PUTs, and the server's own CPU under {GOAL_CPU_PERCENT:.0f}% of the wall time: "
        f"{ratio:.2f}x, {100 * send3_cpu / send3:.1f}% -> {'met' if met else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", type=int, default=200)
    parser.add_argument("--mesh-bytes", type=int, default=1_000_000)
    parser.add_argument("--pid", type=int, default=None)
    args = parser.parse_args()

    global SERVER_PID
    bench = sign_up(args.pid)
    SERVER_PID = bench.pid
    url, pid, client, project = bench.url, bench.pid, bench.client, bench.project
    vertices = max(3, args.mesh_bytes // BYTES_PER_VERTEX_AND_TRIANGLE)
    rng = random.Random(20260901)
    started = time.perf_counter()
    meshes = [random_mesh(vertices, rng) for _ in range(args.meshes)]
    print(
        f"server {url} (pid {pid}); {args.meshes} meshes of {vertices} vertices and "
        f"{vertices} triangles ({vertices * BYTES_PER_VERTEX_AND_TRIANGLE / 1e6:.2f} MB each "
        f"as SGEO), made in {time.perf_counter() - started:.1f} s"
    )
    print(f"server CPU while idle: {idle_cpu_percent():.1f}% (over 3 s, before the run)")
    json_rail(client, project(), meshes)
    bundle_rail(url, client, project(), meshes)


if __name__ == "__main__":
    main()
