"""Keep secrets out of the transcript, the product repo and everything that shows them.

Secrets are the values of environment variables whose names say they are secret
(API keys, tokens, passwords) and of every variable the config names as a model's
key. They are replaced wherever they appear, before anything is stored or acted on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|AUTH)", re.IGNORECASE)
# Shorter values are too likely to occur by chance ("true", a port number).
MIN_SECRET_LENGTH = 8


class Redactor:
    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(((v, k) for k, v in secrets.items() if len(v) >= MIN_SECRET_LENGTH), key=lambda p: -len(p[0]))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], key_variables: Iterable[str] = ()) -> Redactor:
        names = {n for n in environ if SECRET_NAME.search(n)} | set(key_variables)
        return cls({n: environ[n] for n in names if environ.get(n)})

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for secret, name in self._secrets:
            if secret in value:
                value = value.replace(secret, f"[REDACTED:{name}]")
        return value

    def value(self, obj: Any) -> Any:
        """The same structure with every string redacted."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj
