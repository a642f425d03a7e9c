"""Geometry of the token bar charts; the template draws them as inline SVG (no script, no build)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel

from macrohard.viewer.overview import Tally

WIDTH = 540
LABEL_W = 130
VALUE_W = 70  # room right of the longest bar for its number
ROW_H = 26


class Bar(BaseModel):
    label: str
    href: str | None
    prompt: int
    completion: int
    y: int
    prompt_w: float
    completion_w: float

    @property
    def total(self) -> int:
        return self.prompt + self.completion


class BarChart(BaseModel):
    title: str
    width: int = WIDTH
    label_w: int = LABEL_W
    row_h: int = ROW_H
    bars: list[Bar]
    empty: str = "No model calls yet."  # what to say when there is no bar

    @property
    def height(self) -> int:
        return max(1, len(self.bars)) * self.row_h + 6


def token_chart(
    title: str, tallies: Mapping[str, Tally], href: Callable[[str], str] | None = None, empty: str = "No model calls yet."
) -> BarChart:
    """Stacked prompt/completion bars, one per group that used any tokens, in the mapping's order."""
    used = [(name, t) for name, t in tallies.items() if t.tokens > 0]
    longest = max((t.tokens for _, t in used), default=0)
    scale = (WIDTH - LABEL_W - VALUE_W) / longest if longest else 0.0
    bars = [
        Bar(
            label=name, href=href(name) if href else None, prompt=t.prompt_tokens, completion=t.completion_tokens,
            y=i * ROW_H, prompt_w=round(t.prompt_tokens * scale, 1), completion_w=round(t.completion_tokens * scale, 1),
        )
        for i, (name, t) in enumerate(used)
    ]
    return BarChart(title=title, bars=bars, empty=empty)
