"""Which Dockerfiles are made in one commit instead of a build (sandbox/commit_image.py)."""

from macrohard.deploy.dockerfile import default, packages
from macrohard.sandbox.commit_image import commit_plan


def test_the_stacks_default_and_the_packages_image_are_one_commit_with_their_metadata():
    labelled = default("base:1", "python3 -m tool", 8080).text + 'LABEL macrohard.commit="abc"\n'
    plan = commit_plan(labelled)
    assert plan is not None and plan.base == "base:1" and plan.dest == "/app"
    assert plan.changes == ["WORKDIR /app", "ENV PYTHONPATH=/app PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1",
                            "USER 65534:65534", "EXPOSE 8080", 'CMD ["sh", "-c", "python3 -m tool"]',
                            'LABEL macrohard.commit="abc"']
    assert commit_plan(packages("base:1", "/deps")).dest == "/deps"  # type: ignore[union-attr]


def test_anything_that_is_not_metadata_and_one_plain_copy_goes_to_the_builder():
    for text in ("FROM b\nCOPY --chown=1:1 . /app\n", "FROM b\nCOPY app.py /app/\n", "FROM b\nCOPY . app\n",
                 "FROM b\nCOPY . /app\nCOPY . /srv\n", "FROM b\nHEALTHCHECK CMD true\nCOPY . /app\n",
                 "FROM b\nWORKDIR /x\n", "FROM b AS one\nCOPY . /app\n", "FROM b\nCOPY . /$HOME\n"):
        assert commit_plan(text) is None, text
