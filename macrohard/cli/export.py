"""`macrohard export RUN`: the run's result branch into the user's repository, or into a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from macrohard.cli.common import (
    ConfigOpt, RunArg, UsageMistake, WorkspacesOpt, console, resolve_run_dir, settings_for, user_errors,
)
from macrohard.cli.show import plain


def say(text: object) -> None:
    # Commands to copy: never wrapped at the terminal's width.
    console.print(text, soft_wrap=True, highlight=False)


@user_errors
def export(
    run: RunArg,
    repo: Annotated[
        Path | None, typer.Option("--repo", metavar="PATH", help="The git repository to add the branch to (by fetching).")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", metavar="FILE", help="Write the branch to this git bundle instead.")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Hand a run's result back: branch macrohard/RUN-ID, added to your repository without touching its work."""
    from macrohard.company.handback import CHANGES, RESULT_PREFIX
    from macrohard.company.run import RunPaths, load_record
    from macrohard.workspace.export import export_branch, write_bundle

    if (repo is None) == (bundle is None):
        raise UsageMistake("give one of --repo PATH (add the branch to that repository) or --bundle FILE")
    run_dir = resolve_run_dir(run, settings_for(config, workspaces=workspaces).workspaces)
    record = load_record(run_dir)
    paths = RunPaths(run_dir=run_dir)
    branch = RESULT_PREFIX + record.run_id
    source = record.source or {}
    base = str(source.get("base_name") or "main")
    if bundle is not None:
        sha = write_bundle(paths.repo, branch, source.get("base_sha"), bundle)
        say(plain(f"wrote {branch} ({sha[:12]}) to {bundle}"))
        say(plain(f"  into a repository: git fetch {bundle} {branch}:{branch}"))
        return
    assert repo is not None
    sha, new = export_branch(paths.repo, branch, repo)
    say(plain(f"{'added' if new else 'already there:'} branch {branch} ({sha[:12]}) in {repo}; "
                        "your checked-out branch, index and files are as they were"))
    say(plain(f"  what changed:  git -C {repo} log --oneline {base}..{branch}"))
    say(plain(f"                 git -C {repo} diff {base}...{branch}"))
    say(plain(f"  why:           {run_dir / CHANGES}"))
