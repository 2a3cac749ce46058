CREATE TABLE IF NOT EXISTS conveyor_schema (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)
