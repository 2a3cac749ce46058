"""Named SQL, loaded once from the `.sql` files that sit beside each backend.

A query file holds one statement; its file name (without `.sql`) is its name.
Migrations are `migrations/NNNN_description.sql`, applied in number order.
No SQL is assembled from strings at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_queries(package: str) -> dict[str, str]:
    """Every `queries/*.sql` of `package`, by name."""
    folder = resources.files(package).joinpath("queries")
    return {
        entry.name.removesuffix(".sql"): entry.read_text(encoding="utf-8").strip()
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


def load_migrations(package: str) -> list[Migration]:
    """Every `migrations/NNNN_*.sql` of `package`, oldest first."""
    folder = resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    # Numbers are reserved per feature, so one may be missing while it is being written;
    # they must still start at 1 and never repeat.
    if not versions or versions[0] != 1 or len(set(versions)) != len(versions):
        raise RuntimeError(
            f"migrations of {package} must be numbered from 1, once each: {versions}"
        )
    return found
