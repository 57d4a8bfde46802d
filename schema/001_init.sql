-- kjournal schema, version 1.
-- sessions holds the current state of every session, derived from events;
-- events is append-only. The invariants between them (checked by verify):
-- a session is closed iff it has a close event; event_count, created_ms,
-- updated_ms and closed_ms are the count, min, max and first close time of
-- its events, recorded_ms the latest time one was stored; counts holds the
-- totals by state, user and instance.

PRAGMA application_id = 1263161934; -- 'KJRN'

CREATE TABLE sessions (
    id               INTEGER PRIMARY KEY,
    session_id       TEXT    NOT NULL UNIQUE,
    state            INTEGER NOT NULL CHECK (state IN (1, 2)), -- 1 open, 2 closed
    instance         TEXT,
    user             TEXT,
    engine_id        TEXT,   -- Spark application id, pod label spark-app-selector
    engine_tag       TEXT,   -- pod label kyuubi-unique-tag
    engine_namespace TEXT,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    closed_ms        INTEGER NOT NULL DEFAULT 0,
    close_reason     TEXT,
    event_count      INTEGER NOT NULL,
    recorded_ms      INTEGER NOT NULL  -- when the journal last stored an event of it
);
CREATE INDEX sessions_by_created ON sessions (created_ms);
CREATE INDEX sessions_open ON sessions (created_ms) WHERE state = 1;
CREATE INDEX sessions_by_user ON sessions (user, created_ms);
-- A CONNECTION engine's tag is its own session's id, found through the
-- session_id index; only tags of other sessions (shared engines) need this
-- one, which keeps random keys out of it for the common case.
CREATE INDEX sessions_by_engine_tag ON sessions (engine_tag)
    WHERE engine_tag IS NOT NULL AND engine_tag <> session_id;
CREATE INDEX sessions_by_engine_id ON sessions (engine_id) WHERE engine_id IS NOT NULL;

CREATE TABLE events (
    seq              INTEGER PRIMARY KEY,  -- commit order
    event_id         TEXT    NOT NULL UNIQUE,
    session          INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    type             INTEGER NOT NULL CHECK (type IN (1, 2)), -- 1 open, 2 close
    time_ms          INTEGER NOT NULL,
    recorded_ms      INTEGER NOT NULL,
    instance         TEXT,
    user             TEXT,
    engine_id        TEXT,
    engine_tag       TEXT,
    engine_namespace TEXT,
    reason           TEXT,
    payload          TEXT
);
CREATE INDEX events_by_session ON events (session, time_ms);
CREATE INDEX events_by_time ON events (time_ms);

-- Totals kept with every append so that stats never scans the journal.
-- dim is 'state' (key 'all'), 'user' or 'instance' (key '' for none);
-- 'events' rows count events by type (key 'session_open' / 'session_close').
CREATE TABLE counts (
    dim    TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    open   INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dim, key)
) WITHOUT ROWID;

CREATE TABLE reconcile_runs (
    id             INTEGER PRIMARY KEY,
    started_ms     INTEGER NOT NULL,
    finished_ms    INTEGER NOT NULL DEFAULT 0,
    trigger        TEXT    NOT NULL,
    dry_run        INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL DEFAULT 'running',
    pods_seen      INTEGER NOT NULL DEFAULT 0,
    actions_ok     INTEGER NOT NULL DEFAULT 0,
    actions_failed INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE reconcile_actions (
    id         INTEGER PRIMARY KEY,
    run        INTEGER NOT NULL REFERENCES reconcile_runs (id) ON DELETE CASCADE,
    time_ms    INTEGER NOT NULL,
    namespace  TEXT,
    pod        TEXT,
    uid        TEXT,
    engine_tag TEXT,
    engine_id  TEXT,
    action     TEXT    NOT NULL,
    reason     TEXT,
    result     TEXT    NOT NULL,
    http_code  INTEGER NOT NULL DEFAULT 0,
    message    TEXT
);
CREATE INDEX actions_by_run ON reconcile_actions (run, id);
CREATE INDEX actions_by_tag ON reconcile_actions (engine_tag) WHERE engine_tag IS NOT NULL;
CREATE INDEX actions_by_engine_id ON reconcile_actions (engine_id) WHERE engine_id IS NOT NULL;

-- When the reconciler first saw a pod terminal (for the retain period of pods
-- without a container finishedAt).
CREATE TABLE pod_terminal (
    uid           TEXT    PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
