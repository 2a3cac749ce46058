-- Workflows: chains, groups, chords, DAGs and batches are rows beside the jobs.
--
-- A node is a job plus one row here. A node that waits for its parents is a job
-- in state 'scheduled' with run_at at the end of time (9999-12-30, see
-- conveyor.backends.base.PENDING_RUN_AT): nothing stages or fetches it. The
-- completion that resolves its last parent makes it 'available' (or cancels it,
-- as its runs_when says) in the same transaction, fenced like that completion.
CREATE TABLE conveyor_workflows (
    id           text    PRIMARY KEY,
    name         text    NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    cancelled_at timestamptz
);

CREATE TABLE conveyor_workflow_nodes (
    job_id      bigint  PRIMARY KEY,
    workflow_id text    NOT NULL,
    name        text    NOT NULL DEFAULT '',
    -- succeeded: runs when every parent succeeded, cancelled as soon as one did not;
    -- finished: runs when every parent finished, whatever the outcome ("run anyway");
    -- failed: runs when every parent finished and one did not succeed, else cancelled.
    runs_when   text    NOT NULL CHECK (runs_when IN ('succeeded', 'finished', 'failed')),
    -- none: its own arguments; previous: the one parent's result is prepended
    -- (chain); all: the list of the parents' results, in order, is prepended (chord).
    inputs      text    NOT NULL CHECK (inputs IN ('none', 'previous', 'all')),
    waiting     integer NOT NULL CHECK (waiting >= 0),
    failed      integer NOT NULL DEFAULT 0 CHECK (failed >= 0)
);
CREATE INDEX conveyor_workflow_nodes_workflow ON conveyor_workflow_nodes (workflow_id, job_id);

-- One row per dependency; resolved once, when the parent first finishes, so a
-- parent that finishes twice (retried by an operator) is never counted twice.
CREATE TABLE conveyor_workflow_edges (
    parent_id bigint  NOT NULL,
    child_id  bigint  NOT NULL,
    position  integer NOT NULL,
    resolved  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX conveyor_workflow_edges_child ON conveyor_workflow_edges (child_id, position);

INSERT INTO conveyor_schema (version, name) VALUES (14, '0014_workflows.sql');
