"""Cases as tasks on an existing Ray cluster: the one adapter to Ray (imported only when asked for).

Each case is a Ray task needing one unit of the custom resource `docker`, which the
nodes that have a Docker engine offer (`ray start ... --resources '{"docker": 4}'`:
four cases at once there). The task (eval/ray_node.py) runs `run_case` on its node, with
that node's engine for the sandboxes, and returns the CaseResult.

Run folders are not shipped back: the workspaces folder, and the suite, must be on
storage that every node mounts at the same path (NFS, a cluster file system). That is
what lets a case whose worker died go on from its checkpoint and git history on another
node; a folder shipped back at the end would die with its node. Events and the node
each case landed on come back through a mailbox actor; a pause goes out through it.

A worker that dies mid-case (killed, out of memory, its node lost) fails its task with
WorkerCrashedError or NodeDiedError. Ray's own task retries are off, so the executor
knows and submits the case again, up to `retries` times; the new attempt records
`executor.retry` in the run's transcript and resumes the run from its last checkpoint,
finding its commits, merges and tag by trailer as any resumed run does.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from typing import Any

from macrohard.errors import ConfigError
from macrohard.eval.executor import CaseJob, CaseWatch, ModelFactory
from macrohard.eval.results import ERROR, CaseResult
from macrohard.transcript.log import Event

DOCKER = "docker"  # the custom resource a node with a Docker engine offers, one unit per case at once
POLL_S = 0.25


class Mailbox:
    """A Ray actor between the nodes and the caller: news from the cases in, a pause out."""

    def __init__(self) -> None:
        self.news: list[tuple[str, str, Any]] = []
        self.pause: str | None = None

    def put(self, batch: list[tuple[str, str, Any]]) -> None:
        self.news.extend(batch)

    def take(self) -> list[tuple[str, str, Any]]:
        news, self.news = self.news, []
        return news

    def request_pause(self, reason: str) -> None:
        self.pause = reason

    def pause_reason(self) -> str | None:
        return self.pause


class RemotePause:
    """What the caller's live view holds for a case on a node: a pause, asked for at the mailbox."""

    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox

    def request_pause(self, reason: str) -> None:
        self.mailbox.request_pause.remote(reason)


def _probe(address: str) -> None:
    """Fail at once, in one line, when nothing listens at ADDR (Ray itself retries for minutes, loudly)."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address!r} is not HOST:PORT", "give the head node's address, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(f"no Ray cluster answers at {address}: {e.strerror or e}",
                          "start one with `ray start --head`, or give the head node's address") from None


class RayExecutor:
    """Cases as Ray tasks on the cluster at `address`, `parallel` in flight (None: as many as the nodes offer)."""

    def __init__(self, address: str, parallel: int | None = None, model_factory: ModelFactory | None = None,
                 retries: int = 2) -> None:
        self.address = address
        self.parallel = parallel
        self.model_factory = model_factory
        self.retries = retries
        self._connected = False

    def connect(self) -> int:
        """Join the cluster as a driver; the cases at once it will run. ConfigError, in words, when it cannot."""
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray, which is not installed", "pip install 'macrohard[ray]'") from None
        _probe(self.address)
        try:
            ray.init(address=self.address, namespace="macrohard", log_to_driver=False, logging_level=logging.ERROR,
                     ignore_reinit_error=True)
        except (ConnectionError, RuntimeError, ray.exceptions.RayError) as e:
            raise ConfigError(f"could not join the Ray cluster at {self.address}: {str(e).splitlines()[0]}",
                              "check the address, and that this Ray and Python are the cluster's versions") from None
        slots = int(ray.cluster_resources().get(DOCKER, 0))
        if slots < 1:
            raise ConfigError(f"no node of the Ray cluster at {self.address} offers the {DOCKER!r} resource",
                              "start the nodes that have a Docker engine with "
                              f"`ray start --address ... --resources '{{\"{DOCKER}\": 2}}'`")
        self.parallel = self.parallel or slots
        self._connected = True
        return self.parallel

    def run(self, jobs: Sequence[CaseJob], watch: CaseWatch) -> list[CaseResult]:
        import ray

        from macrohard.eval.ray_node import run_on_node

        if not self._connected:  # never ray.remote before: Ray would start a cluster of its own here
            self.connect()
        task = ray.remote(run_on_node).options(num_cpus=0, resources={DOCKER: 1}, max_retries=0)
        mailbox = ray.remote(Mailbox).options(num_cpus=0).remote()
        queue = list(jobs)
        pending: dict[Any, tuple[CaseJob, int]] = {}
        nodes: dict[str, str] = {}
        results: list[CaseResult] = []

        def submit(job: CaseJob, attempt: int, retry: dict[str, Any] | None) -> None:
            pending[task.remote(job, mailbox, self.model_factory, retry)] = (job, attempt)

        def deliver() -> None:
            for kind, name, value in ray.get(mailbox.take.remote()):
                if kind == "placed":
                    nodes[name] = value
                    watch.placed(name, value)
                else:
                    watch.event(name, Event.model_validate(value))

        while queue or pending:
            while queue and len(pending) < (self.parallel or 1):
                job = queue.pop(0)
                if not watch.starting(job):
                    queue.clear()  # the eval is stopping: the rest stay queued, for `eval resume`
                    break
                # A pause is the eval's (Ctrl-C): asked once at the mailbox, every running case takes it.
                watch.control(job.case.name, RemotePause(mailbox))  # type: ignore[arg-type]
                submit(job, 0, None)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            deliver()
            for ref in ready:
                job, attempt = pending.pop(ref)
                name = job.case.name
                try:
                    result: CaseResult = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
                    why = str(e).strip().splitlines()[0]
                    if attempt < self.retries:
                        submit(job, attempt + 1, {"attempt": attempt + 1, "previous_node": nodes.get(name), "error": why})
                        continue
                    result = CaseResult(name=name, status=ERROR, run_id=job.run_id, node=nodes.get(name), retries=attempt,
                                        reason=f"its worker died {attempt + 1} times; the last: {why}")
                except ray.exceptions.RayError as e:
                    result = CaseResult(name=name, status=ERROR, run_id=job.run_id, node=nodes.get(name), retries=attempt,
                                        reason=f"the Ray task failed: {str(e).strip().splitlines()[-1]}")
                watch.finished(result)
                results.append(result)
        deliver()
        ray.kill(mailbox)
        return results

    def close(self) -> None:
        import ray

        ray.shutdown()
