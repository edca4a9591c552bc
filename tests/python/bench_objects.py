"""Object benchmarks end to end, against a running strata (`deploy/dev up`); not a test.

    set -a; . .local/strata.env; set +a
    .local/venv/bin/python tests/python/bench_objects.py

1. specklepy sends and receives 100,001 small objects (about 150 bytes each, detached from one
   root) and 200 objects of 1 MB each through `ServerTransport`. Each time is reported as a
   multiple of specklepy's own serialisation of the same tree, measured in the same run, which
   cancels machine noise (the original, speckle-server 2.31.14, on this machine: 4.5x, 4.9x,
   54x, 14x).
2. Raw HTTP download of the 200 x 1 MB tree (`GET /objects/:p/:id`), in objects/s and MB/s.
3. The server's peak resident memory while 1 GB of objects is uploaded (gzip multipart parts,
   one at a time) and downloaded again, sampled from /proc every 10 ms (`--gigabytes` to
   change the size). The server's pid comes from `.local/strata.pid` (or `--pid`).
"""

from __future__ import annotations

import argparse
import gzip
import json
import secrets
import sys
import time
import warnings
from pathlib import Path

import requests
from specklepy.api import operations
from specklepy.api.client import SpeckleClient
from specklepy.objects import Base
from specklepy.transports.memory import MemoryTransport

sys.path.insert(0, str(Path(__file__).parent))
from bench_server import RssSampler, json_round_trip, sign_up, stream_objects, timed  # noqa: E402

warnings.filterwarnings("ignore", category=DeprecationWarning)


def small_tree(count: int) -> Base:
    root = Base()
    root.name = "small"
    root["@elements"] = []
    for i in range(count):
        child = Base()
        child.x = i + 0.5
        child.y = i * 3.25
        child.z = 0.125
        child.units = "m"
        child.label = f"point {i}"
        root["@elements"].append(child)
    return root


def large_tree(count: int, size: int) -> Base:
    root = Base()
    root.name = "large"
    root["@elements"] = []
    for _ in range(count):
        child = Base()
        # Random text: gzip cannot make the transfer trivially small.
        child.blob = secrets.token_hex(size // 2)
        root["@elements"].append(child)
    return root


SERVER_PID = 0


def specklepy_round_trip(client: SpeckleClient, project_id: str, label: str, tree: Base) -> str:
    _, serialise, _ = timed(SERVER_PID, lambda: operations.serialize(tree, [MemoryTransport()]))
    trip = json_round_trip(SERVER_PID, client, project_id, tree)
    send, receive = trip.send_seconds, trip.receive_seconds
    print(
        f"{label}: serialise {serialise:.2f} s; send {send:.2f} s = {send / serialise:.2f}x "
        f"(server CPU {trip.send_cpu:.2f} s); receive {receive:.2f} s = "
        f"{receive / serialise:.2f}x (server CPU {trip.receive_cpu:.2f} s)"
    )
    return trip.root_id


def stream_download(url: str, token: str, project_id: str, root_id: str) -> tuple[int, float]:
    """Downloads a tree as `id\tjson` lines without keeping it; returns bytes and seconds."""
    started = time.perf_counter()
    received = 0
    with stream_objects(url, token, project_id, root_id) as response:
        for chunk in response.iter_content(1 << 20):
            received += len(chunk)
    return received, time.perf_counter() - started


def raw_download(url: str, token: str, project_id: str, root_id: str, objects: int) -> None:
    received, elapsed = stream_download(url, token, project_id, root_id)
    print(
        f"raw download of {objects} objects: {objects / elapsed:.0f} objects/s, "
        f"{received / elapsed / 1e6:.1f} MB/s ({received / 1e6:.0f} MB in {elapsed:.2f} s)"
    )


def gigabyte_upload_and_download(
    url: str, token: str, project_id: str, pid: int, gigabytes: float
) -> None:
    object_bytes = 1_000_000
    per_part = 10
    total = int(gigabytes * 1e9 / object_bytes)
    ids = [secrets.token_hex(16) for _ in range(total)]
    auth = {"Authorization": f"Bearer {token}"}
    sampler = RssSampler(pid)
    before = sampler.rss_kib()
    sampler.start()
    started = time.perf_counter()
    sent = 0
    for first in range(0, total, per_part):
        batch = [
            {"id": i, "speckle_type": "Base", "blob": secrets.token_hex(object_bytes // 2)}
            for i in ids[first : first + per_part]
        ]
        raw = json.dumps(batch).encode()
        sent += len(raw)
        response = requests.post(
            f"{url}/objects/{project_id}",
            headers=auth,
            files={"batch": ("batch", gzip.compress(raw, 1), "application/gzip")},
            timeout=600,
        )
        response.raise_for_status()
    root_id = secrets.token_hex(16)
    root = {
        "id": root_id,
        "speckle_type": "Base",
        "__closure": {i: 1 for i in ids},
    }
    requests.post(
        f"{url}/objects/{project_id}",
        headers=auth,
        files={"batch": ("batch", json.dumps([root]).encode(), "application/json")},
        timeout=600,
    ).raise_for_status()
    upload = time.perf_counter() - started
    upload_peak = sampler.stop()

    sampler = RssSampler(pid)
    sampler.start()
    received, download = stream_download(url, token, project_id, root_id)
    download_peak = sampler.stop()
    print(
        f"{sent / 1e9:.2f} GB upload in {upload:.1f} s ({sent / upload / 1e6:.0f} MB/s): "
        f"server RSS {before / 1024:.0f} MB before, peak {upload_peak / 1024:.0f} MB"
    )
    print(
        f"{received / 1e9:.2f} GB download in {download:.1f} s "
        f"({received / download / 1e6:.0f} MB/s): server RSS peak {download_peak / 1024:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--pid", type=int, default=None)
    parser.add_argument(
        "--memory-only", action="store_true", help="only the 1 GB upload and download (part 3)"
    )
    args = parser.parse_args()

    global SERVER_PID
    bench = sign_up(args.pid)
    SERVER_PID = bench.pid
    url, pid, client, project = bench.url, bench.pid, bench.client, bench.project
    print(f"server {url} (pid {pid}); specklepy JSON transport")
    if args.memory_only:
        gigabyte_upload_and_download(url, bench.user.token, project(), pid, args.gigabytes)
        return
    specklepy_round_trip(client, project(), f"{args.small + 1} small objects", small_tree(args.small))
    large_project = project()
    large_root = specklepy_round_trip(
        client, large_project, f"{args.large} x 1 MB objects", large_tree(args.large, 1_000_000)
    )
    raw_download(url, bench.user.token, large_project, large_root, args.large + 1)
    gigabyte_upload_and_download(url, bench.user.token, project(), pid, args.gigabytes)


if __name__ == "__main__":
    main()
