-- kjournal schema, version 2: the same tables; the totals are counted again.
-- Before version 2 a session whose user or instance changed between its
-- events (an open without a user and a close with one, an open as alice and
-- another as bob) left counts wrong, and verify failing. Every total is
-- recounted from the sessions and events they stand for.

DELETE FROM counts;
INSERT INTO counts (dim, key, open, closed)
    SELECT 'state', 'all', coalesce(sum(state = 1), 0), coalesce(sum(state = 2), 0)
    FROM sessions;
INSERT INTO counts (dim, key, open, closed)
    SELECT 'events', 'all', coalesce(sum(type = 1), 0), coalesce(sum(type = 2), 0)
    FROM events;
INSERT INTO counts (dim, key, open, closed)
    SELECT 'user', coalesce(user, ''), sum(state = 1), sum(state = 2)
    FROM sessions GROUP BY 2;
INSERT INTO counts (dim, key, open, closed)
    SELECT 'instance', coalesce(instance, ''), sum(state = 1), sum(state = 2)
    FROM sessions GROUP BY 2;
