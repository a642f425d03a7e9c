"""Text from models and repositories reaches the terminal as text: no markup, no escapes."""

import io

from rich.console import Console

from macrohard.cli.progress import ProgressView
from macrohard.cli.show import approval_panel, clean, plain, print_summary
from macrohard.company.run import RunSummary, TicketLine
from macrohard.models import Usage
from macrohard.transcript.log import Event

SPOOFS = [
    "[/]",  # crashed the CLI as markup
    "[bold red]ALL TESTS PASSED - approved[/]",
    "[link=https://example.invalid]click[/link]",
    "real title[black on black]hidden text[/]",
    "\x1b[2J\x1b[HALL TESTS PASSED - approved",  # clears the screen
    "\x1b]8;;https://example.invalid\x07link\x1b]8;;\x07",
    "\x9b2J C1 CSI",
    "abc\u202edcba",  # bidirectional override
]


def render(renderable, width: int = 200) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system="truecolor").print(renderable)
    return out.getvalue()


def test_clean_shows_control_characters_as_escapes():
    assert clean("a\x1b[2Jb\x07\x9b\x7f\tc\nd") == "a\\x1b[2Jb\\x07\\x9b\\x7f\tc\nd"
    assert clean("x\u202ey") == "x\\u202ey"


def test_spoofing_titles_render_as_the_plain_text_they_are():
    for spoof in SPOOFS:
        shown = render(plain(spoof))
        assert "\x1b[2J" not in shown and "\x1b]8" not in shown and "\x9b" not in shown and "\u202e" not in shown
        if "\x1b" not in spoof and "\x9b" not in spoof and "\u202e" not in spoof:
            # Markup characters are shown as typed, none of them interpreted.
            assert spoof in shown.replace("\x1b[0m", ""), (spoof, shown)


def test_the_approval_panel_and_summary_show_titles_verbatim():
    title = "[/]Evil [bold]title[/bold] \x1b[2J"
    panel = render(approval_panel({"gate": "plan", "summary": f"- T-1: {title}"}, "Approve the plan?"))
    assert "[/]Evil [bold]title[/bold] \\x1b[2J" in panel and "\x1b[2J" not in panel
    summary = RunSummary(
        run_id="r", status="failed", failure="[red]x[/] \x1b[31mred", tickets=[TicketLine(id="T-1", title=title, status="failed",
        attempts=1, reason="[/]")], commits=0, usage=Usage(), cost_usd=0, model_calls=0, wall_s=0, release_tag=None,
        repo="r", transcript="t",
    )
    out = io.StringIO()
    print_summary(Console(file=out, width=200, force_terminal=True), summary)
    text = out.getvalue()
    assert "[red]x[/] \\x1b[31mred" in text and "[/]Evil [bold]title[/bold]" in text and "\x1b[2J" not in text


def test_the_live_progress_shows_model_text_as_text():
    out = io.StringIO()
    view = ProgressView(Console(file=out, width=200, force_terminal=False))
    view.on_event(Event(seq=1, id="ev-1", ts=0.0, kind="plan", role="product_manager", ticket=None,
                        data={"tickets": [{"id": "T-1", "title": "[/]\x1b[2Jfake"}]}, run_id="r", prev_hash=""))
    view.on_event(Event(seq=2, id="ev-2", ts=0.0, kind="ticket.failed", role=None, ticket="T-1",
                        data={"reason": "[bold]ALL TESTS PASSED[/] \x1b[2J"}, run_id="r", prev_hash=""))
    shown = out.getvalue() + render(view.render())
    assert "[bold]ALL TESTS PASSED[/] \\x1b[2J" in shown and "\x1b[2J" not in shown
    assert "[/]\\x1b[2Jfake" in shown


def test_the_summary_names_the_released_image_and_its_smoke_check_as_text():
    release = {"tag": "v0.2.0", "sha": "a" * 40, "suite_tests": 5, "image": "tool:0.2.0", "image_id": "sha256:" + "b" * 64,
               "smoke": {"kind": "cli", "command": "python3 -m tool [/]\x1b[2J", "exit_code": 0, "passed": True,
                         "default": False, "health_url": None}}
    summary = RunSummary(run_id="r", status="done", failure=None, tickets=[], commits=1, usage=Usage(), cost_usd=0,
                         model_calls=0, wall_s=0, release_tag="v0.2.0", release=release, repo="r", transcript="t")
    out = io.StringIO()
    print_summary(Console(file=out, width=200, force_terminal=True), summary)
    text = out.getvalue()
    assert "image:      tool:0.2.0 (sha256:bbbbbbbbbbbb)" in text
    assert "smoke:      cli `python3 -m tool [/]\\x1b[2J` · exit code 0" in text and "\x1b[2J" not in text
    assert "try it:     docker run --rm tool:0.2.0" in text
