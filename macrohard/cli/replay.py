"""`macrohard replay`: a recorded run again, from its own transcript, in a new run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from macrohard.cli.common import ConfigOpt, RunArg, UsageMistake, WorkspacesOpt, errors, resolve_run_dir, settings_for, user_errors
from macrohard.cli.drive import drive, model_factory
from macrohard.cli.show import label, plain
from macrohard.config import Settings
from macrohard.errors import ConfigError
from macrohard.models import ApprovalDecision
from macrohard.transcript.log import read_events

FromOpt = Annotated[
    str | None,
    typer.Option("--from", metavar="EVENT",
                 help="Fork: replay the answers recorded before this event (e.g. ev-000120), then go on with a live model."),
]


class RecordedDecisions:
    """Answers a replay's gates with the decisions the recorded run took there, in order.

    The n-th time a gate comes up in the replay (counted in its own transcript, so a
    resumed replay counts right) gets the recorded run's n-th decision at that gate;
    past those, a person decides.
    """

    def __init__(self, run_id: str, recording: Path, replay_transcript: Path) -> None:
        self.run_id = run_id
        self.replay_transcript = replay_transcript
        self.by_gate: dict[str, list[ApprovalDecision]] = {}
        for e in read_events(recording):
            if e.kind == "approval":
                decision = ApprovalDecision.model_validate({k: e.data[k] for k in ("decision", "comment", "by", "at") if k in e.data})
                self.by_gate.setdefault(str(e.data.get("gate")), []).append(decision)

    def __call__(self, payload: dict[str, Any]) -> ApprovalDecision | None:
        gate = str(payload.get("gate"))
        taken = sum(1 for e in read_events(self.replay_transcript) if e.kind == "approval" and e.data.get("gate") == gate)
        recorded = self.by_gate.get(gate, [])
        if taken >= len(recorded):
            return None
        decision = recorded[taken]
        return decision.model_copy(update={"by": f"{decision.by} (recorded in run {self.run_id})"})


def replay_settings(recorded: dict[str, Any], workspaces: Path, live: Settings | None) -> Settings:
    """The recorded run's settings, in this workspaces folder; a fork's model settings and prices from `live`."""
    try:
        settings = Settings.model_validate({**recorded, "workspaces": workspaces})
    except ValueError as e:
        raise ConfigError(f"the recorded run's settings are not readable: {e}", "check its run.json") from None
    if live is not None:
        settings = settings.model_copy(update={
            "model": live.model, "roles": live.roles, "prices": {**settings.prices, **live.prices},
        })
    return settings


@user_errors
def replay(
    run: RunArg,
    from_event: FromOpt = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="NAME", help="A fork's live model ([model] in macrohard.toml otherwise).")
    ] = None,
    script: Annotated[
        Path | None, typer.Option("--script", metavar="FILE", help="A fork's live model: this model script instead of an endpoint.")
    ] = None,
    config: ConfigOpt = None,
    workspaces: WorkspacesOpt = None,
) -> None:
    """Run a recorded run again from its transcript, in a new run folder.

    Every model answer comes from the recording (no endpoint, no key): the same spec,
    settings and hidden acceptance tests, with the orchestrator as it is now. Where it
    asks something the recording never answered, the replay stops, naming the call.
    With --from EVENT, answers recorded before EVENT are replayed and a live model
    (configured as for `macrohard run`, or --model, or --script) answers the rest.
    """
    from macrohard.company.run import CompanyRun, load_record
    from macrohard.llm.replay import ReplaySource
    from macrohard.transcript.log import verify_chain

    if (model or script) and from_event is None:
        raise UsageMistake("--model and --script choose the live model of a fork", "add --from EVENT, or leave them out")
    if model and script:
        raise UsageMistake("--model and --script both choose the live model", "give one of them")
    if script is not None and not script.is_file():
        raise ConfigError(f"script file {script} does not exist", "give the path of a model script (YAML)")
    here = settings_for(config, workspaces=workspaces, model={"model": model} if model else None)
    run_dir = resolve_run_dir(run, here.workspaces)
    record = load_record(run_dir)
    transcript = run_dir / "transcript.jsonl"
    broken = verify_chain(transcript, record.transcript_head)
    if broken is not None:
        errors.print(label("warning:", "bold yellow", f"the recording fails verification at {broken.event_id}: "
                           f"{broken.reason}; replaying what it holds"), highlight=False, soft_wrap=True)
    source = ReplaySource.of(record.run_id, transcript, from_event=from_event, verified=broken is None)
    settings = replay_settings(record.settings, here.workspaces, here if from_event else None)
    spec = run_dir / "spec.md"
    new = CompanyRun.create(spec, settings, script=script, model_factory=model_factory(script) if from_event else None,
                            replay=source)
    decisions = RecordedDecisions(record.run_id, transcript, new.paths.transcript)
    banner = Text.assemble("Run ", (new.run_id, "bold"), ": ", plain(f"{new.spec.title} ({new.model_name}, "
                                                                       f"{source.answers} recorded answers)"))
    drive(new, banner=banner, recorded=decisions)
