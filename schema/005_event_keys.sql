-- kjournal schema, version 5 (issue 15): fewer pages written per event.
--
-- An event's id is unique within its session (a server event's among the
-- server events), no longer across the journal. The journal-wide UNIQUE
-- (event_id) was an index on a random text key: every stored event dirtied
-- a page of it of its own, and with WAL a dirtied page is written at every
-- commit (45 % of the pages a batch of 1,024 events wrote). An event's
-- session row is looked up before its event is stored anyway, and in
-- (session, event_id) the events of a session sit together, those of new
-- sessions at the end. A retry names the same session as the event it
-- repeats, so it is still a duplicate; Kyuubi's ids name their session
-- (kyuubi:<sessionId>:<phase>). The index also serves what
-- events_by_session (session, time_ms) did: a session's events, and the
-- cascade when sessions are pruned.
--
-- A column's UNIQUE cannot be dropped: the table is rebuilt, rows in commit
-- order and with their seq.

CREATE TABLE events_v5 (
    seq              INTEGER PRIMARY KEY,  -- commit order
    event_id         TEXT    NOT NULL,
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
    payload          TEXT,
    session_type     TEXT CHECK (session_type IN ('interactive', 'batch'))
);
INSERT INTO events_v5 (seq, event_id, session, type, time_ms, recorded_ms, instance, user,
                       engine_id, engine_tag, engine_namespace, reason, payload, session_type)
    SELECT seq, event_id, session, type, time_ms, recorded_ms, instance, user,
           engine_id, engine_tag, engine_namespace, reason, payload, session_type
    FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v5 RENAME TO events;
CREATE UNIQUE INDEX events_by_session ON events (session, event_id);
CREATE INDEX events_by_time ON events (time_ms);
