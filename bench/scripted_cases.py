"""What the eval benchmarks share: the bundled suite's cases on the scripted model, on this engine."""

from __future__ import annotations

import os

from macrohard._resources import resource_dir
from macrohard.config import Settings
from macrohard.sandbox.docker import DockerSandboxProvider, docker_client
from macrohard.sandbox.image import build_image, image_exists


def scripted_case_provider(latency: float) -> DockerSandboxProvider:
    """A sandbox provider on the local engine (its image built if missing), with the cases set to run scripted.

    The cases' settings come from the environment too: the bundled roles (the scripts are
    written for them) and the scripted model's simulated latency. Processes started from
    here (a local Ray cluster's workers) inherit them.
    """
    os.environ["MACROHARD_ROLES_DIR"] = str(resource_dir("roles"))
    os.environ["MACROHARD_SCRIPTED_LATENCY_S"] = str(latency)
    client = docker_client()
    settings = Settings()
    if not image_exists(client, settings.sandbox.image):
        build_image(client, settings.sandbox.image)
    return DockerSandboxProvider(settings.sandbox, client)
