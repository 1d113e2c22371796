"""Secrets taken out of config values before they are echoed (reports, logs, checkpoints).

A config may hold credentials: ``[kafka] sasl_password``, a librdkafka-style
``sasl.password`` or ``ssl.key.pem`` in a learner's own table, an object-store URI
with a key in it (``s3://KEY:SECRET@bucket/prefix``). Wherever streamlearn writes
a config back out, it goes through :func:`redact` first.

A key is secret (its value becomes ``"<redacted>"``) when, lower-cased with ``.``
and ``-`` read as ``_``,

- it contains ``password``, ``passwd``, ``secret`` or ``credential``
  (``sasl_password``, ``ssl.keystore.password``, ``client_secret``);
- one of its words is ``token`` or ``apikey`` / ``api_key`` (``access_token``,
  ``sasl.oauthbearer.token``; not ``tokenizer`` or ``max_tokens``, which are settings);
- it is SSL key material: it starts with ``ssl_key`` and is not a path to it
  (``ssl_key``, ``ssl.key.pem``, ``ssl_keystore``; not ``ssl_keyfile`` or
  ``ssl.key.location``);
- it is a SASL configuration string that embeds credentials (``sasl.jaas.config``,
  ``sasl.oauthbearer.config``).

Values are redacted whatever their type (a nested table too). In every string
that remains, the password of a URI's user information (``scheme://user:PASSWORD@``)
is redacted.

>>> redact({"kafka": {"sasl_password": "hunter2", "topic": "events"}, "dir": "s3://AK:SK@bucket/x"})
{'kafka': {'sasl_password': '<redacted>', 'topic': 'events'}, 'dir': 's3://AK:<redacted>@bucket/x'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_log_event", "redact_text"]

REDACTED = "<redacted>"

_SUBSTRINGS = ("password", "passwd", "secret", "credential")
_WORDS = frozenset({"token", "apikey"})
_WHOLE = frozenset({"api_key", "sasl_jaas_config", "sasl_oauthbearer_config"})
_KEY_PATHS = ("file", "location", "path")
# scheme://user:PASSWORD@ — the password is what is replaced.
_URI_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@]*:)[^\s/@]+@")


def is_secret_key(key: Any) -> bool:
    """Whether a config key names a secret (see the module docstring)."""
    if not isinstance(key, str):
        return False
    name = key.lower().replace(".", "_").replace("-", "_")
    if any(part in name for part in _SUBSTRINGS) or name in _WHOLE or name.endswith("_api_key"):
        return True
    if _WORDS & set(name.split("_")):
        return True
    return name.startswith("ssl_key") and not name.endswith(_KEY_PATHS)


def redact_text(text: str) -> str:
    """``text`` with the passwords of any ``scheme://user:password@`` URIs in it redacted."""
    return _URI_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)


def redact(value: Any) -> Any:
    """A copy of ``value`` (nested dicts, lists, strings) with secrets redacted; other values as they are."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(k) and v is not None else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [redact(v) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_log_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: every log line is redacted like a config."""
    return redact(event)
