"""Encryption at rest of job arguments and results, as a built-in middleware.

    from conveyor import Conveyor
    from conveyor.encryption import Encryption

    app = Conveyor(url, middleware=[Encryption(keys={
        "2026-02": os.environ["CONVEYOR_KEY_2026_02"],   # the first key encrypts
        "2026-01": os.environ["CONVEYOR_KEY_2026_01"],   # every key decrypts
    })])

Needs the `cryptography` package (`pip install 'conveyor[crypto]'`). Keys are
32 random bytes (AES-256-GCM), given as bytes or as URL-safe base64 text
(`Encryption.generate_key()` makes one). Each key has an id of your choice,
stored with every ciphertext, so rotation is: put the new key first, keep
the old ones until no job encrypted with them is left, then drop them.

Per app, not per task: every job of an app that holds a key ring is
encrypted, so no task can leak a secret by forgetting to opt in, and the
enqueuing app and its workers must hold the same ring anyway. Enqueue
encrypts `[args, kwargs]` (the task name is bound in as associated data, so
a ciphertext cannot be moved to another task); the worker decrypts before
the attempt and encrypts the return value after it. The database, the API,
the dashboard and the CLI only ever see `{"$encrypted": {"key": id, ...}}`;
readers show the key id, never try to decrypt. `Job.result()` and
`Job.wait()` decrypt with the app's ring. A job whose key the worker does
not hold fails its attempt at once with `EncryptionKeyMissing` naming the
key id, not retried (add the key, then retry it from the dead-letter queue).
Jobs stored before encryption was turned on run as they are.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError, EncryptionError, EncryptionKeyMissing
from conveyor.jsonvalue import dumps
from conveyor.middleware import Attempt, AttemptNext, AttemptResult, EnqueueJob, Middleware
from conveyor.redaction import ENVELOPE, envelope_key

if TYPE_CHECKING:
    from conveyor.job import Job

ALGORITHM = "A256GCM"
_NONCE = 12


def _aesgcm() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigurationError(
            "encryption needs the cryptography package: pip install 'conveyor[crypto]'"
        ) from None
    return AESGCM


def _key_bytes(key_id: str, key: bytes | str) -> bytes:
    if isinstance(key, str):
        try:
            raw = base64.urlsafe_b64decode(key.strip() + "=" * (-len(key.strip()) % 4))
        except (ValueError, binascii.Error):
            raw = b""
    elif isinstance(key, bytes):
        raw = key
    else:
        raise ConfigurationError(f"key {key_id!r} must be bytes or base64 text, got {key!r}")
    if len(raw) != 32:
        raise ConfigurationError(
            f"key {key_id!r} must be 32 bytes (AES-256), or their URL-safe base64 text; "
            "make one with conveyor.encryption.Encryption.generate_key()"
        )
    return raw


class Encryption(Middleware):
    """A key ring: the first key encrypts, every key decrypts; each ciphertext names its key."""

    def __init__(self, keys: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]) -> None:
        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not pairs:
            raise ConfigurationError("Encryption needs at least one key (the first encrypts)")
        aesgcm = _aesgcm()
        self._ciphers: dict[str, Any] = {}
        for key_id, key in pairs:
            if not isinstance(key_id, str) or not key_id or len(key_id) > 64:
                raise ConfigurationError(f"a key id is text of 1 to 64 characters, got {key_id!r}")
            if key_id in self._ciphers:
                raise ConfigurationError(f"key id {key_id!r} is given twice")
            self._ciphers[key_id] = aesgcm(_key_bytes(key_id, key))
        self.current = pairs[0][0]
        """The id of the key that encrypts."""

    def __repr__(self) -> str:  # never the keys
        return f"Encryption(keys={list(self._ciphers)!r})"

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    @staticmethod
    def generate_key() -> str:
        """A new random key as URL-safe base64 text (keep it in a secret store)."""
        return base64.urlsafe_b64encode(os.urandom(32)).decode()

    # -- the envelope -----------------------------------------------------------------
    def encrypt(self, value: Any, context: str) -> dict[str, Any]:
        """`value` (JSON) as an envelope, bound to `context` (the task name)."""
        nonce = os.urandom(_NONCE)
        plain = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
        sealed = self._ciphers[self.current].encrypt(nonce, plain, context.encode())
        data = base64.b64encode(nonce + sealed).decode()
        return {ENVELOPE: {"key": self.current, "alg": ALGORITHM, "data": data}}

    def decrypt(self, envelope: Any, context: str, what: str = "payload") -> Any:
        """The value an envelope holds; `EncryptionKeyMissing` when its key is not in the
        ring, `EncryptionError` when it does not decrypt (tampered, or another task's)."""
        key_id = envelope_key(envelope)
        if key_id is None:
            raise EncryptionError(f"the {what} is not an encrypted payload")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise EncryptionKeyMissing(
                f"the {what} is encrypted with key {key_id!r}, which is not in this "
                f"process's key ring ({', '.join(self._ciphers)}): add that key to "
                "Encryption(keys=...) (every key decrypts, the first encrypts)"
                + (", then retry the job" if "argument" in what else ""), key_id=key_id,
            )
        inner = envelope[ENVELOPE]
        try:
            raw = base64.b64decode(str(inner.get("data", "")), validate=True)
            plain = cipher.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode())
            return json.loads(plain)
        except Exception as exc:
            raise EncryptionError(
                f"the {what} does not decrypt with key {key_id!r} ({type(exc).__name__}): it "
                "was altered, or encrypted for another task or with another key of that id"
            ) from None

    # -- the hooks ----------------------------------------------------------------------
    def around_enqueue(
        self, jobs: list[EnqueueJob], call_next: Callable[[list[EnqueueJob]], list[Job[Any]]]
    ) -> list[Job[Any]]:
        sealed = [
            replace(job, args=(), kwargs=self.encrypt([list(job.args), dict(job.kwargs)], job.task))
            for job in jobs
        ]
        return call_next(sealed)

    def around_attempt(self, attempt: Attempt, call_next: AttemptNext) -> AttemptResult:
        stored = dict(attempt.kwargs)
        if attempt.args or envelope_key(stored) is None:
            result = call_next()  # stored before encryption was turned on: run as it is
        else:
            try:
                args, kwargs = self.decrypt(stored, attempt.task,
                                            f"job {attempt.id}'s arguments")
            except EncryptionError as exc:
                return AttemptResult.failed(exc, retryable=False)
            result = call_next(replace(attempt, args=tuple(args),
                                       kwargs=MappingProxyType(dict(kwargs))))
        if result.kind == "ok" and result.result_json not in (None, "null"):
            sealed = self.encrypt(result.value, attempt.task)
            return replace(result, result_json=dumps(sealed))
        return result

    def open_result(self, value: Any, task: str) -> Any:
        """A stored result as the task returned it (decrypted when it is encrypted)."""
        if envelope_key(value) is None:
            return value
        return self.decrypt(value, task, "result")


__all__ = ["ALGORITHM", "Encryption"]
