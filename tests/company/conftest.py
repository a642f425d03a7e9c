import pytest

# Hidden acceptance tests of scripted products: run by the company's verdict on the product, not here.
collect_ignore_glob = ["acceptance/*"]


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox_provider(request):
    """The fast local fake, and the real Docker sandbox."""
    if request.param == "local":
        from fakes import LocalSandboxProvider

        return LocalSandboxProvider()
    from macrohard.config import SandboxSettings
    from macrohard.sandbox.docker import DockerSandboxProvider

    request.getfixturevalue("sandbox_image")
    return DockerSandboxProvider(SandboxSettings(), request.getfixturevalue("docker_client"))
