"""Tools for disputing a test instead of cheating it.

An engineer that believes a test contradicts its ticket calls `dispute_test` with its
reason: published measurements show that a way to flag a task for a person cuts
models' test cheating several-fold. The tester rules on each dispute of the attempt
(`rule_dispute`); a dispute it upholds, or leaves unruled, goes to the product
manager, whose ruling stands. Every dispute and ruling is a transcript event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from macrohard.agent.tools import ToolError
from macrohard.models import Dispute


class DisputeTest:
    name = "dispute_test"
    description = (
        "Dispute a test you believe contradicts the ticket, instead of changing it (tests are the tester's). "
        "Name the test (file or file::name) and say why; the tester, then the product manager, rules on it."
    )

    class Args(BaseModel):
        test: str = Field(min_length=1, description="the test: a file, or file::test_name")
        reason: str = Field(min_length=1, description="how the test contradicts the ticket")

    def __init__(self, disputes: list[Dispute], make: Callable[[str, str], Dispute]) -> None:
        self.disputes = disputes
        self.make = make

    def run(self, args: Args) -> str:
        dispute = self.make(args.test.strip(), args.reason.strip())
        self.disputes.append(dispute)
        return f"dispute {dispute.id} recorded: the tester rules on it after your session, then the product manager if needed"


class RuleDispute:
    name = "rule_dispute"
    description = (
        "Rule on a dispute about a test: 'uphold' (the test is right and stays) or 'change' (the test is wrong "
        "and must change), with your reason."
    )

    class Args(BaseModel):
        id: str = Field(description="the dispute's id, e.g. D-T-1-1")
        ruling: Literal["uphold", "change"]
        reason: str = Field(min_length=1)

    def __init__(self, disputes: list[Dispute], by: str, on_ruling: Callable[[Dispute], None]) -> None:
        self.disputes = disputes
        self.by = by
        self.on_ruling = on_ruling

    def run(self, args: Args) -> str:
        for i, dispute in enumerate(self.disputes):
            if dispute.id == args.id:
                ruled = dispute.model_copy(update={"ruling": args.ruling, "ruled_by": self.by, "ruling_reason": args.reason})
                self.disputes[i] = ruled
                self.on_ruling(ruled)
                return f"ruled {args.ruling} on {args.id}"
        known = ", ".join(d.id for d in self.disputes) or "none"
        raise ToolError(f"there is no dispute {args.id}; open disputes: {known}")
