-- Workflows: chains, groups, chords, DAGs and batches are rows beside the jobs.
--
-- A node is a job plus one row here. A node that waits for its parents is a job
-- in state 'scheduled' with run_at at the end of time (9999-12-30, see
-- conveyor.backends.base.PENDING_RUN_AT): nothing stages or fetches it. The
-- completion that resolves its last parent makes it 'available' (or cancels it,
-- as its runs_when says) in the same transaction, fenced like that completion.
CREATE TABLE conveyor_workflows (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL DEFAULT '',
    created_at   REAL    NOT NULL,
    cancelled_at REAL
);

CREATE TABLE conveyor_workflow_nodes (
    job_id      INTEGER PRIMARY KEY,
    workflow_id TEXT    NOT NULL,
    name        TEXT    NOT NULL DEFAULT '',
    -- succeeded: runs when every parent succeeded, cancelled as soon as one did not;
    -- finished: runs when every parent finished, whatever the outcome ("run anyway");
    -- failed: runs when every parent finished and one did not succeed, else cancelled.
    runs_when   TEXT    NOT NULL CHECK (runs_when IN ('succeeded', 'finished', 'failed')),
    -- none: its own arguments; previous: the one parent's result is prepended
    -- (chain); all: the list of the parents' results, in order, is prepended (chord).
    inputs      TEXT    NOT NULL CHECK (inputs IN ('none', 'previous', 'all')),
    waiting     INTEGER NOT NULL CHECK (waiting >= 0),
    failed      INTEGER NOT NULL DEFAULT 0 CHECK (failed >= 0)
);
CREATE INDEX conveyor_workflow_nodes_workflow ON conveyor_workflow_nodes (workflow_id, job_id);

-- One row per dependency; resolved once, when the parent first finishes, so a
-- parent that finishes twice (retried by an operator) is never counted twice.
CREATE TABLE conveyor_workflow_edges (
    parent_id INTEGER NOT NULL,
    child_id  INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    resolved  INTEGER NOT NULL DEFAULT 0 CHECK (resolved IN (0, 1)),
    PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID;
CREATE INDEX conveyor_workflow_edges_child ON conveyor_workflow_edges (child_id, position);
