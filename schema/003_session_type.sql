-- kjournal schema, version 3 (issue 12): session types and server restarts.
--
-- sessions.session_type and events.session_type: 'interactive', 'batch', or
-- NULL when not known (a native event without it, an unknown Kyuubi type).
-- A session takes the type of the first of its events, in commit order, that
-- carries one (verify checks it). A journal written before version 3 learns
-- the types its stored Kyuubi payloads ("sessionType") name.
--
-- server_events: Kyuubi server starts and stops (kyuubi_server_info, or the
-- native server_start / server_stop). A start of instance I at time_ms T
-- closes the open interactive sessions of I created before T
-- ('server_restarted'); those closes are ordinary rows of events. The
-- payload is the reduced event only: Kyuubi's serverConf and serverEnv
-- (unredacted secrets) never reach the journal.

ALTER TABLE sessions ADD COLUMN session_type TEXT
    CHECK (session_type IN ('interactive', 'batch'));
ALTER TABLE events ADD COLUMN session_type TEXT
    CHECK (session_type IN ('interactive', 'batch'));

UPDATE events SET session_type = lower(json_extract(payload, '$.sessionType'))
    WHERE payload LIKE '%sessionType%' AND json_valid(payload)
      AND json_type(payload, '$.sessionType') = 'text'
      AND json_extract(payload, '$.sessionType') IN ('INTERACTIVE', 'BATCH');
UPDATE sessions SET session_type = (
        SELECT e.session_type FROM events e
        WHERE e.session = sessions.id AND e.session_type IS NOT NULL
        ORDER BY e.seq LIMIT 1)
    WHERE id IN (SELECT session FROM events WHERE session_type IS NOT NULL);

CREATE TABLE server_events (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    type        INTEGER NOT NULL CHECK (type IN (3, 4)), -- 3 server_start, 4 server_stop
    instance    TEXT    NOT NULL,
    time_ms     INTEGER NOT NULL, -- start: the server's startTime; stop: when it stopped
    recorded_ms INTEGER NOT NULL,
    payload     TEXT
);
CREATE INDEX server_starts ON server_events (instance, time_ms) WHERE type = 3;
