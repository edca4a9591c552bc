"""File import benchmark end to end, against a running strata (`deploy/dev up`); not a test.

    set -a; . .local/strata.env; set +a
    .local/venv/bin/python tests/python/bench_imports.py

Every IFC file in `--samples` (default /work/shared/samples/ifc: AC20-FZK-Haus.ifc, duplex.ifc,
IfcOpenHouse_IFC4.ifc; read in place, never copied into the repository) and one generated OBJ
of `--obj-mb` MB (default 50; a grid of cubes, one `o` per `--cubes-per-object` cubes, written
to a temp dir; 0 skips it) go through the import as specklepy drives it (`client.file_import`):
`generate_upload_url` -> `upload_file` (a PUT straight to S3) -> `start_file_ingestion` ->
`model_ingestion.get_ingestion` polled every `--poll` s until success -> `version.get`.

For each file, each run in a project and model of its own (no object is already stored):
- end to end: from asking for the upload URL to the version read back (seconds, MB/s);
- import: from calling `start_file_ingestion` to seeing `success` (the server-side part; the
  ingestion's own updatedAt - createdAt beside it, which the polling does not blur);
- the server's CPU seconds (user + system from /proc/<pid>/stat) over the end-to-end span;
- the server's resident memory: sampled from /proc every 10 ms, and its VmHWM when that rose
  during the run (then it is the exact peak). strata imports in-process (`strata all`), so the
  import worker's memory is the server's growth over its RSS before the run; both the growth
  and the whole process are given as multiples of the file size (the issue's target: the
  import worker's peak RSS under 10x the file size). The allocator keeps freed memory, so a
  run's growth is a lower bound once an earlier, larger import has raised the RSS (marked >=:
  the server's VmHWM did not rise during the run); the files go smallest first, the OBJ last,
  and the growth over the RSS at the bench's start is given too (an upper bound: it includes
  what earlier runs left). On a server that has imported larger files since it started, all
  growths are lower bounds: restart it first;
- objects: `totalChildrenCount` of the version's root (`GET /objects/:p/:id/single`), and
  triangles counted in the version's meshes (the whole version streamed back afterwards, off
  the clock; `--no-triangles` skips it).

Reference, measured in the same run on the same IFC files: `web-ifc` (npm, pinned in
tests/python/package.json, run with node by tests/python/webifc_reference.mjs): OpenModel +
StreamAllMeshes, fetching every placed geometry to count its triangles; parse + geometry
seconds (WASM start-up and reading the file not counted), one node process a run. The package
is installed with `npm ci` in .local/bench-webifc/ (ignored by git); if that fails the
reference is reported unavailable and the bench goes on. The OBJ has no reference.

IFC figures are medians of `--repeat` runs (3), peaks the largest; the OBJ runs once
(`--obj-repeat`). The server's pid comes from `.local/strata.pid` (or `--pid`). The issue's
targets are printed under the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
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
from bench_server import (  # noqa: E402
    RssSampler,
    cpu_seconds,
    private_project,
    server_pid,
    status_kib,
    stream_objects,
    timed,
)
from strata_e2e import authenticated_client, register_user, server_url  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
REFERENCE_DIR = REPO / ".local" / "bench-webifc"
DEFAULT_SAMPLES = Path("/work/shared/samples/ifc")

TARGET_E2E_FILE = "AC20-FZK-Haus.ifc"
TARGET_E2E_SECONDS = 2.0
TARGET_RSS_MULTIPLE = 10.0

TERMINAL = {
    ModelIngestionStatus.SUCCESS,
    ModelIngestionStatus.FAILED,
    ModelIngestionStatus.CANCELLED,
}

SERVER_PID = 0
START_RSS_KIB = 0  # the server's RSS when the bench started
MB = 1e6
MIB = 1024 * 1024


def server_cpu_seconds() -> float:
    """User + system CPU time the server has used so far."""
    return cpu_seconds(SERVER_PID)


# --- the generated OBJ ---------------------------------------------------------------------


@dataclass
class GeneratedObj:
    path: Path
    cubes: int
    objects: int
    triangles: int


def write_cube_grid(path: Path, megabytes: float, cubes_per_object: int) -> GeneratedObj:
    """A grid of unit cubes (8 vertices and 6 quads each, so 12 triangles once triangulated),
    one `o` every `cubes_per_object` cubes, until the file holds `megabytes` MB."""
    target = int(megabytes * MB)
    side = 64  # cubes along x and y; the grid grows in z
    cubes = 0
    objects = 0
    written = 0
    corners = [(x, y, z) for z in (0, 1) for x, y in ((0, 0), (1, 0), (1, 1), (0, 1))]
    quads = [(1, 4, 3, 2), (5, 6, 7, 8), (1, 2, 6, 5), (2, 3, 7, 6), (3, 4, 8, 7), (4, 1, 5, 8)]
    with path.open("w", encoding="ascii", newline="\n") as out:
        header = f"# strata bench_imports: a grid of cubes, {cubes_per_object} an object\n"
        out.write(header)
        written += len(header)
        while written < target:
            lines = []
            for _ in range(1000):
                if cubes % cubes_per_object == 0:
                    objects += 1
                    lines.append(f"o part_{objects}\n")
                x0 = (cubes % side) * 1.5
                y0 = (cubes // side % side) * 1.5
                z0 = (cubes // (side * side)) * 1.5
                size = 0.75 + (cubes % 7) * 0.03125
                for cx, cy, cz in corners:
                    lines.append(
                        f"v {x0 + cx * size:.4f} {y0 + cy * size:.4f} {z0 + cz * size:.4f}\n"
                    )
                base = cubes * 8
                for a, b, c, d in quads:
                    lines.append(f"f {base + a} {base + b} {base + c} {base + d}\n")
                cubes += 1
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk)
    return GeneratedObj(path=path, cubes=cubes, objects=objects, triangles=cubes * 12)


# --- the web-ifc reference -----------------------------------------------------------------


def prepare_reference() -> tuple[Path | None, str]:
    """Installs web-ifc as pinned in tests/python into .local/bench-webifc; returns the
    helper's path and a description, or None and why not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node or npm is not installed"
    REFERENCE_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "webifc_reference.mjs"):
        shutil.copyfile(HERE / name, REFERENCE_DIR / name)
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]["web-ifc"]
    installed = REFERENCE_DIR / "node_modules" / "web-ifc" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=REFERENCE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            return None, f"npm ci failed: {(result.stderr or result.stdout).strip()[-500:]}"
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    return REFERENCE_DIR / "webifc_reference.mjs", (
        f"web-ifc {pinned} with node {node_version.strip()}"
    )


def reference_run(helper: Path, path: Path) -> dict:
    result = subprocess.run(
        ["node", str(helper), str(path)], capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        raise RuntimeError(f"web-ifc failed on {path.name}: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- one import through strata -------------------------------------------------------------


@dataclass
class ImportRun:
    e2e: float
    upload: float
    import_: float
    stamped: float
    cpu: float
    rss_before_kib: int
    peak_kib: int
    exact_peak: bool
    objects: int
    triangles: int | None
    meshes: int | None


def count_mesh_triangles(url: str, token: str, project_id: str, root_id: str) -> tuple[int, int]:
    """Streams the version's objects back and counts triangles in its meshes (an n-gon is
    n - 2 triangles; the legacy sizes 0 and 1 mean a triangle and a quad)."""
    triangles = 0
    meshes = 0
    with stream_objects(url, token, project_id, root_id) as response:
        for line in response.iter_lines(chunk_size=1 << 20):
            if not line:
                continue
            _, _, body = line.partition(b"\t")
            if b'"faces"' not in body:
                continue
            obj = json.loads(body)
            faces = obj.get("faces")
            if not isinstance(faces, list) or "Mesh" not in str(obj.get("speckle_type", "")):
                continue
            meshes += 1
            i = 0
            while i < len(faces):
                n = faces[i]
                if n < 3:
                    n += 3
                triangles += n - 2
                i += n + 1
    return triangles, meshes


def import_once(
    url: str, token: str, client: SpeckleClient, path: Path, poll: float, triangles: bool
) -> ImportRun:
    project_id = private_project(client, "bench imports")
    model_id = client.model.create(
        CreateModelInput(name="uploads", description=None, project_id=project_id)
    ).id

    sampler = RssSampler(SERVER_PID)
    rss_before = sampler.rss_kib()
    hwm_before = status_kib(SERVER_PID, "VmHWM")
    sampler.start()
    cpu_before = server_cpu_seconds()
    started = time.perf_counter()

    upload = client.file_import.generate_upload_url(
        GenerateFileUploadUrlInput(project_id=project_id, file_name=path.name)
    )
    etag = client.file_import.upload_file(path, upload.url).etag
    uploaded = time.perf_counter()
    ingestion = client.file_import.start_file_ingestion(
        StartFileImportInput(
            project_id=project_id, model_id=model_id, file_id=upload.file_id, etag=etag
        )
    )
    while ingestion.status_data.status not in TERMINAL:
        time.sleep(poll)
        ingestion = client.model_ingestion.get_ingestion(project_id, ingestion.id)
    imported = time.perf_counter()
    if ingestion.status_data.status != ModelIngestionStatus.SUCCESS:
        sampler.stop()
        raise RuntimeError(
            f"the import of {path.name} ended {ingestion.status_data.status}: "
            f"{ingestion.status_data.progress_message}"
        )
    version = client.version.get(ingestion.status_data.version_id, project_id)
    visible = time.perf_counter()
    cpu = server_cpu_seconds() - cpu_before
    sampled_peak = sampler.stop()
    hwm_after = status_kib(SERVER_PID, "VmHWM")
    exact = hwm_after > hwm_before
    peak = max(sampled_peak, hwm_after) if exact else sampled_peak

    root_id = version.referenced_object
    single = requests.get(
        f"{url}/objects/{project_id}/{root_id}/single",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    single.raise_for_status()
    objects = int(single.json().get("totalChildrenCount", 0))
    counted, meshes = (None, None)
    if triangles:
        counted, meshes = count_mesh_triangles(url, token, project_id, root_id)
    return ImportRun(
        e2e=visible - started,
        upload=uploaded - started,
        import_=imported - uploaded,
        stamped=(ingestion.updated_at - ingestion.created_at).total_seconds(),
        cpu=cpu,
        rss_before_kib=rss_before,
        peak_kib=peak,
        exact_peak=exact,
        objects=objects,
        triangles=counted,
        meshes=meshes,
    )


# --- reporting -----------------------------------------------------------------------------


@dataclass
class FileResult:
    path: Path
    size: int
    runs: list[ImportRun]
    reference: list[dict] = field(default_factory=list)
    reference_error: str | None = None
    expected_triangles: int | None = None

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.runs)

    @property
    def peak_kib(self) -> int:
        return max(r.peak_kib for r in self.runs)

    @property
    def growth_kib(self) -> int:
        return max(r.peak_kib - r.rss_before_kib for r in self.runs)

    @property
    def lower_bound(self) -> str:
        """">=" when no run raised the server's VmHWM: the growth then undercounts."""
        return "" if any(r.exact_peak for r in self.runs) else ">="

    @property
    def reference_seconds(self) -> float | None:
        if not self.reference:
            return None
        return statistics.median(r["open_s"] + r["stream_s"] for r in self.reference)


def span(values: list[float]) -> str:
    if len(values) == 1:
        return ""
    return f" [{min(values):.2f}-{max(values):.2f}]"


def report(result: FileResult) -> None:
    size_mb = result.size / MB
    e2e = result.median("e2e")
    imp = result.median("import_")
    runs = len(result.runs)
    first = f"{result.path.name} ({size_mb:.2f} MB"
    first += f", median of {runs})" if runs > 1 else ")"
    ref = result.reference_seconds
    if ref is not None:
        parse = statistics.median(r["open_s"] for r in result.reference)
        geometry = statistics.median(r["stream_s"] for r in result.reference)
        ref_text = (
            f"web-ifc {ref:.3f} s (parse {parse:.3f} + geometry {geometry:.3f})"
            f" -> strata import / web-ifc {imp / ref:.2f}x, end to end / web-ifc {e2e / ref:.2f}x"
        )
    elif result.reference_error:
        ref_text = f"web-ifc unavailable ({result.reference_error})"
    else:
        ref_text = "no reference"
    print(
        f"{first}: end to end {e2e:.3f} s{span([r.e2e for r in result.runs])} "
        f"(upload {result.median('upload'):.3f} s), import {imp:.3f} s"
        f"{span([r.import_ for r in result.runs])} (server-stamped "
        f"{result.median('stamped'):.3f} s); {ref_text}"
    )
    before = statistics.median(r.rss_before_kib for r in result.runs)
    exact = all(r.exact_peak for r in result.runs)
    ref_rss = (
        f"; web-ifc process peak {max(r['peak_rss_kib'] for r in result.reference) / 1024:.0f} MiB"
        if result.reference
        else ""
    )
    print(
        f"    {size_mb / e2e:.2f} MB/s end to end, {size_mb / imp:.2f} MB/s import; server CPU "
        f"{result.median('cpu'):.2f} s; server peak RSS {result.peak_kib / 1024:.0f} MiB "
        f"({'VmHWM' if exact else 'sampled'}; {before / 1024:.0f} MiB before) = "
        f"{result.peak_kib * 1024 / result.size:.1f}x the file, growth {result.lower_bound}"
        f"{result.growth_kib / 1024:.1f} MiB = {result.growth_kib * 1024 / result.size:.1f}x "
        f"the file (over the RSS at the bench's start, {START_RSS_KIB / 1024:.0f} MiB: "
        f"{max(0, result.peak_kib - START_RSS_KIB) / 1024:.1f} MiB = "
        f"{max(0, result.peak_kib - START_RSS_KIB) * 1024 / result.size:.1f}x){ref_rss}"
    )
    run = result.runs[0]
    tri = []
    if run.triangles is not None:
        tri.append(f"triangles {run.triangles:,} in {run.meshes:,} meshes")
    if result.reference:
        r0 = result.reference[0]
        tri.append(
            f"web-ifc {int(r0['triangles']):,} triangles in {r0['geometries']:,} placed "
            f"geometries of {r0['meshes']:,} meshes"
        )
    if result.expected_triangles is not None:
        tri.append(f"generated {result.expected_triangles:,}")
    print(f"    objects {run.objects:,} (totalChildrenCount); " + "; ".join(tri))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--obj-mb", type=float, default=50.0, help="0 skips the OBJ")
    parser.add_argument("--cubes-per-object", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="runs per IFC file")
    parser.add_argument("--obj-repeat", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.025, help="status poll interval, s")
    parser.add_argument("--pid", type=int, default=None)
    parser.add_argument("--no-triangles", action="store_true")
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()

    global SERVER_PID
    url = server_url()
    pid = server_pid(args.pid)
    SERVER_PID = pid
    exe = os.readlink(f"/proc/{pid}/exe")
    global START_RSS_KIB
    START_RSS_KIB = status_kib(pid, "VmRSS")
    user = register_user(url, "bench")
    client = authenticated_client(url, user)

    samples = sorted(args.samples.glob("*.ifc"), key=lambda p: p.stat().st_size)
    if not samples and args.obj_mb <= 0:
        sys.exit(f"no .ifc files in {args.samples} and no OBJ (--obj-mb 0)")
    print(
        f"server {url} (pid {pid}, {exe}); specklepy file_import, status polled every "
        f"{args.poll * 1000:.0f} ms; {len(samples)} IFC files from {args.samples}"
    )
    helper, described = (None, "skipped (--no-reference)")
    if not args.no_reference:
        helper, described = prepare_reference()
    if helper is None:
        print(f"reference: web-ifc unavailable: {described}")
    else:
        print(
            f"reference: {described}: OpenModel + StreamAllMeshes with GetGeometry per placed "
            f"geometry, parse + geometry time (WASM start-up and file read not counted)"
        )
    print()

    results: list[FileResult] = []
    for path in samples:
        result = FileResult(path=path, size=path.stat().st_size, runs=[])
        if helper is not None:
            try:
                result.reference = [reference_run(helper, path) for _ in range(args.repeat)]
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
                result.reference_error = str(error)
        result.runs = [
            import_once(url, user.token, client, path, args.poll, not args.no_triangles)
            for _ in range(args.repeat)
        ]
        report(result)
        results.append(result)

    if args.obj_mb > 0:
        with tempfile.TemporaryDirectory(prefix="strata-bench-imports-") as scratch:
            made, seconds, _ = timed(
                SERVER_PID,
                lambda: write_cube_grid(
                    Path(scratch) / f"cubes-{args.obj_mb:g}mb.obj",
                    args.obj_mb,
                    args.cubes_per_object,
                ),
            )
            print(
                f"generated {made.path.name}: {made.cubes:,} cubes in {made.objects:,} objects "
                f"({made.triangles:,} triangles) in {seconds:.1f} s"
            )
            result = FileResult(
                path=made.path,
                size=made.path.stat().st_size,
                runs=[
                    import_once(
                        url, user.token, client, made.path, args.poll, not args.no_triangles
                    )
                    for _ in range(args.obj_repeat)
                ],
                expected_triangles=made.triangles,
            )
            report(result)
            results.append(result)

    print()
    fzk = next((r for r in results if r.path.name == TARGET_E2E_FILE), None)
    if fzk is None:
        print(
            f"target (the issue): FZK-Haus imported end to end (upload to version visible) in "
            f"under {TARGET_E2E_SECONDS:g} s: {TARGET_E2E_FILE} not among the samples"
        )
    else:
        e2e = fzk.median("e2e")
        print(
            f"target (the issue): FZK-Haus imported end to end (upload to version visible) in "
            f"under {TARGET_E2E_SECONDS:g} s: {e2e:.3f} s -> "
            f"{'met' if e2e < TARGET_E2E_SECONDS else 'NOT met'}"
        )
    multiples = [(r.path.name, r.size, r.growth_kib * 1024 / r.size) for r in results]
    bounds = {r.path.name: r.lower_bound for r in results}

    def verdict(chosen: list[tuple[str, int, float]]) -> str:
        if max(m for _, _, m in chosen) >= TARGET_RSS_MULTIPLE:
            return "NOT met"
        if any(bounds[name] for name, _, _ in chosen):
            return "undetermined (lower bounds: restart the server and run again)"
        return "met"

    large = [item for item in multiples if item[1] >= MB]
    verdict_text = verdict(multiples)
    if large and len(large) < len(multiples):
        verdict_text += f"; files of 1 MB and more: {verdict(large)}"
    print(
        f"target (the issue): the import worker's peak RSS under {TARGET_RSS_MULTIPLE:g}x the "
        f"file size (server RSS growth over its RSS before the run): "
        + ", ".join(f"{name} {bounds[name]}{m:.1f}x" for name, _, m in multiples)
        + f" -> {verdict_text}"
    )


if __name__ == "__main__":
    main()
