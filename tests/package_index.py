"""A real package index on loopback (PEP 503 simple pages over HTTP), holding wheels made here."""

from __future__ import annotations

import base64
import hashlib
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from macrohard.dependencies.manifest import canonical


def make_wheel(folder: Path, name: str, version: str, modules: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel, written by hand (no build backend runs)."""
    dist = f"{name.replace('-', '_')}-{version}"
    info = f"{dist}.dist-info"
    files = {path: text.encode() for path, text in modules.items()}
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: macrohard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{path},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}" for path, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join(record) + f"\n{info}/RECORD,,\n").encode()
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class PackageIndex:
    """Serves root/simple/<name>/ pages linking root/files/<file>#sha256=..."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "files").mkdir(parents=True, exist_ok=True)
        self.served: list[str] = []
        index = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                index.served.append(self.path)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/simple"

    def add(self, file: Path, *, announced_sha256: str | None = None) -> None:
        """Publish a file; `announced_sha256` makes the page lie about its hash."""
        target = self.root / "files" / file.name
        target.write_bytes(file.read_bytes())
        name = canonical(file.name.split("-", 1)[0])
        page = self.root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        sha = announced_sha256 or hashlib.sha256(target.read_bytes()).hexdigest()
        links = page.read_text() if page.exists() else ""
        page.write_text(links + f'<a href="../../files/{file.name}#sha256={sha}">{file.name}</a><br>\n')

    def start(self) -> PackageIndex:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
