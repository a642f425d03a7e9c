"""What the company's node mixins (pipeline.py, release.py) use of Company, declared once."""

from __future__ import annotations

from macrohard.company.environment import ProductEnvironment
from macrohard.company.sandboxes import RunSandboxes
from macrohard.company.territories import TerritoryGuard
from macrohard.company.verdict import Verdicts
from macrohard.config import Settings
from macrohard.transcript.log import TranscriptLog
from macrohard.workspace.git import GitWorkspace


class CompanyParts:
    """Attributes Company (company/graph.py) sets; annotations only, so the dataclass adds no fields."""

    run_id: str
    resumed: bool
    from_source: bool
    settings: Settings
    transcript: TranscriptLog
    workspace: GitWorkspace
    sandboxes: RunSandboxes
    verdicts: Verdicts
    environment: ProductEnvironment
    guard: TerritoryGuard
