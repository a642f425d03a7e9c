import json
import threading

from macrohard.transcript.log import TranscriptLog, read_events, verify_chain


def test_events_are_chained_and_verify(tmp_path):
    log = TranscriptLog(tmp_path / "t.jsonl", "run-1")
    a = log.append("node", node="intake")
    b = log.append("model.response", role="engineer", ticket="T-1", usage={"prompt_tokens": 3})
    assert (a.seq, b.seq) == (1, 2)
    assert b.prev_hash == a.hash
    assert verify_chain(tmp_path / "t.jsonl") is None
    assert [e.id for e in read_events(tmp_path / "t.jsonl")] == [a.id, b.id]


def test_reopened_log_continues_the_chain(tmp_path):
    path = tmp_path / "t.jsonl"
    TranscriptLog(path, "run-1").append("node", node="intake")
    again = TranscriptLog(path, "run-1").append("run.resumed")
    assert again.seq == 2
    assert verify_chain(path) is None


def test_an_edited_line_breaks_the_chain_there(tmp_path):
    path = tmp_path / "t.jsonl"
    log = TranscriptLog(path, "run-1")
    for i in range(4):
        log.append("node", node=f"n{i}")
    lines = path.read_text().splitlines()
    event = json.loads(lines[1])
    event["data"]["node"] = "forged"
    lines[1] = json.dumps(event)
    path.write_text("\n".join(lines) + "\n")
    broken = verify_chain(path)
    assert broken is not None and broken.line == 2 and "hash" in broken.reason


def test_a_removed_line_breaks_the_chain(tmp_path):
    path = tmp_path / "t.jsonl"
    log = TranscriptLog(path, "run-1")
    for i in range(4):
        log.append("node", node=f"n{i}")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    broken = verify_chain(path)
    assert broken is not None and broken.line == 3


def test_parallel_appends_keep_one_unbroken_chain(tmp_path):
    path = tmp_path / "t.jsonl"
    log = TranscriptLog(path, "run-1")
    seen = []
    log.subscribe(seen.append)

    def work(n: int) -> None:
        for i in range(50):
            log.append("tool.call", ticket=f"T-{n}", i=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify_chain(path) is None
    assert [e.seq for e in read_events(path)] == list(range(1, 201))
    assert len(seen) == 200


def test_a_torn_last_line_from_a_crash_is_cut_off_and_reported(tmp_path):
    path = tmp_path / "t.jsonl"
    log = TranscriptLog(path, "run-1")
    log.append("node", node="a")
    log.append("node", node="b")
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"seq": 3, "id": "ev-0000')  # killed mid-append
    again = TranscriptLog(path, "run-1")
    assert again.repaired_bytes == len(b'{"seq": 3, "id": "ev-0000')
    assert path.read_bytes() == whole
    again.append("run.resumed")
    assert verify_chain(path) is None
    assert TranscriptLog(path, "run-1").repaired_bytes == 0


def test_events_read_while_others_append_are_whole_and_in_order(tmp_path):
    log = TranscriptLog(tmp_path / "t.jsonl", "run-1")
    assert log.events() == []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            log.append("sandbox.stop", sandbox="x" * 20_000)  # lines long enough to be written in parts

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(50):
            seqs = [e.seq for e in log.events()]
            assert seqs == list(range(1, len(seqs) + 1))
    finally:
        stop.set()
        thread.join()
