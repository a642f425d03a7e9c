"""The node's side of a case run as a Ray task: the sandbox provider of this node's engine, and a relay.

`run_on_node` is what the task runs, in a Ray worker process on a node that offers the
`docker` resource: it says where it landed, records a retry in the case's run when the
worker before it died, and calls `run_case` with a provider for this node's Docker
engine. `Relay` is the CaseWatch there: events go to the eval's mailbox actor in
batches (a model answer is not worth a round trip of its own), and a pause asked for
at the mailbox is passed to the run's control. Imported only where Ray is installed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
from typing import Any

import ray

from macrohard.config import SandboxSettings, Settings
from macrohard.errors import SandboxError
from macrohard.eval.executor import CaseJob, ModelFactory, note_retry, run_case
from macrohard.eval.results import ERROR, CaseResult
from macrohard.sandbox.docker import DockerSandboxProvider, docker_client
from macrohard.sandbox.image import image_exists
from macrohard.transcript.log import Event

FLUSH_S = 0.25  # how often a node sends its cases' events and asks whether to pause
LARGEST_VALUE = 32_000  # event data values longer than this (as JSON) stay on the node: the live view needs none

_providers: dict[str, DockerSandboxProvider] = {}
_providers_lock = threading.Lock()


def node_name() -> str:
    """This node as the live view shows it: the host, and Ray's node id (several nodes may share a host)."""
    return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:6]}"


def provider_for(sandbox: SandboxSettings) -> DockerSandboxProvider:
    """One provider per sandbox setting in this worker process, on this node's engine (DOCKER_HOST, or the local one)."""
    key = sandbox.model_dump_json()
    with _providers_lock:
        if key not in _providers:
            client = docker_client()
            if not image_exists(client, sandbox.image):
                raise SandboxError(f"the sandbox image {sandbox.image} is not on node {node_name()}'s Docker engine",
                                   "build it there with `macrohard sandbox build` before the eval")
            _providers[key] = DockerSandboxProvider(sandbox, client)
        return _providers[key]


def _slim(event: Event) -> dict[str, Any]:
    data = {k: v for k, v in event.data.items() if len(json.dumps(v, default=str)) <= LARGEST_VALUE}
    return event.model_copy(update={"data": data}).model_dump(mode="json")


class Relay:
    """A CaseWatch on the node, sending what the caller's watch wants through the mailbox actor."""

    def __init__(self, mailbox: Any, name: str) -> None:
        self.mailbox = mailbox
        self.name = name
        self._pending: list[tuple[str, str, Any]] = []
        self._controls: list[Any] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"relay-{name}", daemon=True)

    def __enter__(self) -> Relay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        with contextlib.suppress(ray.exceptions.RayError):
            self._flush(wait=True)  # the last events are in the mailbox before the result is

    def send(self, kind: str, value: Any) -> None:
        with self._lock:
            self._pending.append((kind, self.name, value))

    def _flush(self, wait: bool = False) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            sent = self.mailbox.put.remote(batch)  # calls from one caller run in order: no need to wait on each
            if wait:
                ray.get(sent, timeout=30)

    def _loop(self) -> None:
        while not self._done.wait(FLUSH_S):
            self._flush()
            try:
                reason = ray.get(self.mailbox.pause_reason.remote(), timeout=10)
            except ray.exceptions.RayError:
                continue  # the caller is gone or slow: the run goes on, as it would without a live view
            if reason:
                with self._lock:
                    controls = list(self._controls)
                for control in controls:
                    control.request_pause(reason)

    # -- CaseWatch ----------------------------------------------------------

    def starting(self, job: CaseJob) -> bool:
        return True

    def event(self, name: str, event: Event) -> None:
        self.send("event", _slim(event))

    def control(self, name: str, control: Any) -> None:
        with self._lock:
            self._controls.append(control)

    def placed(self, name: str, node: str) -> None:
        self.send("placed", node)

    def finished(self, result: CaseResult) -> None:
        pass


def run_on_node(job: CaseJob, mailbox: Any, model_factory: ModelFactory | None, retry: dict[str, Any] | None) -> CaseResult:
    """The Ray task: one case, run here on this node's Docker engine; its run folder on the shared workspaces."""
    node = node_name()
    with Relay(mailbox, job.case.name) as relay:
        relay.placed(job.case.name, node)
        eval_folder = job.scoring.parent.parent
        if not eval_folder.is_dir():
            return CaseResult(name=job.case.name, status=ERROR, run_id=job.run_id, node=node, reason=(
                f"the eval's folder {eval_folder} is not on node {node}: the workspaces folder must be on storage "
                "every node mounts at the same path"))
        retries = 0
        if retry is not None:
            retries = int(retry["attempt"])
            if not note_retry(job, node=node, **retry) and not (job.run_dir() / "run.json").is_file():
                # The worker died while making the run's folder, before its record: nothing in it to go on from.
                shutil.rmtree(job.run_dir(), ignore_errors=True)
        try:
            provider = provider_for(Settings.model_validate(job.settings).sandbox)
        except SandboxError as e:
            return CaseResult(name=job.case.name, status=ERROR, run_id=job.run_id, node=node, retries=retries,
                              reason=str(e))
        result = run_case(job, provider, relay, model_factory)
    return result.model_copy(update={"node": node, "retries": retries})
