"""One module per benchmarked system: its tasks (noop, sleep10, latency) written
with that system's own idiomatic API, and a client (enqueue one, enqueue many).

Every module reads its connection settings from the environment the runner sets
(BENCH_REDIS_URL, BENCH_PG_URL, BENCH_SQLITE_PATH, BENCH_PROBE_DIR).
"""
