"""What the benchmarks (bench_*.py) share: the strata server they measure (its pid, its CPU time
and memory read from /proc), a signed-up bench user with private projects to work in, and the
object routes as specklepy and the viewers drive them. Not a benchmark itself.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from specklepy.api import operations
from specklepy.api.client import SpeckleClient
from specklepy.api.enums import ProjectVisibility
from specklepy.api.inputs.project_inputs import ProjectCreateInput
from specklepy.objects import Base
from specklepy.transports.memory import MemoryTransport
from specklepy.transports.server import ServerTransport

from strata_e2e import (
    RegisteredUser,
    authenticated_client,
    register_user,
    server_url,
    unique_name,
)

REPO = Path(__file__).resolve().parents[2]

T = TypeVar("T")


def server_pid(pid: int | None) -> int:
    """`pid` (a bench's `--pid`) or else the pid `deploy/dev up` wrote to .local/strata.pid."""
    if pid is None:
        pid = int((REPO / ".local" / "strata.pid").read_text().split()[0])
    return pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has used so far (fields 14 and 15 of its stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(pid: int, run: Callable[[], T]) -> tuple[T, float, float]:
    """Runs `run`; returns its result, the wall time, and process `pid`'s CPU time meanwhile."""
    cpu = cpu_seconds(pid)
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started, cpu_seconds(pid) - cpu


def status_kib(pid: int, key: str) -> int:
    """A KiB figure (`VmRSS`, `VmHWM`, ...) of process `pid`'s /proc status; 0 if absent."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    """Samples a process's resident set size until stopped; keeps the largest."""

    def __init__(self, pid: int, every_seconds: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every_seconds
        self.peak_kib = 0
        self.stopped = threading.Event()

    def rss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS")

    def run(self) -> None:
        while not self.stopped.is_set():
            self.peak_kib = max(self.peak_kib, self.rss_kib())
            time.sleep(self.every)

    def stop(self) -> int:
        """Stops sampling, with a last sample; the largest RSS seen, in KiB."""
        self.stopped.set()
        self.join()
        self.peak_kib = max(self.peak_kib, self.rss_kib())
        return self.peak_kib


def private_project(client: SpeckleClient, name: str) -> str:
    """Creates a private project named `name` plus a unique suffix; its id."""
    return client.project.create(
        ProjectCreateInput(
            name=unique_name(name), description=None, visibility=ProjectVisibility.PRIVATE
        )
    ).id


@dataclass(frozen=True)
class Bench:
    """The server a bench measures and the user it signed up there."""

    url: str
    pid: int
    user: RegisteredUser
    client: SpeckleClient

    def project(self) -> str:
        """A new private project of the bench user's; its id."""
        return private_project(self.client, "bench")


def sign_up(pid: int | None) -> Bench:
    """Signs up a bench user on the server at `server_url()`, whose pid is `server_pid(pid)`."""
    url = server_url()
    pid = server_pid(pid)
    user = register_user(url, "bench")
    return Bench(url, pid, user, authenticated_client(url, user))


@dataclass(frozen=True)
class RoundTrip:
    """A tree sent and received again through specklepy's JSON `ServerTransport`."""

    root_id: str
    send_seconds: float
    send_cpu: float  # the server's CPU seconds during the send
    receive_seconds: float
    receive_cpu: float


def json_round_trip(pid: int, client: SpeckleClient, project_id: str, tree: Base) -> RoundTrip:
    """Sends `tree` to `project_id` with `operations.send` (no local cache) and receives it back
    into memory, timing both and process `pid`'s CPU meanwhile."""
    sent, send, send_cpu = timed(
        pid,
        lambda: operations.send(
            tree, [ServerTransport(project_id, client=client)], use_default_cache=False
        ),
    )
    received, receive, receive_cpu = timed(
        pid,
        lambda: operations.receive(
            sent, ServerTransport(project_id, client=client), MemoryTransport()
        ),
    )
    assert received.id == sent, "the received root is not the sent one"
    return RoundTrip(sent, send, send_cpu, receive, receive_cpu)


def stream_objects(url: str, token: str, project_id: str, root_id: str) -> requests.Response:
    """`GET /objects/:project/:root` as `id\tjson` lines (status checked), streamed: use it as
    a context manager and read it with `iter_lines` or `iter_content`."""
    response = requests.get(
        f"{url}/objects/{project_id}/{root_id}",
        headers={"Authorization": f"Bearer {token}", "Accept": "text/plain"},
        stream=True,
        timeout=600,
    )
    try:
        response.raise_for_status()
    except requests.HTTPError:
        response.close()
        raise
    return response
