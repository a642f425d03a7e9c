"""An eval's and a batch's report as the CLI prints them: what the calls cost, as audit shows it."""

import time
from pathlib import Path

import pytest
from rich.console import Console

from macrohard.cli.evalview import print_batch, print_report
from macrohard.eval.results import CaseResult, EvalReport, totals_of


def printed(kind: str, *cases: CaseResult) -> str:
    report = EvalReport(eval_id="e1", suite=Path("/suite"), started_at=time.time(), cases=list(cases), kind=kind,
                        totals=totals_of(cases))
    console = Console(record=True, width=160)
    (print_report if kind == "eval" else print_batch)(console, report)
    return console.export_text()


@pytest.mark.parametrize("kind", ["eval", "batch"])
def test_calls_without_a_price_cost_unknown_not_nothing(kind):
    unpriced = CaseResult(name="a", status="done", model_calls=3, unpriced_calls=3)
    assert "cost — ·" in printed(kind, unpriced)
    priced = CaseResult(name="b", status="done", model_calls=2, cost_usd=0.01)
    assert "cost $0.0100 ·" in printed(kind, priced)
    assert "cost $0.0100 (+3 calls unpriced) ·" in printed(kind, priced, unpriced)
