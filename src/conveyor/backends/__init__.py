"""Storage engines. `open_backend(url)` picks one by URL scheme."""

from __future__ import annotations

from conveyor.backends.base import Backend
from conveyor.clock import Clock
from conveyor.errors import ConfigurationError


def backend_scheme(url: str) -> str:
    """`sqlite` or `postgresql` for a URL, or `ConfigurationError` saying what to write."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return scheme
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigurationError(
        f"unknown backend URL {url!r}: use sqlite:///path/to/file.db or postgresql://user@host/db"
    )


def open_backend(url: str, *, clock: Clock | None = None, connect_timeout: float = 5.0) -> Backend:
    """Build (without connecting) the backend a URL names."""
    scheme = backend_scheme(url)
    if scheme == "sqlite":
        from conveyor.backends.sqlite.backend import SQLiteBackend

        return SQLiteBackend(url, clock=clock)
    try:
        from conveyor.backends.postgres.backend import PostgresBackend
    except ImportError as exc:  # psycopg is an optional dependency
        raise ConfigurationError(
            f"the PostgreSQL backend needs psycopg ({exc}): install conveyor's postgres extra "
            "(from a clone of conveyor: pip install -e '.[postgres]')"
        ) from exc
    return PostgresBackend(url, connect_timeout=connect_timeout)


__all__ = ["Backend", "backend_scheme", "open_backend"]
