/*
 * Opening files: an empty path becomes a current journal; a journal from the
 * future, a file that is not SQLite and another application's SQLite database
 * are refused, and none of them is modified.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "testutil.h"

/* The whole file, to compare before and after. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* Opening must fail with want, mention want_text, and leave the file as it was. */
static void expect_refused(const char *path, unsigned flags, int want, const char *want_text)
{
    size_t n0 = 0, n1 = 0;
    char *before = slurp(path, &n0);
    char wal[600];
    snprintf(wal, sizeof wal, "%s-wal", path);
    int had_wal = exists(wal);
    kj_journal *j = NULL;
    kj_err err = {0};
    int rc = kj_journal_open(path, flags, &j, &err);
    if (rc != want)
        fail_msg("open %s: %d (%s), want %d", path, rc, err.msg, want);
    assert_null(j);
    if (!strstr(err.msg, want_text))
        fail_msg("message '%s' does not say '%s'", err.msg, want_text);
    char *after = slurp(path, &n1);
    assert_int_equal(n0, n1);
    if (n0)
        assert_memory_equal(before, after, n0);
    assert_int_equal(exists(wal), had_wal);
    free(before);
    free(after);
}

static void test_new_file_gets_current_schema(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "new.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.schema_version, kj_journal_schema_version());
    assert_true(kj_journal_schema_version() >= 1);
    kj_journal_close(j);
    /* Reopening an up-to-date journal, read-write and read-only, changes nothing. */
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_journal_close(j);
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), 0);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

static void test_future_version_refused(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "future.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_journal_close(j);
    raw_exec(path, "PRAGMA journal_mode = DELETE; PRAGMA user_version = 999");
    expect_refused(path, 0, KJ_ETOONEW, "newer than this kjournal");
    expect_refused(path, KJ_JOURNAL_READONLY, KJ_ETOONEW, "999");
    free(path);
    rm_tree(dir);
}

static void test_not_sqlite_refused(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "text.db");
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 200; i++)
        fputs("this is not a database, just some text that someone pointed us at\n", f);
    fclose(f);
    expect_refused(path, 0, KJ_ENOTJOURNAL, "not a kjournal database");
    expect_refused(path, KJ_JOURNAL_READONLY, KJ_ENOTJOURNAL, "not a kjournal database");
    free(path);
    rm_tree(dir);
}

static void test_foreign_sqlite_refused(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "foreign.db");
    raw_exec(path, "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);"
                   "INSERT INTO photos (name) VALUES ('cat.jpg')");
    expect_refused(path, 0, KJ_ENOTJOURNAL, "another application");
    expect_refused(path, KJ_JOURNAL_READONLY, KJ_ENOTJOURNAL, "not a kjournal database");
    free(path);
    rm_tree(dir);
}

static void test_missing_and_odd_paths(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "absent.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), KJ_ENOENT);
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_NOCREATE, &j, &err), KJ_ENOENT);
    assert_false(exists(path));
    assert_int_equal(kj_journal_open(dir, 0, &j, &err), KJ_ENOTJOURNAL);
    assert_int_equal(kj_journal_open("", 0, &j, &err), KJ_EINVAL);
    /* Characters that mean something in a URI are part of the name. */
    char *odd = path_in(dir, "we?ird#name%20.db");
    assert_int_equal(kj_journal_open(odd, 0, &j, &err), 0);
    kj_journal_close(j);
    assert_true(exists(odd));
    assert_int_equal(kj_journal_open(odd, KJ_JOURNAL_READONLY, &j, &err), 0);
    kj_journal_close(j);
    free(odd);
    free(path);
    rm_tree(dir);
}

static void test_readonly_never_writes(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "ro.db");
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_event e = ev_open("e1", "s1", T0);
    kj_append_result res;
    assert_int_equal(kj_journal_append(j, &e, 1, &res, &err), 0);
    kj_journal_close(j);
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), 0);
    e = ev_open("e2", "s2", T0);
    assert_int_equal(kj_journal_append(j, &e, 1, &res, &err), KJ_EREADONLY);
    int64_t s = 0, ev = 0;
    assert_int_equal(kj_journal_prune(j, T0 * 2, &s, &ev, &err), KJ_EREADONLY);
    int64_t run = 0;
    assert_true(kj_journal_run_begin(j, "manual", 0, &run, &err) < 0);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

struct kj_schema_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct kj_schema_migration kj_schema_migrations[];

/* Writes at path the journal an older release wrote: migrations 1..version,
 * then rows (SQL, which sets user_version too). */
static void old_journal(const char *path, int version, const char *rows)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    for (int v = 0; v < version; v++) {
        assert_int_equal(kj_schema_migrations[v].version, v + 1);
        assert_int_equal(sqlite3_exec(db, kj_schema_migrations[v].sql, NULL, NULL, NULL),
                         SQLITE_OK);
    }
    if (sqlite3_exec(db, rows, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("old journal: %s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* Opens the journal at path read-write, which migrates it: it must then be
 * at the current schema (at least min_version) and verify clean. */
static kj_journal *open_migrated(const char *path, int min_version)
{
    kj_journal *j = NULL;
    kj_err err = {0};
    assert_int_equal(kj_journal_open(path, 0, &j, &err), 0);
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.schema_version, kj_journal_schema_version());
    assert_true(kj_journal_schema_version() >= min_version);
    if (kj_journal_verify(j, NULL, NULL, NULL, &err))
        fail_msg("verify after migration: %s", err.msg);
    return j;
}

/* A version-1 journal whose totals the bug of issue 10 (item 3) left wrong:
 * s1 opened as alice, then as bob, then closed ("bob -1 open"); s2 opened
 * without a user, closed as carol. Opening it read-write migrates it and
 * counts the totals again: verify is clean, stats right. */
static void test_v1_totals_recounted(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "v1.db");
    old_journal(path, 1,
                "PRAGMA user_version = 1;"
                "INSERT INTO sessions (id, session_id, state, instance, user, created_ms,"
                " updated_ms, closed_ms, close_reason, event_count, recorded_ms) VALUES"
                " (1, 's1', 2, 'k0', 'bob', 1000, 3000, 3000, 'client', 3, 5),"
                " (2, 's2', 2, 'k0', 'carol', 1000, 2000, 2000, 'client', 2, 5);"
                "INSERT INTO events (event_id, session, type, time_ms, recorded_ms) VALUES"
                " ('a', 1, 1, 1000, 5), ('b', 1, 1, 2000, 5), ('c', 1, 2, 3000, 5),"
                " ('d', 2, 1, 1000, 5), ('e', 2, 2, 2000, 5);"
                "INSERT INTO counts VALUES ('state', 'all', 0, 2), ('events', 'all', 3, 2),"
                " ('user', 'alice', 1, 0), ('user', 'bob', -1, 1), ('user', '', 0, 1),"
                " ('instance', 'k0', 0, 2);");

    kj_journal *j = NULL;
    kj_err err = {0};
    /* A reader cannot upgrade it, and says so. */
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "older"));
    j = open_migrated(path, 2);
    kj_journal_stats st;
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.sessions_closed, 2);
    assert_int_equal(st.events_open, 3);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

/* The type of one session, as the journal reads it ("" when unknown). */
static int copy_type(const kj_session *s, void *ud)
{
    snprintf(ud, 16, "%s", s->session_type ? s->session_type : "");
    return 0;
}

static void expect_type(kj_journal *j, const char *session_id, const char *want)
{
    char got[16] = "?";
    kj_err err = {0};
    assert_int_equal(kj_journal_session_get(j, session_id, copy_type, got, &err), 0);
    if (strcmp(got, want))
        fail_msg("session %s: type '%s', want '%s'", session_id, got, want);
}

/* A journal the previous release wrote (version 2), with what it held: Kyuubi
 * lines (INTERACTIVE, BATCH, a type from a newer Kyuubi), a native event, a
 * payload that is no JSON at all and one without the field. Opening it
 * read-write migrates it to version 3; the types come from the payloads;
 * verify is clean; and it works on as a current journal: a server restart
 * closes its interactive session and leaves its batch one. */
static void test_v2_journal_learns_session_types(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "v2.db");
    old_journal(path, 2,
                "PRAGMA user_version = 2;"
                "INSERT INTO sessions (id, session_id, state, instance, user, created_ms,"
                " updated_ms, closed_ms, close_reason, event_count, recorded_ms) VALUES"
                " (1, 'i1', 1, 'k0:10009', 'ann', 1764391200000, 1764391201000, 0, NULL, 2, 5),"
                " (2, 'b1', 1, 'k0:10009', 'ann', 1764391200000, 1764391200000, 0, NULL, 1, 5),"
                " (3, 'n1', 1, 'k0:10009', 'ann', 1764391200000, 1764391200000, 0, NULL, 1, 5),"
                " (4, 'x1', 1, 'k0:10009', 'ann', 1764391200000, 1764391200000, 0, NULL, 1, 5),"
                " (5, 'z1', 1, 'k0:10009', 'ann', 1764391200000, 1764391200000, 0, NULL, 1, 5);"
                "INSERT INTO events (event_id, session, type, time_ms, recorded_ms, payload) VALUES"
                " ('kyuubi:i1:created', 1, 1, 1764391200000, 5,"
                "  '{\"sessionId\":\"i1\",\"sessionType\":\"INTERACTIVE\",\"eventType\":"
                "\"kyuubi_session\"}'),"
                " ('kyuubi:i1:opened', 1, 1, 1764391201000, 5, NULL),"
                " ('kyuubi:b1:created', 2, 1, 1764391200000, 5,"
                "  '{\"sessionId\":\"b1\",\"sessionType\":\"BATCH\",\"eventType\":"
                "\"kyuubi_session\"}'),"
                " ('n1', 3, 1, 1764391200000, 5, "
                "'{\"type\":\"session_open\",\"note\":\"sessionType\"}'),"
                " ('x1', 4, 1, 1764391200000, 5, 'not json, but it says sessionType'),"
                " ('z1', 5, 1, 1764391200000, 5, '{\"sessionType\":\"STREAMING\"}');"
                "DELETE FROM counts; INSERT INTO counts VALUES ('state', 'all', 5, 0), ('events', "
                "'all', 6, 0),"
                " ('user', 'ann', 5, 0), ('instance', 'k0:10009', 5, 0);");

    kj_err err = {0};
    kj_journal *j = open_migrated(path, 3);
    kj_journal_stats st;
    expect_type(j, "i1", "interactive");
    expect_type(j, "b1", "batch");
    expect_type(j, "n1", "");
    expect_type(j, "x1", "");
    expect_type(j, "z1", "");

    kj_event start = {.event_id = "kyuubi-server:k0:10009:1764391300000:started",
                      .type = KJ_EVENT_SERVER_START,
                      .instance = "k0:10009",
                      .time_ms = 1764391300000};
    kj_append_result res;
    assert_int_equal(kj_journal_append(j, &start, 1, &res, &err), 0);
    assert_int_equal(res.status, KJ_APPEND_STORED);
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.sessions_open, 4);
    assert_int_equal(st.sessions_closed, 1);
    if (kj_journal_verify(j, NULL, NULL, NULL, &err))
        fail_msg("verify after the restart: %s", err.msg);
    kj_journal_close(j);
    /* Migrated once: opening again changes nothing, read-only works. */
    assert_int_equal(kj_journal_open(path, KJ_JOURNAL_READONLY, &j, &err), 0);
    expect_type(j, "b1", "batch");
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

static int count_events(const kj_event_row *r, void *ud)
{
    int64_t *seqs = ud;
    seqs[seqs[0] + 1] = r->seq;
    seqs[0]++;
    return 0;
}

/* A journal of version 4 (a server start, events with gaps in seq after a
 * prune): opening it rebuilds events with per-session ids (schema 5), keeps
 * every event and its seq, and works on: a retry of an old event is a
 * duplicate, the old start still closes a late session it outlived, the
 * same id in another session is stored. */
static void test_v4_events_rebuilt(void **state)
{
    (void)state;
    char *dir = test_dir(), *path = path_in(dir, "v4.db");
    old_journal(
        path, 4,
        "PRAGMA user_version = 4;"
        "INSERT INTO sessions (id, session_id, state, instance, user, created_ms,"
        " updated_ms, closed_ms, close_reason, event_count, recorded_ms, session_type) VALUES"
        " (1, 's1', 2, 'k0', 'ann', 1764391200000, 1764391210000, 1764391210000, 'client',"
        "  2, 5, 'interactive'),"
        " (2, 's2', 1, 'k0', 'ann', 1764391200000, 1764391200000, 0, NULL, 1, 5, 'batch');"
        "INSERT INTO events (seq, event_id, session, type, time_ms, recorded_ms, instance,"
        " user, payload, session_type) VALUES"
        " (3, 'kyuubi:s1:opened', 1, 1, 1764391200000, 5, 'k0', 'ann', '{}', 'interactive'),"
        " (7, 'kyuubi:s1:closed', 1, 2, 1764391210000, 5, 'k0', 'ann', NULL, NULL),"
        " (9, 'kyuubi:s2:opened', 2, 1, 1764391200000, 5, 'k0', 'ann', NULL, 'batch');"
        "INSERT INTO server_events (event_id, type, instance, time_ms, recorded_ms) VALUES"
        " ('k0-start', 3, 'k0', 1764391300000, 5);"
        "DELETE FROM counts; INSERT INTO counts VALUES ('state', 'all', 1, 1),"
        " ('events', 'all', 2, 1), ('user', 'ann', 1, 1), ('instance', 'k0', 1, 1);");

    kj_err err = {0};
    kj_journal *j = open_migrated(path, 5);
    kj_journal_stats st;
    int64_t seqs[8] = {0};
    assert_int_equal(kj_journal_events_after(j, 0, NULL, 0, count_events, seqs, NULL, &err), 0);
    assert_int_equal(seqs[0], 3);
    assert_int_equal(seqs[1], 3);
    assert_int_equal(seqs[2], 7);
    assert_int_equal(seqs[3], 9);

    kj_event evs[] = {
        {.event_id = "kyuubi:s1:opened",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s1",
         .instance = "k0",
         .time_ms = 1764391200000},
        {.event_id = "kyuubi:s1:opened",
         .type = KJ_EVENT_SESSION_OPEN,
         .session_id = "s3",
         .instance = "k0",
         .session_type = "interactive",
         .time_ms = 1764391250000},
    };
    kj_append_result res[2];
    assert_int_equal(kj_journal_append(j, evs, 2, res, &err), 0);
    assert_int_equal(res[0].status, KJ_APPEND_DUPLICATE);
    assert_int_equal(res[1].status, KJ_APPEND_STORED);
    /* s3 was created before the start the journal already held */
    assert_int_equal(kj_journal_stats_get(j, &st, &err), 0);
    assert_int_equal(st.sessions_open, 1);
    assert_int_equal(st.sessions_closed, 2);
    if (kj_journal_verify(j, NULL, NULL, NULL, &err))
        fail_msg("verify after appending: %s", err.msg);
    kj_journal_close(j);
    free(path);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_file_gets_current_schema),
        cmocka_unit_test(test_future_version_refused),
        cmocka_unit_test(test_not_sqlite_refused),
        cmocka_unit_test(test_foreign_sqlite_refused),
        cmocka_unit_test(test_missing_and_odd_paths),
        cmocka_unit_test(test_readonly_never_writes),
        cmocka_unit_test(test_v1_totals_recounted),
        cmocka_unit_test(test_v2_journal_learns_session_types),
        cmocka_unit_test(test_v4_events_rebuilt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
