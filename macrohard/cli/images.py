"""`macrohard images`: list the product images releases built, and remove them by run."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from macrohard.cli.common import ConfigOpt, UsageMistake, console, settings_for, user_errors
from macrohard.cli.show import plain
from macrohard.deploy.product import COMMIT_LABEL, RUN_LABEL, VERSION_LABEL


@user_errors
def images(
    remove: Annotated[
        str | None, typer.Option("--remove", metavar="RUN", help="Remove the product images of this run.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every product image a release built.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List the product images releases built (image, run, version, commit, created); remove them by run."""
    from macrohard.sandbox.docker import docker_client
    from macrohard.sandbox.product import DockerProductImages

    if remove is not None and all_:
        raise UsageMistake("--remove RUN and --all do not go together", "give one of them")
    if remove is not None and not remove.strip():
        raise UsageMistake("--remove needs a run id", "`macrohard images` lists the runs whose images there are")
    product_images = DockerProductImages(settings_for(config).sandbox, docker_client())
    if remove is not None or all_:
        removed = product_images.remove({RUN_LABEL: remove} if remove is not None else {})
        shown = ", ".join(t for image in removed for t in image.tags or [image.id[:19]])
        what = f"removed {len(removed)} image{'s' if len(removed) != 1 else ''}"
        console.print(plain(f"{what}: {shown}" if removed else what + (f" (run {remove} has none)" if remove else "")))
        return
    found = product_images.find({})
    if not found:
        console.print("no product images; a run's release builds one (`macrohard demo` builds textstats)",
                      highlight=False, markup=False)
        return
    table = Table(title="Product images", title_justify="left", header_style="bold")
    for col in ("image", "run", "version", "commit", "created", "id"):
        table.add_column(col)
    for image in found:
        labels = image.labels
        table.add_row(plain(", ".join(image.tags) or "(untagged)"), plain(labels.get(RUN_LABEL, "")),
                      plain(labels.get(VERSION_LABEL, "")), plain(labels.get(COMMIT_LABEL, "")[:12]),
                      plain(image.created), plain(image.id[7:19] if image.id.startswith("sha256:") else image.id[:12]))
    console.print(table)
