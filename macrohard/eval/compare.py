"""Two evals side by side: the same cases (by name) under two models, role sets or settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ValidationError

from macrohard.errors import ConfigError
from macrohard.eval.results import CaseResult, EvalReport, EvalTotals, totals_of

class CaseComparison(BaseModel):
    name: str
    a: CaseResult | None  # None: the case is only in the other eval
    b: CaseResult | None

    def delta(self, measure: str) -> float | None:
        if self.a is None or self.b is None:
            return None
        return float(getattr(self.b, measure)) - float(getattr(self.a, measure))

    @property
    def score_delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.score - self.a.score


class Comparison(BaseModel):
    a: EvalReport
    b: EvalReport
    cases: list[CaseComparison]

    @property
    def totals(self) -> tuple[EvalTotals, EvalTotals]:
        """From the cases themselves, not the totals a file says it has."""
        return totals_of(self.a.cases), totals_of(self.b.cases)


def load_report(path: Path) -> EvalReport:
    """An eval's report: a `--json` file, an eval.json, or an eval's folder."""
    if path.is_dir():
        path = path / "eval.json"
    try:
        return EvalReport.model_validate_json(path.read_bytes())
    except OSError as e:
        raise ConfigError(f"cannot read eval results {path}: {e.strerror}", "give a file `macrohard eval --json` wrote, "
                          "or an eval folder") from None
    except (ValidationError, ValueError):
        raise ConfigError(f"{path} is not the results of an eval", "give a file `macrohard eval --json` wrote") from None


def compare(a: EvalReport, b: EvalReport) -> Comparison:
    """Cases in a's order, then those only in b."""
    in_b = {c.name: c for c in b.cases}
    in_a = {c.name for c in a.cases}
    rows = [CaseComparison(name=c.name, a=c, b=in_b.get(c.name)) for c in a.cases]
    rows += [CaseComparison(name=c.name, a=None, b=c) for c in b.cases if c.name not in in_a]
    return Comparison(a=a, b=b, cases=rows)
