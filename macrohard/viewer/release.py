"""The release as a run page shows it: tag, image, packages and smoke check, folded from the run's events.

The events may have been edited by hand: every field is read as text or left out.
"""

from __future__ import annotations

from pydantic import BaseModel

from macrohard.transcript.log import Event


class ReleaseCard(BaseModel):
    """The last image build, smoke check and tag of a run: what was released, or why nothing was."""

    tag: str | None = None
    sha: str | None = None
    image: str | None = None
    image_id: str | None = None
    dockerfile: str | None = None  # "Dockerfile" (the deployer's) or "default"
    build_error: str | None = None
    refused: str | None = None  # why the image was not built at all
    smoke_kind: str | None = None
    smoke_command: str | None = None
    smoke_passed: bool | None = None
    smoke_exit_code: str | None = None
    smoke_timed_out: bool = False
    smoke_reason: str | None = None
    smoke_health_url: str | None = None
    smoke_default: bool = False
    smoke_output: str | None = None
    attempts: int = 0  # image builds and smoke checks tried
    stack: str | None = None
    packages: list[str] = []  # "name version sha256", the third-party packages in the released image

    @property
    def seen(self) -> bool:
        return bool(self.image or self.tag or self.refused)

    def add(self, event: Event) -> None:
        d = event.data
        match event.kind:
            case "image.refused":
                self.attempts += 1
                self.image, self.refused, self.build_error = _text(d.get("image")), _text(d.get("reason")), None
                self._no_smoke()
            case "image.build":
                self.attempts += 1
                self.image, self.image_id = _text(d.get("image")), _text(d.get("image_id"))
                self.dockerfile, self.build_error, self.refused = _text(d.get("dockerfile")), _text(d.get("error")), None
                self._no_smoke()
            case "smoke":
                self.smoke_kind, self.smoke_command = _text(d.get("product")), _text(d.get("command"))
                self.smoke_passed = d.get("passed") is True
                self.smoke_exit_code = _text(d.get("exit_code"))
                self.smoke_timed_out = d.get("timed_out") is True
                self.smoke_reason, self.smoke_health_url = _text(d.get("reason")), _text(d.get("health_url"))
                self.smoke_default = d.get("default") is True
                self.smoke_output = _text(d.get("output_tail"))
            case "git.tag":
                self.tag, self.sha = _text(d.get("tag")), _text(d.get("sha"))
                self.image = _text(d.get("image")) or self.image
                self.image_id = _text(d.get("image_id")) or self.image_id
                self.stack = _text(d.get("stack"))
                items = d.get("packages") if isinstance(d.get("packages"), list) else []
                self.packages = [" ".join(str(p.get(k, "")) for k in ("name", "version", "sha256"))
                                 for p in items if isinstance(p, dict)]

    def _no_smoke(self) -> None:
        # A new attempt: its tag, if any, comes after it.
        self.tag = self.sha = None
        self.smoke_kind = self.smoke_command = self.smoke_exit_code = self.smoke_reason = None
        self.smoke_health_url = self.smoke_output = None
        self.smoke_passed, self.smoke_timed_out, self.smoke_default = None, False, False


def _text(value: object) -> str | None:
    return None if value is None else str(value)
