"""Keep secrets out of the transcript, the product repo and everything that shows them.

Secrets are the values of environment variables whose names say they are secret (a
name part that is, or ends with, KEY, TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL(S),
or is AUTH), of every variable the config names (`[secrets] env`, each model's
`api_key_env`), and the passwords in URLs of any variable (`DB_URL=postgres://u:pw@h`).
They are replaced wherever they appear, before anything is stored or acted on; tool
arguments are redacted after JSON decoding, so `\\u0073k-...` escapes do not hide a key.
What a role is about to commit is scanned for each secret in its common encodings
(JSON escapes, base64, hex) too.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_PART = re.compile(r"^(.*(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)|AUTH)$")
# Shorter values are too likely to occur by chance ("true", a port number).
MIN_SECRET_LENGTH = 8
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s:@]+)(?::([^/\s@]*))?@")


def secret_named(name: str) -> bool:
    """Whether a variable's name says it holds a secret: GH_TOKEN, OPENAI_API_KEY; not GIT_AUTHOR_NAME."""
    return any(_SECRET_PART.match(part) for part in re.split(r"[_\W]+", name.upper()) if part)


def without_userinfo(text: str) -> str:
    """URLs in text with their user and password taken out (before they are logged or shown)."""
    return _USERINFO.sub(lambda m: m.group(1), text)


def strip_url(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class Redactor:
    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(((v, k) for k, v in secrets.items() if len(v) >= MIN_SECRET_LENGTH), key=lambda p: -len(p[0]))
        self._encoded = [(form, name) for secret, name in self._secrets for form in _encodings(secret)]

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], key_variables: Iterable[str] = ()) -> Redactor:
        names = {n for n in environ if secret_named(n)} | set(key_variables)
        found = {n: environ[n] for n in names if environ.get(n)}
        for name, value in environ.items():
            for match in _USERINFO.finditer(value):
                if match.group(3):
                    found[f"{name} password"] = match.group(3)
        return cls(found)

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

    def arguments(self, raw: str) -> str:
        """Tool-call arguments redacted on their decoded values, re-encoded; raw text if not JSON."""
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError):
            return self.text(raw)
        redacted = self.value(decoded)
        return raw if redacted == decoded else json.dumps(redacted, ensure_ascii=False)

    def find(self, data: bytes) -> list[str]:
        """Names of the secrets in data, as they are or JSON-escaped, base64- or hex-encoded."""
        if not self._secrets:
            return []
        text = data.decode("utf-8", errors="replace")
        found = {name for form, name in self._encoded if form in text}
        lowered = text.lower()
        found |= {name for secret, name in self._secrets if secret.encode().hex() in lowered}
        return sorted(found)


def _encodings(secret: str) -> list[str]:
    """The secret's text as-is, JSON-\\u-escaped, and in base64 at each of the three alignments."""
    raw = secret.encode()
    forms = [secret, "".join(f"\\u{ord(c):04x}" for c in secret)]
    for pad in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * pad + raw).decode()
            # Drop the characters that depend on the bytes around the secret.
            start = (pad * 4 + 2) // 3
            end = len(encoded) - (0, 3, 2)[(pad + len(raw)) % 3]
            core = encoded[start:end].rstrip("=")
            if len(core) >= MIN_SECRET_LENGTH:
                forms.append(core)
    return forms
