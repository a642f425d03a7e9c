"""The viewer in a real browser: Debian's headless chromium, driven by selenium.

The server runs in a thread on a free loopback port, over a folder with the finished
demo run and a copy of it that is still "running" (its transcript stops before
run.finished); the live test appends to that copy and watches the page follow.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from macrohard.company.run import RunRecord  # noqa: E402
from macrohard.transcript.log import TranscriptLog  # noqa: E402
from macrohard.viewer import create_app  # noqa: E402

from .conftest import DemoRun, mark_stopped  # noqa: E402

WAIT_S = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The viewer's base URL, and the workspaces folder it serves."""
    workspaces = tmp_path_factory.mktemp("browser") / "workspaces"
    shutil.copytree(demo_run.dir, workspaces / demo_run.run_id, symlinks=True)
    live = workspaces / "live-run"
    shutil.copytree(demo_run.dir, live, symlinks=True)
    end = next(i for i, e in enumerate(demo_run.events) if e.kind == "run.finished")
    lines = (live / "transcript.jsonl").read_text().splitlines(keepends=True)[:end]
    (live / "transcript.jsonl").write_text("".join(lines))
    record = RunRecord.model_validate_json((live / "run.json").read_text())
    record.status, record.finished_at, record.transcript_head = "running", None, None
    (live / "run.json").write_text(record.model_dump_json())

    port = free_port()
    config = uvicorn.Config(create_app(workspaces, poll_s=0.1), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert time.monotonic() < deadline, "the viewer did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", workspaces
    server.should_exit = True
    thread.join(WAIT_S)


@pytest.fixture(scope="module")
def browser(site: tuple[str, Path]) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    # Before the server stops: an open live page holds a stream the server would wait for.
    driver.quit()


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_S)


def test_open_a_finished_run(browser: WebDriver, site: tuple[str, Path], demo_run: DemoRun) -> None:
    base, _ = site
    browser.get(base + "/")
    browser.find_element(By.LINK_TEXT, demo_run.run_id).click()
    wait(browser).until(ec.title_contains(demo_run.run_id))
    assert browser.find_element(By.CSS_SELECTOR, ".runhead h1").text == "textstats"
    assert browser.find_element(By.CSS_SELECTOR, ".runhead .status").text == "done"
    assert not browser.find_elements(By.CSS_SELECTOR, ".runhead .live")
    merged = browser.find_elements(By.CSS_SELECTOR, ".col-merged .card")
    assert [c.get_attribute("data-ticket") for c in merged] == ["T-1", "T-2", "T-3"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#totals svg rect.prompt")) >= 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline-rows tr")) == len(demo_run.events)
    assert not browser.find_elements(By.CSS_SELECTOR, ".banner.broken")


def test_open_an_event(browser: WebDriver, site: tuple[str, Path], demo_run: DemoRun) -> None:
    base, _ = site
    answer = demo_run.first("model.response", role="tester", ticket="T-2")
    browser.get(f"{base}/runs/{demo_run.run_id}")
    browser.find_element(By.CSS_SELECTOR, f"#row-{answer.seq} td.id a").click()
    wait(browser).until(ec.title_contains(answer.id))
    assert browser.find_element(By.CSS_SELECTOR, ".event h2").text == f"{answer.id} model.response"
    answer_text = browser.find_element(By.CSS_SELECTOR, ".answer").text
    assert "write_file" in answer_text and "tests/test_freq.py" in answer_text
    messages = browser.find_elements(By.CSS_SELECTOR, ".conversation .msg")
    assert [m.find_element(By.CSS_SELECTOR, ".who").text for m in messages] == ["SYSTEM", "USER"]
    assert "Ticket T-2" in messages[1].text


def test_follow_a_commit_to_its_event(browser: WebDriver, site: tuple[str, Path], demo_run: DemoRun) -> None:
    base, _ = site
    commit = demo_run.first("git.commit", role="engineer", ticket="T-3")
    browser.get(f"{base}/runs/{demo_run.run_id}#commits")
    browser.find_element(By.CSS_SELECTOR, f'#commits a[href$="/commits/{commit.data["sha"]}"]').click()
    wait(browser).until(ec.title_contains(commit.data["sha"][:10]))
    assert "textstats/cli.py" in browser.find_element(By.CSS_SELECTOR, ".files").text
    browser.find_element(By.CSS_SELECTOR, "a.event-trailer").click()
    cause = commit.data["cause"]
    wait(browser).until(ec.title_contains(cause))
    assert browser.find_element(By.CSS_SELECTOR, ".event h2").text == f"{cause} model.response"
    # and back: the event names the commit it caused
    assert browser.find_elements(By.CSS_SELECTOR, f'.links a[href$="/commits/{commit.data["sha"]}"]')


def test_a_running_run_updates_live(browser: WebDriver, site: tuple[str, Path], demo_run: DemoRun) -> None:
    base, workspaces = site
    browser.get(f"{base}/runs/live-run")
    wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".runhead .live"), "live"))
    rows_before = len(browser.find_elements(By.CSS_SELECTOR, "#timeline-rows tr"))

    log = TranscriptLog(workspaces / "live-run" / "transcript.jsonl", "demo-run")
    note = log.append("node", node="report")
    shown = wait(browser).until(ec.presence_of_element_located((By.ID, f"row-{note.seq}")))
    assert "report" in shown.text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline-rows tr")) == rows_before + 1

    usage = {"prompt_tokens": 100_000, "completion_tokens": 1}
    answer = log.append("model.response", role="deployer", task="release", step=9, model="scripted",
                        message={"role": "assistant", "content": "one more thing"}, usage=usage, latency_s=0.1)
    wait(browser).until(ec.presence_of_element_located((By.ID, f"row-{answer.seq}")))
    # the totals were re-rendered with the new call in them
    prompt = sum(e.data["usage"]["prompt_tokens"] for e in demo_run.events if e.kind == "model.response")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "totals"), f"{prompt + 100_000:,}"))

    log.append("run.finished", status="done", tickets={"T-1": "merged", "T-2": "merged", "T-3": "merged"})
    mark_stopped(workspaces / "live-run")
    wait(browser).until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".runhead .status"), "done"))
    wait(browser).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-run-ended") == "yes")
    assert not browser.find_elements(By.CSS_SELECTOR, ".runhead .live")
