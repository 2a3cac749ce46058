"""API tokens, roles and the per-token rate limit.

A token is `cvy_` followed by 43 characters of URL-safe base64 (256 random
bits). Only its SHA-256 is stored: a stolen database does not hand out
working tokens, and since tokens are random (not passwords) a slow hash adds
nothing. Lookup is by hash, and the stored hash is compared again in constant
time before the token is trusted.

Roles, each including the rights of the ones before it except `enqueuer`:

| role       | may                                                             |
|------------|-----------------------------------------------------------------|
| `viewer`   | read jobs, queues, workers, the dead-letter queue               |
| `enqueuer` | enqueue only, optionally limited to listed tasks and/or queues |
| `operator` | read, enqueue, retry, cancel, purge, pause and resume queues    |
| `admin`    | all of the above, and manage tokens                             |
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from conveyor.backends.base import ApiToken, Backend, Role
from conveyor.errors import ConfigurationError
from conveyor.operations import TOKEN_PREFIX, Operations, hash_token, local_actor

_TOKEN_LENGTH = len(TOKEN_PREFIX) + 43


class Permission(StrEnum):
    READ = "read"
    ENQUEUE = "enqueue"
    OPERATE = "operate"
    ADMIN = "admin"


GRANTS: dict[Role, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "enqueuer": frozenset({Permission.ENQUEUE}),
    "operator": frozenset({Permission.READ, Permission.ENQUEUE, Permission.OPERATE}),
    "admin": frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token, or everyone when authentication is off (loopback only)."""

    name: str
    role: Role
    token_id: int | None = None
    tasks: Sequence[str] = ()
    queues: Sequence[str] = ()

    def may(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def may_enqueue(self, task: str, queue: str) -> str | None:
        """None if allowed, else why not."""
        if not self.may(Permission.ENQUEUE):
            return f"role {self.role} may not enqueue"
        if self.tasks and task not in self.tasks:
            return f"this token may only enqueue the tasks {', '.join(self.tasks)}"
        if self.queues and queue not in self.queues:
            return f"this token may only enqueue into the queues {', '.join(self.queues)}"
        return None


ANONYMOUS = Principal(name="anyone (authentication is off)", role="admin")


def looks_like_token(token: str) -> bool:
    return len(token) == _TOKEN_LENGTH and token.startswith(TOKEN_PREFIX) and token.isascii()


MAX_TOKEN_LIFETIME = 10 * 365 * 86400.0
_DURATION = re.compile(r"^\s*(\d{1,9})\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `12h`, `30d`, `2w` (or plain seconds) as seconds."""
    found = _DURATION.match(text)
    if found is None:
        raise ConfigurationError(
            f"a duration is a whole number with a unit s, m, h, d or w (e.g. 30d), got {text!r}"
        )
    return float(int(found[1]) * _UNIT_SECONDS[found[2]])


def check_lifetime(expires_in: float | None) -> float | None:
    if expires_in is None:
        return None
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not (
        0 < expires_in <= MAX_TOKEN_LIFETIME
    ):
        raise ConfigurationError(
            f"a token's lifetime is more than 0 and at most 10 years (in seconds), "
            f"got {expires_in!r}"
        )
    return float(expires_in)


def create_token(
    backend: Backend,
    *,
    name: str,
    role: str,
    tasks: Sequence[str] = (),
    queues: Sequence[str] = (),
    expires_in: float | None = None,
) -> tuple[str, int]:
    """Store a new token and return (the token, its id); audited as done by this
    process's user (`python:<user>@<host>`). The token is not kept anywhere.

    With `expires_in` (seconds), the token stops working that long from now,
    by the database's clock; without, it works until it is revoked.
    """
    token, stored = Operations(backend).create_token(
        name=name, role=role, tasks=tasks, queues=queues,
        expires_in=check_lifetime(expires_in),
        actor=local_actor("python"), source="local",
    )
    return token, stored.id


class TokenCheck:
    """Turns a presented token into a `Principal`, recording use at most once a minute."""

    TOUCH_EVERY = 60.0

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def principal(self, token: str) -> Principal | None:
        return self.check(token)[0]

    def check(self, token: str) -> tuple[Principal | None, str]:
        """The principal of a token, or None and why it is refused (for a 401's detail)."""
        if not looks_like_token(token):
            return None, "this token is unknown or revoked"
        digest = hash_token(token)
        found: ApiToken | None = self.backend.token_by_hash(digest)
        if found is None or not hmac.compare_digest(found.token_hash, digest):
            return None, "this token is unknown or revoked"
        if found.revoked_at is not None:
            return None, "this token is unknown or revoked"
        if found.expired:
            return None, (
                f"token {found.id} ({found.name}) expired at {_utc(found.expires_at)}: "
                "ask an admin for a new one (`conveyor tokens create --expires-in 30d`)"
            )
        return self._principal(found), ""

    def session(self, session_id: str) -> Principal | None:
        """The principal of a live dashboard session (see `conveyor.web.sessions`)."""
        if not looks_like_session(session_id):
            return None
        found = self.backend.session_token(hash_token(session_id))
        return None if found is None else self._principal(found)

    def _principal(self, found: ApiToken) -> Principal:
        now = time.monotonic()
        with self._lock:
            due = now - self._touched.get(found.id, -math.inf) >= self.TOUCH_EVERY
            if due:
                self._touched[found.id] = now
        if due:
            self.backend.token_touch(found.id)
        return Principal(
            name=found.name, role=found.role, token_id=found.id,
            tasks=tuple(found.tasks), queues=tuple(found.queues),
        )


def _utc(epoch: float | None) -> str:
    from datetime import UTC, datetime

    if epoch is None:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- dashboard sessions --------------------------------------------------------------
SESSION_SECONDS = 12 * 3600
"""A dashboard sign-in lasts this long, judged by the server (not only by the cookie)."""
_SESSION_LENGTH = 43


def looks_like_session(session_id: str) -> bool:
    return (
        len(session_id) == _SESSION_LENGTH and session_id.isascii()
        and session_id.replace("-", "").replace("_", "").isalnum()
    )


def start_session(backend: Backend, principal: Principal,
                  lifetime: float = SESSION_SECONDS) -> str:
    """A new session for a signed-in token: the random id for the cookie (only its
    SHA-256 is stored). It is not a token: the API refuses it as a Bearer."""
    if principal.token_id is None:
        raise ConfigurationError("a session is made from a stored token")
    session_id = secrets.token_urlsafe(32)
    backend.session_insert(hash_token(session_id), principal.token_id, lifetime)
    return session_id


def end_session(backend: Backend, session_id: str) -> None:
    if looks_like_session(session_id):
        backend.session_end(hash_token(session_id))


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per caller: `rate` requests a second on average, bursts of `burst`.

    Kept in this process's memory: with several web processes each applies the
    limit on its own (the effective limit is the sum).
    """

    rate: float
    burst: int
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ConfigurationError(
                f"the rate limit needs rate > 0 and burst >= 1, got {self.rate}/{self.burst}"
            )

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one request: 0.0 if allowed, else the seconds until one is allowed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) > 100_000:  # forget idle callers rather than grow forever
                    self._buckets.clear()
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate
            )
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate
