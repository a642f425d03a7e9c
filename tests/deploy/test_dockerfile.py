"""A role's Dockerfile is checked against a safe subset before any build; the default one per stack."""

import pytest

from macrohard.deploy.dockerfile import PRODUCT_USER, DockerfileRefused, check, default, instructions, is_root

BASE = "macrohard-sandbox:latest"


def refused(text: str) -> list[str]:
    with pytest.raises(DockerfileRefused) as caught:
        check(text, BASE)
    return caught.value.problems


def test_a_dockerfile_within_the_subset_is_rendered_on_the_base_image_with_its_from_replaced():
    text = (
        "# the product\n"
        "FROM python:3.12-slim AS app\n"
        "WORKDIR /srv\n"
        "COPY --chown=65534:65534 textstats /srv/textstats\n"
        "ENV PYTHONPATH=/srv \\\n"
        "    LANG=C.UTF-8\n"
        "EXPOSE 8000\n"
        'LABEL org.example.team="text tools"\n'
        'HEALTHCHECK CMD ["python3", "-c", "print(1)"]\n'
        "USER 65534\n"
        'ENTRYPOINT ["python3", "-m", "textstats"]\n'
        'CMD ["--help"]\n'
    )
    rendered = check(text, BASE)
    lines = rendered.text.splitlines()
    assert lines[0] == f"FROM {BASE}" and "python:3.12" not in rendered.text
    assert "ENV PYTHONPATH=/srv LANG=C.UTF-8" in lines  # the continuation is joined
    assert lines[-1] == 'CMD ["--help"]' and "USER 65534" in lines
    assert rendered.source == "Dockerfile" and len(rendered.sha256) == 64


@pytest.mark.parametrize("line, says", [
    ("RUN pip install requests", "RUN: not allowed"),
    ("run echo lower case is the same instruction", "RUN: not allowed"),
    ("ADD https://example.com/x.tar.gz /x", "ADD: not allowed"),
    ("COPY --from=builder /out /app", "--from is not allowed"),
    ("COPY --link . /app", "--link is not allowed"),
    ("COPY --chmod=755 app.py /usr/local/bin/python3", "--chmod is not allowed"),
    ("ONBUILD RUN echo later", "ONBUILD: not allowed"),
    ('SHELL ["/bin/bash", "-c"]', "SHELL: not allowed"),
    ("ARG VERSION=1", "ARG: not allowed"),
    ("VOLUME /data", "VOLUME: not allowed"),
    ("USER root", "not run as root"),
    ("USER 0:0", "not run as root"),
    ("USER 00", "not run as root"),  # the runtime reads digits as a number: uid 0
    ("USER +0", "not run as root"),
    ("USER 65534:0", "not run as root"),  # root's group
    ("USER 65534:ROOT", "not run as root"),
    ("CMD python3 -m tool \\\\\n", "ends in a backslash"),  # it would take the USER line added after it
    ("LABEL a=b\x1fmacrohard.deps=spoof", "control or non-ASCII space"),  # one label to shlex, two to the engine
    ("LABEL a=b\u00a0macrohard.deps=spoof", "control or non-ASCII space"),
    ("ENV A=b\x1fLD_PRELOAD=/app/x.so", "control or non-ASCII space"),
    ("USER $APP_USER", "names a variable"),
    ("LABEL macrohard.commit=0000", "are the orchestrator's"),
    ("COPY <<EOF /app/x\nhello\nEOF", "heredocs"),
    ("FETCH http://example.com", "unknown or not allowed"),
])
def test_instructions_outside_the_subset_are_refused_saying_which_and_why(line, says):
    problems = refused(f"FROM debian\nCOPY . /app\n{line}\n")
    assert any(says in p and p.startswith("line 3:") for p in problems), problems


def test_a_second_stage_a_late_from_and_parser_directives_are_refused():
    assert any("a second FROM" in p for p in refused("FROM a AS build\nCOPY . /x\nFROM b\nCOPY . /app\n"))
    assert any("FROM must come first" in p for p in refused("COPY . /app\nFROM b\n"))
    assert any("parser directive" in p for p in refused("# syntax=docker/dockerfile:1\nCOPY . /app\n"))
    assert any("parser directive" in p for p in refused("# escape=`\nCOPY . /app\n"))


def test_every_problem_is_named_at_once_and_an_empty_file_is_refused():
    problems = refused("FROM x\nRUN a\nADD b c\nUSER root\n")
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 4"]
    assert any("no instruction besides FROM" in p for p in refused("FROM x\n# nothing\n"))
    assert any("larger than" in p for p in refused("COPY . /app\n" + "# x\n" * 40_000))


def test_a_run_hidden_in_a_continuation_or_behind_a_comment_is_still_seen():
    # A comment line inside a continuation is dropped, as Docker drops it: the RUN is its own instruction.
    assert any("RUN" in p for p in refused("COPY . /app\n# a comment\nRUN echo hi\n"))
    assert [(w, a) for _, w, a in instructions("ENV A=1 \\\n# note\n    B=2\n")] == [("ENV", "A=1 B=2")]


def test_without_a_user_the_image_runs_as_nobody():
    assert check("COPY . /app\n", BASE).text.splitlines()[-1] == "USER 65534:65534"


def test_the_default_image_has_the_product_in_app_importable_and_its_metadata_before_its_files():
    cli = default(BASE, "python3 -m textstats docs/PRD.md")
    lines = cli.text.splitlines()
    assert lines[0] == f"FROM {BASE}" and lines[-1] == "COPY . /app" and "WORKDIR /app" in lines
    assert any(line.startswith("ENV PYTHONPATH=/app") for line in lines) and "USER 65534:65534" in lines
    assert 'CMD ["sh", "-c", "python3 -m textstats docs/PRD.md"]' in lines and cli.source == "default"
    assert "EXPOSE 8000" in default(BASE, "python3 -m app", 8000).text
    # What it holds is fixed by the base and the command, so a resumed run finds the same hash.
    assert default(BASE, "x").sha256 == default(BASE, "x").sha256 != default("other:1", "x").sha256


def test_the_authors_own_files_may_not_stand_in_for_the_product_under_another_name():
    own = ["RELEASE_NOTES.md", "CHANGELOG.md", "Dockerfile", ".dockerignore"]
    for line in ("COPY RELEASE_NOTES.md /app/shadow/textstats/__main__.py", "COPY *.md /usr/local/bin/python3",
                 "COPY docs/../CHANGELOG.md /app/textstats.py", 'COPY ["RELEASE_NOTES.md", "/app/run.py"]'):
        with pytest.raises(DockerfileRefused) as caught:
            check(f"COPY . /app\n{line}\n", BASE, own)
        assert any("a file you wrote" in p and p.startswith("line 2:") for p in caught.value.problems), line
    # Into a folder every file keeps its name; the product's own files may be renamed.
    check("COPY . /app\nCOPY RELEASE_NOTES.md /usr/share/doc/tool/\nCOPY app.py /srv/main.py\n", BASE, own)


def test_the_checked_file_reads_back_as_the_instructions_checked():
    # What is built is what was checked: each instruction one line, the added USER one of its own.
    checked = check("FROM python\nWORKDIR /app\nENV A=1 \\\n  B=2\nCOPY . /app\nCMD python3 -m tool\n", "base")
    assert instructions(checked.text) == [(1, "FROM", "base"), (2, "WORKDIR", "/app"), (3, "ENV", "A=1 B=2"),
                                          (4, "COPY", ". /app"), (5, "CMD", "python3 -m tool"),
                                          (6, "USER", PRODUCT_USER)]


def test_root_is_read_as_the_runtime_reads_it():
    assert all(is_root(u) for u in ("root", "0", "00", "-0", "+0", "0:0", "65534:0", "app:root", " ROOT "))
    assert not any(is_root(u) for u in ("65534", "65534:65534", "app", "10", "rooty", "app:staff"))
