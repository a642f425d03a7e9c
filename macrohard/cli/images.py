"""`macrohard images`: list the product images releases built, and remove them by run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from macrohard.cli.common import ConfigOpt, UsageMistake, WorkspacesOpt, console, settings_for, user_errors
from macrohard.cli.show import clean, plain
from macrohard.deploy.product import COMMIT_LABEL, RUN_LABEL, VERSION_LABEL


@user_errors
def images(
    remove: Annotated[
        str | None, typer.Option("--remove", metavar="RUN", help="Remove the product images of this run.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove the product images of every run in the workspaces folder.")] = False,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """List the product images the releases of this workspaces folder's runs built (image, run, version, commit,
    created); remove them by run.

    A run's release builds `PRODUCT:VERSION` (run it with `docker run --rm PRODUCT:VERSION`); building it again
    moves the tag, and the image it leaves behind shows as untagged until it is removed. Images of runs in other
    folders on the same Docker engine are counted, never listed or removed (`--remove RUN` takes any run id).
    """
    from macrohard.sandbox.docker import docker_client
    from macrohard.sandbox.product import DockerProductImages

    if remove is not None and all_:
        raise UsageMistake("--remove RUN and --all do not go together", "give one of them")
    if remove is not None and not remove.strip():
        raise UsageMistake("--remove needs a run id", "`macrohard images` lists the runs whose images there are")
    settings = settings_for(config, workspaces=workspaces)
    product_images = DockerProductImages(settings.sandbox, docker_client())
    folder = settings.workspaces
    ours = {p.name for p in folder.iterdir() if (p / "transcript.jsonl").is_file()} if folder.is_dir() else set()
    if remove is not None or all_:
        runs = [remove] if remove is not None else sorted(ours)
        removed = [image for run in runs for image in product_images.remove({RUN_LABEL: run})]
        shown = ", ".join(t for image in removed for t in image.tags or [image.id[:19]])
        what = f"removed {len(removed)} image{'s' if len(removed) != 1 else ''}"
        console.print(plain(f"{what}: {shown}" if removed else what + (f" (run {remove} has none)" if remove else "")))
        return
    every = product_images.find({})
    found = [image for image in every if image.labels.get(RUN_LABEL) in ours]
    elsewhere = len(every) - len(found)
    others = (f" ({elsewhere} more on this Docker engine, of runs in other folders)" if elsewhere else "")
    if not found:
        console.print(plain(f"no product images of the runs in {folder}; a run's release builds one (`macrohard demo` "
                            f"builds textstats){others}"), soft_wrap=True)
        return
    rows = [("image", "run", "version", "commit", "created")]
    for image in found:
        labels = image.labels
        rows.append((clean(", ".join(image.tags) or f"(untagged) {image.id[7:19]}"), clean(labels.get(RUN_LABEL, "")),
                     clean(labels.get(VERSION_LABEL, "")), clean(labels.get(COMMIT_LABEL, "")[:12]),
                     clean(image.created[:16].replace("T", " "))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        # Whole values on one line each (a terminal wraps a long one), so they can be copied or piped.
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        console.print(Text(line, style="bold" if n == 0 else ""), soft_wrap=True)
    if elsewhere:
        console.print(plain(others.strip(" ()")), soft_wrap=True)
