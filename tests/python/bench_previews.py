"""Preview renderer benchmark end to end, against a running strata (`deploy/dev up`); not a test.

    set -a; . .local/strata.env; set +a
    .local/venv/bin/python tests/python/bench_previews.py [--quick]

Every created version enqueues a render job; the worker inside `strata all` drives one warm
headless Chromium (through chromedriver) to draw the version's root object in
`@speckle/viewer` at 24 angles, stores the PNGs and records the preview, which GraphQL shows
as `project { version { preview { status attempts error renderDurationMs updatedAt } } }`.
Previews are per (project, root object): every version here has a root of its own.

1. Cold: the first render this script triggers (20 boxes). The browser starts with the first
   job after the server starts, so this is cold only if no browser of this server was running
   before it (processes whose cmdline holds `strata-preview-<server pid>-`, the renderer's
   profile directory); otherwise it is reported as warm. Nothing is killed or restarted.
2. Warm, small: `--small-versions` (10) versions of 20 boxes (`Objects.Geometry.Mesh` with a
   `renderMaterial`, detached under a `Collection` root with `__closure`, as
   tests/tests/previews.rs `boxes()`), one after another: p50 / p99 of `renderDurationMs`
   (the worker's own clock: reading the object, the browser, the sprite, storing) and of the
   end-to-end time from sending `versionMutations.create` to seeing DONE (polled every
   `--poll` s; the server-stamped `preview.updatedAt - version.createdAt` beside it, which the
   polling does not blur).
3. Warm, large: the biggest IFC in `--samples` (/work/shared/samples/ifc) imported through the
   file import (`generateUploadUrl` -> PUT -> `startFileIngestion`, as bench_imports.py), each
   run in a project of its own, `--large-versions` (3) times; the same figures, from the
   import's version (its `createdAt`) to DONE, and the model's object count.
4. Throughput: `--burst` (10) small versions created at once (concurrently, their objects
   uploaded before the clock): previews per minute from the first create to the last DONE,
   and whether that keeps up with 10 versions a minute.
5. The browser's peak resident memory: every 200 ms, the sum of VmRSS of this server's
   browser processes (chromedriver children of the server, processes whose cmdline holds
   `strata-preview-<pid>-`, and every process in chromedriver's process group, which its
   Chromium processes inherit); the peak over the run and per phase. Browsers of other
   processes (a test suite's) are counted apart and left out.

Reference, measured in the same run: how long the same server takes to hand the small
model's objects to a client (`GET /objects/:p/:root`, the closure in one download, which is
what the viewer page loads first), median over the warm roots; the large model's likewise.
The original Speckle preview service's figure is not measurable here and is printed as a
labelled constant from the issue.

The server's pid comes from `.local/strata.pid` (or `--pid`); its build (release or debug)
from /proc/<pid>/exe, and whether PostgreSQL is durable from `SHOW fsync` /
`synchronous_commit` (psql on `STRATA_DATABASE_URL`). `--quick` shrinks every size to prove
the script end to end (not for figures).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ModelIngestionStatus
from specklepy.api.inputs.file_import_inputs import (
    GenerateFileUploadUrlInput,
    StartFileImportInput,
)
from specklepy.api.inputs.model_inputs import CreateModelInput

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import cpu_seconds, private_project, server_pid  # noqa: E402
from strata_e2e import (  # noqa: E402
    HTTP_TIMEOUT_SECONDS,
    authenticated_client,
    register_user,
    server_url,
    wait_until_ready,
)

warnings.filterwarnings("ignore", category=DeprecationWarning)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SAMPLES = Path("/work/shared/samples/ifc")

PROFILE_MARK = "strata-preview-"
SAMPLE_EVERY_SECONDS = 0.2
GOAL_PER_MINUTE = 10.0
ORIGINAL_LINE = "original (not measured here): ~17 s for 20 objects, from the issue"
TERMINAL = {"DONE", "EMPTY", "FAILED"}
INGESTION_TERMINAL = {
    ModelIngestionStatus.SUCCESS,
    ModelIngestionStatus.FAILED,
    ModelIngestionStatus.CANCELLED,
}
WIDTH, HEIGHT, ANGLES = 700, 400, 24

SERVER_PID = 0
MIB = 1024 * 1024

PREVIEW_FIELDS = "status attempts error renderDurationMs updatedAt"


# ── the server and its machine ───────────────────────────────────────────────


def server_cpu_seconds() -> float:
    """User + system CPU time the server has used so far."""
    return cpu_seconds(SERVER_PID)


def server_build(pid: int) -> str:
    """`release` or `debug` from the path of the server's executable, and the path."""
    exe = os.readlink(f"/proc/{pid}/exe")
    parts = Path(exe.removesuffix(" (deleted)")).parts
    kind = "release" if "release" in parts else "debug" if "debug" in parts else "unknown build"
    note = " (the binary was replaced since it started)" if exe.endswith(" (deleted)") else ""
    return f"{kind} build, {exe}{note}"


def env_file_value(name: str) -> str | None:
    """`name` from the environment, else from `.local/strata.env`."""
    if os.environ.get(name):
        return os.environ[name]
    path = REPO / ".local" / "strata.env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name:
                return value.strip().strip("'\"")
    return None


def postgres_durability() -> str:
    """What PostgreSQL says about fsync, synchronous_commit and full_page_writes."""
    database_url = env_file_value("STRATA_DATABASE_URL")
    if not database_url:
        return "unknown (no STRATA_DATABASE_URL)"
    settings = {}
    for name in ("fsync", "synchronous_commit", "full_page_writes"):
        try:
            shown = subprocess.run(
                ["psql", "-XAtc", f"SHOW {name}", database_url],
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unknown (psql: {error})"
        if shown.returncode != 0:
            return f"unknown (psql: {shown.stderr.strip()[:200]})"
        settings[name] = shown.stdout.strip()
    durable = settings["fsync"] == "on" and settings["synchronous_commit"] != "off"
    listed = ", ".join(f"{k}={v}" for k, v in settings.items())
    return f"{'durable' if durable else 'NOT durable'} ({listed})"


def read_proc(pid: str, name: str) -> str | None:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


@dataclass
class Proc:
    pid: int
    ppid: int
    pgid: int
    cmdline: str  # NULs as spaces
    rss_kib: int
    cpu_ticks: int
    start: int  # start time in ticks since boot (tells a reused pid apart)


def processes() -> list[Proc]:
    """Every process /proc shows, with what the sampler needs."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = read_proc(name, "stat")
        if stat is None:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        cmdline = (read_proc(name, "cmdline") or "").replace("\0", " ").strip()
        rss = 0
        for line in (read_proc(name, "status") or "").splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
        found.append(
            Proc(
                pid=int(name),
                ppid=int(fields[1]),
                pgid=int(fields[2]),
                cmdline=cmdline,
                rss_kib=rss,
                cpu_ticks=int(fields[11]) + int(fields[12]),
                start=int(fields[19]),
            )
        )
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size (shared pages split among their sharers), 0 if unreadable."""
    for line in (read_proc(str(pid), "smaps_rollup") or "").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def is_chromedriver(proc: Proc) -> bool:
    return (
        os.path.basename(proc.cmdline.split(" ", 1)[0]) == "chromedriver" if proc.cmdline else False
    )


def browser_processes(all_procs: list[Proc]) -> tuple[list[Proc], list[Proc]]:
    """This server's browser processes, and the other preview browsers' (a test suite's)."""
    own_mark = f"{PROFILE_MARK}{SERVER_PID}-"
    groups = {p.pgid for p in all_procs if is_chromedriver(p) and p.ppid == SERVER_PID}
    own, foreign = [], []
    for p in all_procs:
        if p.pid == SERVER_PID:
            continue
        if (
            own_mark in p.cmdline
            or p.pgid in groups
            or (is_chromedriver(p) and p.ppid == SERVER_PID)
        ):
            own.append(p)
        elif PROFILE_MARK in p.cmdline or is_chromedriver(p):
            foreign.append(p)
    return own, foreign


class BrowserSampler(threading.Thread):
    """Every 200 ms: the summed VmRSS of the server's browser processes (peak overall and per
    phase), their CPU time, and the largest number of other preview browsers seen."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.peak_kib = 0
        self.peak_processes = 0
        self.peak_pss_kib = 0
        self.phase = "before"
        self.phase_peaks: dict[str, int] = {}
        self.cpu_ticks = 0  # the browser's CPU since the sampler started
        self.seen: dict[tuple[int, int], int] = {}  # (pid, start) -> ticks last seen
        self.foreign_max = 0
        self.samples = 0

    def sample(self) -> None:
        own, foreign = browser_processes(processes())
        total = sum(p.rss_kib for p in own)
        pss = sum(pss_kib(p.pid) for p in own)
        with self.lock:
            self.peak_pss_kib = max(self.peak_pss_kib, pss)
            first = self.samples == 0
            self.samples += 1
            if total > self.peak_kib:
                self.peak_kib = total
                self.peak_processes = len(own)
            self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), total)
            for p in own:
                key = (p.pid, p.start)
                before = self.seen.get(key)
                # A process born after the sampler started counts from zero; at the first
                # sample, what every process had already used is not this run's.
                if before is None:
                    before = p.cpu_ticks if first else 0
                self.cpu_ticks += max(0, p.cpu_ticks - before)
                self.seen[key] = p.cpu_ticks
            self.foreign_max = max(self.foreign_max, len(foreign))

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    def cpu_seconds(self) -> float:
        with self.lock:
            return self.cpu_ticks / os.sysconf("SC_CLK_TCK")

    def run(self) -> None:
        while not self.stopped.is_set():
            started = time.monotonic()
            self.sample()
            self.stopped.wait(max(0.0, SAMPLE_EVERY_SECONDS - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopped.set()
        self.join()
        self.sample()


# ── the API ──────────────────────────────────────────────────────────────────


class Api:
    """GraphQL and REST calls with the user's token (one keep-alive session per thread)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.local = threading.local()

    @property
    def http(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            self.local.session = session
        return session

    def gql(self, query: str, variables: dict) -> dict:
        answer = self.http.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        answer.raise_for_status()
        body = answer.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {json.dumps(body['errors'])[:1000]}")
        return body["data"]

    def upload(self, project_id: str, objects: list[dict]) -> None:
        """`POST /objects/:p`, one multipart part of a JSON array, as the Rust test sends."""
        body = json.dumps(objects).encode()
        answer = self.http.post(
            f"{self.url}/objects/{project_id}",
            files={"batch-0": ("batch-0", body, "application/json")},
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        if answer.status_code != 201:
            raise RuntimeError(f"object upload answered {answer.status_code}: {answer.text[:300]}")

    def create_version(self, project_id: str, model_id: str, object_id: str) -> dict:
        return self.gql(
            "mutation($p: String!, $m: String!, $o: String!) { versionMutations { create("
            'input: {projectId: $p, modelId: $m, objectId: $o, sourceApplication: "bench"}) '
            "{ id createdAt referencedObject } } }",
            {"p": project_id, "m": model_id, "o": object_id},
        )["versionMutations"]["create"]

    def version(self, project_id: str, version_id: str) -> dict:
        return self.gql(
            "query($p: String!, $v: String!) { project(id: $p) { version(id: $v) { id "
            f"createdAt referencedObject preview {{ {PREVIEW_FIELDS} }} }} }} }}",
            {"p": project_id, "v": version_id},
        )["project"]["version"]

    def previews(self, project_id: str, version_ids: list[str]) -> dict[str, dict]:
        """Every version's preview in one request (aliases)."""
        parts = " ".join(
            f'v{i}: version(id: "{v}") {{ preview {{ {PREVIEW_FIELDS} }} }}'
            for i, v in enumerate(version_ids)
        )
        data = self.gql(
            f"query($p: String!) {{ project(id: $p) {{ {parts} }} }}", {"p": project_id}
        )
        return {v: data["project"][f"v{i}"]["preview"] for i, v in enumerate(version_ids)}

    def download_seconds(self, project_id: str, object_id: str) -> tuple[float, int, int]:
        """`GET /objects/:p/:id` read to the end: seconds, objects (lines), bytes."""
        started = time.perf_counter()
        lines = 0
        size = 0
        with self.http.get(
            f"{self.url}/objects/{project_id}/{object_id}",
            headers={"Accept": "text/plain"},
            stream=True,
            timeout=600,
        ) as answer:
            answer.raise_for_status()
            for line in answer.iter_lines(chunk_size=1 << 20):
                if line:
                    lines += 1
                    size += len(line)
        return time.perf_counter() - started, lines, size

    def total_children(self, project_id: str, object_id: str) -> int:
        single = self.http.get(
            f"{self.url}/objects/{project_id}/{object_id}/single", timeout=HTTP_TIMEOUT_SECONDS
        )
        single.raise_for_status()
        return int(single.json().get("totalChildrenCount", 0))

    def check_images(self, project_id: str, version_id: str) -> str | None:
        """None when `/preview/:p/commits/:v` is a stored 700x400 PNG and `/all` the 24-frame
        sprite; otherwise what is wrong."""
        problems = []
        for suffix, size in (("", (WIDTH, HEIGHT)), ("/all", (WIDTH * ANGLES, HEIGHT))):
            got = self.http.get(
                f"{self.url}/preview/{project_id}/commits/{version_id}{suffix}",
                timeout=HTTP_TIMEOUT_SECONDS,
            )
            body = got.content
            cache = got.headers.get("cache-control", "")
            dims = (
                (int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big"))
                if body[:8] == b"\x89PNG\r\n\x1a\n"
                else None
            )
            if got.status_code != 200 or dims != size or not cache.startswith("private"):
                error = got.headers.get("x-preview-error", "")
                problems.append(
                    f"{suffix or '/'}: HTTP {got.status_code}, {dims}, cache-control {cache!r}"
                    + (f", X-Preview-Error {error!r}" if error else "")
                )
        return "; ".join(problems) or None


# ── the small model ──────────────────────────────────────────────────────────


def boxes(n: int) -> tuple[str, list[dict]]:
    """`n` red boxes in a row under a collection (tests/tests/previews.rs `boxes()`); every
    id is new, so every call is a root of its own."""
    objects = []
    closure = {}
    elements = []
    for i in range(n):
        oid = uuid.uuid4().hex
        x = i * 1.5
        x0, x1, y0, y1, z0, z1 = x, x + 1.0, 0.0, 1.0, 0.0, 1.0 + (i % 3)
        vertices = [
            *(x0, y0, z0), *(x1, y0, z0), *(x1, y1, z0), *(x0, y1, z0),
            *(x0, y0, z1), *(x1, y0, z1), *(x1, y1, z1), *(x0, y1, z1),
        ]  # fmt: skip
        faces = [
            4, 0, 3, 2, 1,  4, 4, 5, 6, 7,  4, 0, 1, 5, 4,
            4, 1, 2, 6, 5,  4, 2, 3, 7, 6,  4, 3, 0, 4, 7,
        ]  # fmt: skip
        objects.append(
            {
                "id": oid,
                "speckle_type": "Objects.Geometry.Mesh",
                "units": "m",
                "vertices": vertices,
                "faces": faces,
                "renderMaterial": {
                    "speckle_type": "Objects.Other.RenderMaterial",
                    "name": "red",
                    "diffuse": -65536,
                    "opacity": 1.0,
                    "metalness": 0.0,
                    "roughness": 1.0,
                },
                "totalChildrenCount": 0,
            }
        )
        closure[oid] = 1
        elements.append({"referencedId": oid, "speckle_type": "reference"})
    root = uuid.uuid4().hex
    objects.append(
        {
            "id": root,
            "speckle_type": "Speckle.Core.Models.Collection",
            "name": "boxes",
            "collectionType": "layer",
            "elements": elements,
            "__closure": closure,
            "totalChildrenCount": n,
        }
    )
    return root, objects


# ── one render, followed ─────────────────────────────────────────────────────


def stamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass
class Render:
    label: str
    project_id: str
    version_id: str
    root: str
    status: str = "QUEUED"
    attempts: int = 0
    error: str | None = None
    render_ms: int | None = None
    wall: float | None = None  # from sending the create (or seeing the import) to DONE seen
    stamped: float | None = None  # preview.updatedAt - version.createdAt (server clocks)
    images: str | None = None  # what is wrong with the served images, if anything
    objects: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "DONE"

    def settle(self, preview: dict, created_at: str | None, seen: float) -> None:
        self.status = preview["status"]
        self.attempts = preview["attempts"]
        self.error = preview["error"]
        self.render_ms = preview["renderDurationMs"]
        updated, created = stamp(preview["updatedAt"]), stamp(created_at)
        if updated and created:
            self.stamped = (updated - created).total_seconds()
        self.wall = seen


def follow(
    api: Api, render: Render, created_at: str, started: float, poll: float, limit: float
) -> Render:
    """Polls the version's preview until it settles (or `limit` s pass)."""
    deadline = time.perf_counter() + limit
    while True:
        preview = api.version(render.project_id, render.version_id)["preview"]
        now = time.perf_counter()
        render.status = preview["status"]
        if preview["status"] in TERMINAL:
            render.settle(preview, created_at, now - started)
            return render
        if now > deadline:
            render.attempts, render.error = preview["attempts"], preview["error"]
            render.status = f"{preview['status']} (gave up after {limit:.0f} s)"
            return render
        time.sleep(poll)


def small_render(
    api: Api, project_id: str, model_id: str, label: str, boxes_n: int, poll: float, limit: float
) -> Render:
    root, objects = boxes(boxes_n)
    api.upload(project_id, objects)
    started = time.perf_counter()
    created = api.create_version(project_id, model_id, root)
    render = Render(label, project_id, created["id"], root)
    follow(api, render, created["createdAt"], started, poll, limit)
    if render.ok:
        render.images = api.check_images(project_id, render.version_id)
    return render


def describe(render: Render) -> str:
    if not render.ok:
        return (
            f"{render.label}: {render.status} after {render.attempts} attempt(s)"
            + (f": {render.error}" if render.error else "")
            + (f" (wall {render.wall:.2f} s)" if render.wall is not None else "")
        )
    text = (
        f"{render.label}: DONE, render {render.render_ms / 1000:.2f} s, version -> DONE "
        f"{render.wall:.2f} s seen ({render.stamped:.2f} s server-stamped)"
    )
    if render.attempts != 1:
        text += f", {render.attempts} attempts"
    if render.images:
        text += f"; IMAGES WRONG: {render.images}"
    return text


# ── figures ──────────────────────────────────────────────────────────────────


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def spread(values: list[float], unit: str = "s") -> str:
    if not values:
        return "no successful renders"
    p99 = percentile(values, 0.99)
    note = " (= max: n < 100)" if len(values) < 100 else ""
    return (
        f"p50 {statistics.median(values):.2f} {unit}, p99 {p99:.2f} {unit}{note}, "
        f"min {min(values):.2f}, n={len(values)}"
    )


def summarize(title: str, renders: list[Render]) -> None:
    done = [r for r in renders if r.ok]
    print(f"  {title}: {len(done)} of {len(renders)} DONE")
    if not done:
        return
    print(f"    renderDurationMs           {spread([r.render_ms / 1000 for r in done])}")
    print(f"    version create -> DONE seen {spread([r.wall for r in done])}")
    print(f"    server-stamped (updatedAt - createdAt) {spread([r.stamped for r in done])}")
    waits = [r.stamped - r.render_ms / 1000 for r in done]
    print(
        f"    outside the render (projection, job pick-up, recording): median "
        f"{statistics.median(waits):.2f} s (server-stamped minus renderDurationMs)"
    )


# ── the phases ───────────────────────────────────────────────────────────────


@dataclass
class Run:
    api: Api
    client: SpeckleClient
    poll: float
    limit: float
    boxes: int
    sampler: BrowserSampler
    failures: list[Render] = field(default_factory=list)
    first_was_cold: bool = True

    def project(self, label: str) -> tuple[str, str]:
        project_id = private_project(self.client, f"bench previews {label}")
        model_id = self.client.model.create(
            CreateModelInput(name=label, description=None, project_id=project_id)
        ).id
        return project_id, model_id

    def note(self, render: Render) -> Render:
        if not render.ok or render.images:
            self.failures.append(render)
        print(f"    {describe(render)}", flush=True)
        return render


def cold(run: Run, project_id: str, model_id: str) -> Render:
    run.sampler.set_phase("first")
    own, foreign = browser_processes(processes())
    run.first_was_cold = not own
    if own:
        state = (
            f"WARM, not cold: this server's browser was already running ({len(own)} processes, "
            f"{sum(p.rss_kib for p in own) / 1024:.0f} MiB) before the first render; restart "
            f"the server for a cold figure"
        )
    else:
        state = "cold: no browser of this server was running before it"
    if foreign:
        state += f" ({len(foreign)} other preview-browser processes on the machine, not counted)"
    print(f"1. first render of this run ({run.boxes} boxes): {state}")
    render = run.note(
        small_render(run.api, project_id, model_id, "first", run.boxes, run.poll, run.limit)
    )
    return render


def warm_small(run: Run, project_id: str, model_id: str, count: int) -> list[Render]:
    run.sampler.set_phase("warm small")
    print(f"2. warm, small ({run.boxes} boxes), {count} versions one after another:")
    cpu = server_cpu_seconds()
    browser_cpu = run.sampler.cpu_seconds()
    started = time.perf_counter()
    renders = [
        run.note(
            small_render(run.api, project_id, model_id, f"#{i + 1}", run.boxes, run.poll, run.limit)
        )
        for i in range(count)
    ]
    wall = time.perf_counter() - started
    summarize("warm small", renders)
    server_cpu = server_cpu_seconds() - cpu
    browser_cpu = run.sampler.cpu_seconds() - browser_cpu
    print(
        f"    CPU over the phase ({wall:.1f} s, polling and image checks included): server "
        f"{server_cpu:.1f} s ({server_cpu / count:.2f} s a render), browser {browser_cpu:.1f} s "
        f"({browser_cpu / count:.2f} s a render)"
    )
    return renders


def reference_small(run: Run, renders: list[Render]) -> float | None:
    """Median time to download a small root's closure (every warm root once, after a first
    download off the count)."""
    roots = [r for r in renders if r.ok]
    if not roots:
        return None
    run.api.download_seconds(roots[0].project_id, roots[0].root)
    timings = [run.api.download_seconds(r.project_id, r.root) for r in roots]
    seconds = statistics.median(t for t, _, _ in timings)
    _, lines, size = timings[0]
    print(
        f"   reference: GET /objects/:p/:root of a small model ({lines} objects, {size / 1e3:.1f}"
        f" kB of JSON): median {seconds * 1000:.1f} ms over {len(timings)} roots"
    )
    return seconds


def burst(run: Run, count: int) -> tuple[float | None, list[Render]]:
    run.sampler.set_phase("burst")
    project_id, model_id = run.project("burst")
    prepared = []
    for _ in range(count):
        root, objects = boxes(run.boxes)
        run.api.upload(project_id, objects)
        prepared.append(root)
    print(f"4. throughput: {count} small versions created at once (objects uploaded first):")
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=count) as pool:
        created = list(
            pool.map(lambda root: run.api.create_version(project_id, model_id, root), prepared)
        )
    created_in = time.perf_counter() - started
    renders = {
        c["id"]: Render(f"burst {i + 1}", project_id, c["id"], c["referencedObject"])
        for i, c in enumerate(created)
    }
    stamps = {c["id"]: c["createdAt"] for c in created}
    pending = set(renders)
    deadline = started + run.limit * count
    while pending and time.perf_counter() < deadline:
        time.sleep(max(run.poll, 0.2))
        seen = run.api.previews(project_id, sorted(pending))
        now = time.perf_counter()
        for version_id, preview in seen.items():
            if preview["status"] in TERMINAL:
                renders[version_id].settle(preview, stamps[version_id], now - started)
                pending.discard(version_id)
            else:
                renders[version_id].status = preview["status"]
    for version_id in pending:
        renders[version_id].status += " (gave up)"
    ordered = sorted(renders.values(), key=lambda r: r.wall if r.wall is not None else 1e9)
    for render in ordered:
        if render.ok:
            render.images = run.api.check_images(project_id, render.version_id)
        if not render.ok or render.images:
            run.note(render)
    done = [r for r in ordered if r.ok]
    if not done:
        print("    no preview of the burst was DONE")
        return None, ordered
    last = max(r.wall for r in done)
    per_minute = 60 * len(done) / last
    first = min(r.wall for r in done)
    stamped_last = max(r.stamped for r in done)
    keeps_up = per_minute >= GOAL_PER_MINUTE and len(done) == count
    print(
        f"    {len(done)} of {count} DONE; creates took {created_in:.2f} s; first DONE after "
        f"{first:.2f} s, last after {last:.2f} s seen ({stamped_last:.2f} s server-stamped "
        f"from its own version's createdAt)"
    )
    print(
        f"    -> {per_minute:.1f} previews/minute (first create to last DONE); keeps up with "
        f"{GOAL_PER_MINUTE:g} versions/minute: {'yes' if keeps_up else 'NO'}"
    )
    print(
        "    (renderDurationMs in a burst includes waiting for the one browser: "
        f"{', '.join(f'{r.render_ms / 1000:.1f}' for r in done)} s)"
    )
    return per_minute, ordered


def large(run: Run, path: Path, count: int, ingestion_poll: float) -> list[Render]:
    run.sampler.set_phase("large")
    print(
        f"3. warm, large: {path.name} ({path.stat().st_size / 1e6:.2f} MB) imported "
        f"{count} times, each in a project of its own:"
    )
    renders = []
    for i in range(count):
        project_id, model_id = run.project("large")
        client = run.client
        started = time.perf_counter()
        upload = client.file_import.generate_upload_url(
            GenerateFileUploadUrlInput(project_id=project_id, file_name=path.name)
        )
        etag = client.file_import.upload_file(path, upload.url).etag
        ingestion = client.file_import.start_file_ingestion(
            StartFileImportInput(
                project_id=project_id, model_id=model_id, file_id=upload.file_id, etag=etag
            )
        )
        while ingestion.status_data.status not in INGESTION_TERMINAL:
            if time.perf_counter() - started > run.limit:
                break
            time.sleep(ingestion_poll)
            ingestion = client.model_ingestion.get_ingestion(project_id, ingestion.id)
        imported = time.perf_counter()
        if ingestion.status_data.status != ModelIngestionStatus.SUCCESS:
            render = Render(f"import {i + 1}", project_id, "-", "-")
            render.status = f"import {ingestion.status_data.status}"
            render.error = ingestion.status_data.progress_message
            renders.append(run.note(render))
            continue
        version_id = ingestion.status_data.version_id
        version = run.api.version(project_id, version_id)
        render = Render(f"import {i + 1}", project_id, version_id, version["referencedObject"])
        follow(run.api, render, version["createdAt"], imported, run.poll, run.limit)
        if render.ok:
            render.images = run.api.check_images(project_id, version_id)
        render.objects = run.api.total_children(project_id, render.root)
        run.note(render)
        print(
            f"      import {imported - started:.2f} s (upload to ingestion success seen); "
            f"'seen' above counts from there, server-stamped from the version's createdAt"
        )
        renders.append(render)
    done = [r for r in renders if r.ok]
    if done:
        print(
            f"  the model: {done[0].objects:,} objects (totalChildrenCount of the version's root)"
        )
    summarize("warm large", renders)
    if done:
        timings = [run.api.download_seconds(r.project_id, r.root) for r in done]
        seconds, lines, size = statistics.median(t for t, _, _ in timings), *timings[0][1:]
        print(
            f"   reference: GET /objects/:p/:root of the large model ({lines:,} objects, "
            f"{size / 1e6:.1f} MB of JSON): median {seconds:.2f} s over {len(timings)}"
        )
    return renders


# ── main ─────────────────────────────────────────────────────────────────────


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the script")
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--small-versions", type=int, default=None, help="10; --quick 3")
    parser.add_argument("--burst", type=int, default=None, help="10; --quick 3")
    parser.add_argument("--large-versions", type=int, default=None, help="3; --quick 1")
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--poll", type=float, default=0.1, help="preview status poll, s")
    parser.add_argument("--limit", type=float, default=900.0, help="longest wait per render, s")
    parser.add_argument("--ready-seconds", type=float, default=600.0)
    parser.add_argument("--pid", type=int, default=None)
    args = parser.parse_args()
    small_n = args.small_versions or (3 if args.quick else 10)
    burst_n = args.burst or (3 if args.quick else 10)
    large_n = args.large_versions if args.large_versions is not None else (1 if args.quick else 3)

    global SERVER_PID
    url = server_url()
    wait_until_ready(url, args.ready_seconds)
    pid = server_pid(args.pid)
    SERVER_PID = pid
    bench_started = time.perf_counter()
    print(f"server {url} (pid {pid}, {server_build(pid)})")
    print(f"PostgreSQL: {postgres_durability()}")
    samples = sorted(args.samples.glob("*.ifc"), key=lambda p: p.stat().st_size)
    biggest = samples[-1] if samples else None
    print(
        f"sizes{' (--quick: not for figures)' if args.quick else ''}: {args.boxes} boxes a small "
        f"model, {small_n} warm small versions, burst of {burst_n}, {large_n} large imports "
        f"({biggest.name if biggest else f'no .ifc in {args.samples}'}); preview polled every "
        f"{args.poll * 1000:.0f} ms; browser RSS sampled every "
        f"{SAMPLE_EVERY_SECONDS * 1000:.0f} ms"
    )
    print()

    user = register_user(url, "bench")
    client = authenticated_client(url, user)
    api = Api(url, user.token)
    sampler = BrowserSampler()
    sampler.sample()  # the state before the first render (and the CPU baseline)
    before_kib = sampler.peak_kib
    sampler.peak_kib = sampler.peak_processes = sampler.peak_pss_kib = 0
    sampler.phase_peaks.clear()
    sampler.start()
    run = Run(api, client, args.poll, args.limit, args.boxes, sampler)

    project_id, model_id = run.project("small")
    first = cold(run, project_id, model_id)
    warm = warm_small(run, project_id, model_id, small_n)
    small_reference = reference_small(run, warm)
    large_renders: list[Render] = []
    if biggest is not None and large_n > 0:
        large_renders = large(run, biggest, large_n, 0.1)
    else:
        print("3. warm, large: skipped (no IFC sample or --large-versions 0)")
    per_minute, _ = burst(run, burst_n)
    sampler.stop()

    print()
    print("summary")
    done = [r for r in warm if r.ok]
    if first.ok:
        print(
            f"  first render of the run ({'cold' if run.first_was_cold else 'WARM: browser was up'}):"
            f" version -> DONE {first.wall:.2f} s seen ({first.stamped:.2f} s server-stamped), "
            f"render {first.render_ms / 1000:.2f} s"
        )
    else:
        print(f"  first render of the run: {first.status}")
    if done:
        p50 = statistics.median(r.render_ms / 1000 for r in done)
        e2e = statistics.median(r.wall for r in done)
        print(
            f"  warm small ({args.boxes} boxes): render p50 {p50:.2f} s, p99 "
            f"{percentile([r.render_ms / 1000 for r in done], 0.99):.2f} s; version -> DONE "
            f"p50 {e2e:.2f} s, p99 {percentile([r.wall for r in done], 0.99):.2f} s"
        )
        if small_reference:
            print(
                f"    beside: the same server serves that model's objects (GET /objects) in "
                f"{small_reference * 1000:.1f} ms: render p50 = {p50 / small_reference:.0f}x, "
                f"version -> DONE p50 = {e2e / small_reference:.0f}x that"
            )
        print(f"    {ORIGINAL_LINE}")
    large_done = [r for r in large_renders if r.ok]
    if large_done:
        print(
            f"  warm large ({large_done[0].objects:,} objects): render p50 "
            f"{statistics.median(r.render_ms / 1000 for r in large_done):.2f} s, p99 "
            f"{percentile([r.render_ms / 1000 for r in large_done], 0.99):.2f} s; version -> "
            f"DONE (server-stamped) p50 {statistics.median(r.stamped for r in large_done):.2f} s"
        )
    if per_minute is not None:
        print(
            f"  throughput: {per_minute:.1f} previews/minute for a burst of {burst_n}; keeps up "
            f"with {GOAL_PER_MINUTE:g}/minute: {'yes' if per_minute >= GOAL_PER_MINUTE else 'NO'}"
        )
    phases = ", ".join(f"{k} {v / 1024:.0f}" for k, v in sampler.phase_peaks.items())
    print(
        f"  browser peak RSS: {sampler.peak_kib / 1024:.0f} MiB (sum of VmRSS of "
        f"{sampler.peak_processes} processes at the peak; per phase, MiB: {phases}; "
        f"{before_kib / 1024:.0f} MiB before the first render); the same processes' PSS "
        f"(shared pages counted once) peaked at {sampler.peak_pss_kib / 1024:.0f} MiB"
    )
    if sampler.foreign_max:
        print(
            f"    other preview browsers on the machine (not this server's, not counted): up to "
            f"{sampler.foreign_max} processes"
        )
    if run.failures:
        print(f"  PROBLEMS ({len(run.failures)}):")
        for render in run.failures:
            print(f"    {render.project_id}/{render.version_id}: {describe(render)}")
    print(f"  the bench took {time.perf_counter() - bench_started:.0f} s")


if __name__ == "__main__":
    main()
