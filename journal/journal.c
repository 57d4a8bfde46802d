/*
 * journal.c - the SQLite journal: open and migrate, append with the session
 * state machine, queries that page, maintenance and the reconciler's audit.
 */
#include "journal.h"

#include "checkpoint_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct kj_schema_migration {
    int version;
    const char *name;
    const char *sql;
};
extern const struct kj_schema_migration kj_schema_migrations[];
extern const size_t kj_schema_migration_count;

#define KJ_APPLICATION_ID 1263161934 /* 'KJRN' */
#define KJ_BUSY_TIMEOUT_MS 10000
#define KJ_CACHE_KIB "-65536" /* 64 MiB of page cache per writer */

/* Sessions whose engine has tag TAG or application id APP. Each branch of
 * the OR has an index (see sessions_by_engine_tag), which SQLite searches
 * one by one, merging the rows without a temporary table. */
#define ENGINE_MATCH(TAG, APP)                                                                     \
    "((session_id = " TAG " AND engine_tag = " TAG ") OR (engine_tag = " TAG                       \
    " AND engine_tag IS NOT NULL AND engine_tag <> session_id) OR engine_id = " APP ")"

/* Statements run for every event or pod, prepared once per handle. */
enum {
    ST_FIND_EVENT,
    ST_FIND_SESSION,
    ST_INSERT_SESSION,
    ST_INSERT_EVENT,
    ST_ADD_COUNT,
    ST_COUNT_POD_SESSIONS,
    ST_RECORD_ACTION,
    ST_INSERT_SERVER_EVENT,
    ST_FIND_SERVER_EVENT,
    ST_FIRST_START_AFTER,
    ST_RESTARTED_SESSIONS,
    ST_COUNT_
};

static const char *const append_sql[ST_COUNT_] = {
    [ST_FIND_EVENT] = "SELECT 1 FROM events WHERE session = ?1 AND event_id = ?2",
    [ST_FIND_SESSION] =
        "SELECT id, state, user, instance, created_ms, closed_ms, close_reason, engine_id,"
        " engine_tag, session_type FROM sessions"
        " WHERE session_id = ?1",
    [ST_INSERT_SESSION] =
        "INSERT INTO sessions (session_id, state, instance, user, engine_id, engine_tag,"
        " engine_namespace, created_ms, updated_ms, closed_ms, close_reason, event_count,"
        " recorded_ms, session_type)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, 1, ?11, ?12)",
    [ST_INSERT_EVENT] =
        "INSERT INTO events (event_id, session, type, time_ms, recorded_ms, instance, user,"
        " engine_id, engine_tag, engine_namespace, reason, payload, session_type)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        " ON CONFLICT (session, event_id) DO NOTHING",
    [ST_COUNT_POD_SESSIONS] =
        "SELECT coalesce(sum(state = 1), 0), coalesce(sum(state = 2), 0),"
        " coalesce(max(closed_ms), 0) FROM sessions WHERE " ENGINE_MATCH("?1", "?2"),
    [ST_RECORD_ACTION] =
        "INSERT INTO reconcile_actions (run, time_ms, namespace, pod, uid, engine_tag,"
        " engine_id, action, reason, result, http_code, message, identity)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
        " (SELECT identity FROM reconcile_runs WHERE id = ?1))",
    [ST_INSERT_SERVER_EVENT] =
        "INSERT INTO server_events (event_id, type, instance, time_ms, recorded_ms, payload)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (event_id) DO NOTHING",
    [ST_FIND_SERVER_EVENT] = "SELECT 1 FROM server_events WHERE event_id = ?1",
    /* The restart that ended a session of instance ?1 created at ?2. */
    [ST_FIRST_START_AFTER] = "SELECT min(time_ms) FROM server_events"
                             " WHERE type = 3 AND instance = ?1 AND time_ms > ?2",
    [ST_RESTARTED_SESSIONS] = "SELECT session_id FROM sessions WHERE state = 1"
                              " AND session_type = 'interactive' AND instance = ?1"
                              " AND created_ms < ?2 ORDER BY created_ms, id",
    [ST_ADD_COUNT] = "INSERT INTO counts (dim, key, open, closed) VALUES (?1, ?2, ?3, ?4)"
                     " ON CONFLICT (dim, key) DO UPDATE SET open = open + ?3,"
                     " closed = closed + ?4",
};

/*
 * The session update, in one variant per set of indexed columns it changes.
 * SQLite rewrites the entries of every index whose columns (or partial-index
 * condition) appear in an UPDATE's SET list, even to the same values: with
 * every column in one statement, each event rewrote all six session indexes
 * and dirtied a page of each. The unindexed columns are always set; an
 * indexed one only when the event changes it (UPD_*: which).
 */
enum {
    UPD_STATE = 1,      /* sessions_open */
    UPD_USER = 2,       /* sessions_by_user */
    UPD_CREATED = 4,    /* sessions_by_created, sessions_open, sessions_by_user */
    UPD_ENGINE_ID = 8,  /* sessions_by_engine_id */
    UPD_ENGINE_TAG = 16 /* sessions_by_engine_tag */
};
#define UPD_VARIANTS 32

static void update_sql(unsigned set, char *sql, size_t size)
{
    snprintf(
        sql, size,
        "UPDATE sessions SET"
        " instance = coalesce(?3, instance), engine_namespace = coalesce(?7, engine_namespace),"
        " updated_ms = max(updated_ms, ?8),"
        " closed_ms = CASE WHEN ?9 = 0 THEN closed_ms WHEN closed_ms = 0 THEN ?9"
        "                  ELSE min(closed_ms, ?9) END,"
        " close_reason = CASE WHEN ?9 <> 0 AND (closed_ms = 0 OR ?9 < closed_ms)"
        "                     THEN ?10 ELSE close_reason END,"
        " event_count = event_count + 1, recorded_ms = max(recorded_ms, ?11),"
        " session_type = coalesce(session_type, ?12)"
        "%s%s%s%s%s WHERE id = ?1",
        set & UPD_STATE ? ", state = ?2" : "", set & UPD_USER ? ", user = ?4" : "",
        set & UPD_CREATED ? ", created_ms = ?8" : "", set & UPD_ENGINE_ID ? ", engine_id = ?5" : "",
        set & UPD_ENGINE_TAG ? ", engine_tag = ?6" : "");
}

/* A file as stat(2) names it; ino 0: not known. */
typedef struct file_id {
    dev_t dev;
    ino_t ino;
} file_id;

struct kj_journal {
    sqlite3 *db;
    char *path;
    int readonly;
    mode_t file_mode; /* of the files this handle creates: 0600, or 0640 */
    int lock_fd;      /* the writer lock (KJ_JOURNAL_LOCK), or -1 */
    int snapshot;     /* read-only with immutable=1: reopened before following */
    int lost;         /* the path no longer names the files we have open */
    file_id ids[3];   /* the journal, its -wal and its -shm, as opened */
    sqlite3_stmt *st[ST_COUNT_];
    sqlite3_stmt *upd[UPD_VARIANTS]; /* prepared when first needed */
    /* At least the latest time of a server start the journal holds (0: none;
     * a rolled-back batch may leave it higher): a session created since
     * then outlived no restart, and its events skip that query. */
    int64_t latest_start;
    kj_ckpt *ckpt; /* KJ_JOURNAL_CHECKPOINTER, else NULL */
};

/* --- errors ----------------------------------------------------------------- */

static int code_of_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOTADB:
        return KJ_ENOTJOURNAL;
    case SQLITE_CORRUPT:
        return KJ_ECORRUPT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return KJ_EBUSY;
    case SQLITE_NOMEM:
        return KJ_ENOMEM;
    case SQLITE_READONLY:
        return KJ_EREADONLY;
    case SQLITE_CANTOPEN:
        return KJ_ENOENT;
    case SQLITE_FULL:
        return KJ_ENOSPC;
    default:
        return KJ_EIO;
    }
}

static int db_err(kj_journal *j, int rc, kj_err *err, const char *what)
{
    int code = code_of_sqlite(rc);
    const char *detail = j && j->db ? sqlite3_errmsg(j->db) : sqlite3_errstr(rc);
    if (code == KJ_ENOTJOURNAL)
        detail = "not a kjournal database";
    else if (code == KJ_ECORRUPT)
        detail = "the journal file is damaged (run 'kjournal verify')";
    else if (code == KJ_ENOSPC)
        detail = "the disk is full";
    return kj_err_set(err, code, "journal '%s': %s: %s", j ? j->path : "?", what, detail);
}

static int exec(kj_journal *j, const char *sql, kj_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(j->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int code = code_of_sqlite(rc);
        kj_err_set(err, code, "journal '%s': %s", j->path, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return code;
    }
    return 0;
}

/* One integer from a query (0 when there is no row). */
static int query_int(kj_journal *j, const char *sql, int64_t *out, kj_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        *out = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : db_err(j, rc, err, "query");
}

/* --- open and migrate ------------------------------------------------------- */

int kj_journal_schema_version(void)
{
    return (int)kj_schema_migration_count;
}

const char *kj_journal_path(const kj_journal *j)
{
    return j ? j->path : NULL;
}

/* "file:" URI for path, with the characters URIs reserve escaped. */
static char *path_uri(const char *path, const char *query)
{
    size_t n = strlen(path), cap = 5 + 3 * n + strlen(query) + 2;
    char *uri = malloc(cap), *p = uri;
    if (!uri)
        return NULL;
    p += snprintf(p, cap, "file:");
    for (const char *s = path; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '%' || c == '?' || c == '#' || c <= ' ' || c >= 0x7f)
            p += snprintf(p, cap - (size_t)(p - uri), "%%%02X", c);
        else
            *p++ = (char)c;
    }
    snprintf(p, cap - (size_t)(p - uri), "?%s", query);
    return uri;
}

/*
 * Decides what the file is before anything is written to it: a fresh
 * database (no tables, no application id) is ours to create; anything else
 * must carry our application id and a version we understand.
 */
static int check_identity(kj_journal *j, int64_t *version, int *fresh, kj_err *err)
{
    int64_t app = 0, tables = 0;
    int rc = query_int(j, "PRAGMA application_id", &app, err);
    if (!rc)
        rc = query_int(j, "SELECT count(*) FROM sqlite_master", &tables, err);
    if (!rc)
        rc = query_int(j, "PRAGMA user_version", version, err);
    if (rc) {
        if (rc == KJ_ECORRUPT)
            return kj_err_set(err, KJ_ECORRUPT,
                              "journal '%s': the journal file is damaged (run 'kjournal verify')",
                              j->path);
        if (rc == KJ_ENOTJOURNAL || rc == KJ_EIO)
            return kj_err_set(err, KJ_ENOTJOURNAL, "journal '%s': not a kjournal database",
                              j->path);
        return rc;
    }
    *fresh = app == 0 && tables == 0 && *version == 0;
    if (*fresh)
        return 0;
    if (app != KJ_APPLICATION_ID)
        return kj_err_set(err, KJ_ENOTJOURNAL,
                          "journal '%s': not a kjournal database (a SQLite database of "
                          "another application)",
                          j->path);
    if (*version > kj_journal_schema_version())
        return kj_err_set(err, KJ_ETOONEW,
                          "journal '%s': schema version %lld is newer than this kjournal (%d); "
                          "upgrade kjournal",
                          j->path, (long long)*version, kj_journal_schema_version());
    return 0;
}

/* Every pending migration in one transaction: a reader never sees a journal
 * halfway between two versions (or a fresh one without its identity). */
static int migrate(kj_journal *j, kj_err *err)
{
    int rc = exec(j, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    /* Another process may have migrated while we waited for the lock. */
    int64_t version = 0, started = kj_mono_ms();
    rc = query_int(j, "PRAGMA user_version", &version, err);
    /* An existing journal: some migrations rebuild a table, which takes a
     * while on a large one (schema 5: about 20 s per million events). */
    int upgrade = !rc && version > 0 && version < (int64_t)kj_schema_migration_count;
    char q[4200];
    if (upgrade)
        kj_log(KJ_LOG_INFO, "journal migrating", "path=%s from=%lld to=%d",
               kj_logq(q, sizeof q, j->path), (long long)version, (int)kj_schema_migration_count);
    for (size_t i = 0; i < kj_schema_migration_count && !rc; i++) {
        const struct kj_schema_migration *m = &kj_schema_migrations[i];
        if (version >= m->version)
            continue;
        char stamp[64];
        snprintf(stamp, sizeof stamp, "PRAGMA user_version = %d", m->version);
        rc = exec(j, m->sql, err);
        if (!rc)
            rc = exec(j, stamp, err);
        if (rc)
            kj_err_prefix(err, "migration %s", m->name);
    }
    if (!rc)
        rc = exec(j, "COMMIT", err);
    if (rc)
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
    else if (upgrade)
        kj_log(KJ_LOG_INFO, "journal migrated", "path=%s from=%lld to=%d ms=%lld",
               kj_logq(q, sizeof q, j->path), (long long)version, (int)kj_schema_migration_count,
               (long long)(kj_mono_ms() - started));
    return rc;
}

/*
 * Creates path, which must not exist yet, as an empty file with exactly mode,
 * whatever the umask: the journal and its backups hold every session's users
 * and payloads, and SQLite gives the -wal and -shm files the mode of the
 * database file. Returns 0 or an errno value.
 */
static int create_file(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return errno;
    int e = fchmod(fd, mode) == 0 ? 0 : errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e)
        unlink(path);
    return e;
}

/* Why path could not be created (e from create_file), into err. */
static int create_failed(kj_err *err, int e, const char *what, const char *path)
{
    int code = e == ENOENT ? KJ_ENOENT : e == ENOSPC ? KJ_ENOSPC : KJ_EIO;
    if (e == ENOENT) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        return kj_err_set(err, code, "cannot create %s '%s': directory '%s' does not exist", what,
                          path, dirname(dir));
    }
    return kj_err_set(err, code, "cannot create %s '%s': %s", what, path,
                      e == ENOSPC ? "the disk is full" : strerror(e));
}

static int prepare_statements(kj_journal *j, kj_err *err)
{
    for (int i = 0; i < ST_COUNT_; i++) {
        int rc = sqlite3_prepare_v3(j->db, append_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &j->st[i],
                                    NULL);
        if (rc != SQLITE_OK)
            return db_err(j, rc, err, "prepare");
    }
    return 0;
}

/* Issue 10, defined at the end of the file: the writer lock and what a
 * handle checks before and after SQLite opens the file. */
static int open_prepare(kj_journal *j, unsigned flags, const char **query, kj_err *err);
static int open_check_writable(kj_journal *j, kj_err *err);
static int open_finish(kj_journal *j, kj_err *err);
static void close_lost(kj_journal *j);
static int snapshot_refresh(kj_journal *j, kj_err *err);

/* What must hold before SQLite sees the path: a regular file, created here
 * (with the handle's mode) when it is missing and may be created. */
static int open_check_file(kj_journal *j, unsigned flags, kj_err *err)
{
    struct stat sb;
    if (stat(j->path, &sb) != 0) {
        if (errno != ENOENT || j->readonly || (flags & KJ_JOURNAL_NOCREATE))
            return kj_err_set(err, errno == ENOENT ? KJ_ENOENT : KJ_EIO, "journal '%s': %s",
                              j->path, strerror(errno));
        /* EEXIST: another process created it meanwhile; it is opened as found. */
        int e = create_file(j->path, j->file_mode);
        if (e && e != EEXIST)
            return create_failed(err, e, "journal", j->path);
    } else if (!S_ISREG(sb.st_mode)) {
        return kj_err_set(err, KJ_ENOTJOURNAL, "journal '%s': not a regular file", j->path);
    } else if (j->readonly && sb.st_size == 0) {
        return kj_err_set(err, KJ_ENOTJOURNAL, "journal '%s': not a kjournal database (empty file)",
                          j->path);
    }
    return 0;
}

/* Opens the SQLite connection (mode=ro or mode=rwc, as open_prepare() may
 * amend it). */
static int open_db(kj_journal *j, unsigned flags, kj_err *err)
{
    const char *query = j->readonly ? "mode=ro" : "mode=rwc";
    int rc = open_prepare(j, flags, &query, err);
    if (rc)
        return rc;
    char *uri = path_uri(j->path, query);
    if (!uri)
        return kj_err_set(err, KJ_ENOMEM, "journal: out of memory");
    int oflags = SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX |
                 (j->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    int src = sqlite3_open_v2(uri, &j->db, oflags, NULL);
    free(uri);
    if (src != SQLITE_OK)
        return db_err(j, src, err, "cannot open");
    sqlite3_extended_result_codes(j->db, 1);
    sqlite3_busy_timeout(j->db, KJ_BUSY_TIMEOUT_MS);
    return open_check_writable(j, err);
}

/* A reader takes the journal as it is: a journal of this binary's schema,
 * which it never migrates. */
static int open_reader(kj_journal *j, int64_t version, int fresh, kj_err *err)
{
    if (fresh)
        return kj_err_set(err, KJ_ENOTJOURNAL, "journal '%s': not a kjournal database", j->path);
    if (version < kj_journal_schema_version())
        return kj_err_set(err, KJ_EINVAL,
                          "journal '%s': schema version %lld is older than this kjournal (%d); "
                          "open it once read-write (kjournald does) to upgrade it",
                          j->path, (long long)version, kj_journal_schema_version());
    /* temp_store: sorts and the like stay in memory, so a reader writes
     * nothing at all to disk. */
    int rc = exec(j, "PRAGMA query_only = ON; PRAGMA temp_store = MEMORY", err);
    return rc ? rc : prepare_statements(j, err);
}

static int open_writer(kj_journal *j, kj_err *err)
{
    /* journal_mode=WAL persists in the file; synchronous=FULL makes a commit
     * durable. The cache holds the hot index pages of a busy journal (random
     * event and session ids scatter inserts over every index). */
    int rc = exec(j,
                  "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                  "PRAGMA foreign_keys = ON; PRAGMA cache_size = " KJ_CACHE_KIB ";"
                  "PRAGMA wal_autocheckpoint = 4000",
                  err);
    if (!rc)
        rc = migrate(j, err);
    if (!rc)
        rc = prepare_statements(j, err);
    if (!rc)
        rc = query_int(j, "SELECT coalesce(max(time_ms), 0) FROM server_events WHERE type = 3",
                       &j->latest_start, err);
    if (!rc)
        rc = open_finish(j, err);
    return rc;
}

/* The checkpointer's connection opens the file the writer has open, through
 * the same kind of URI. */
static int start_checkpointer(kj_journal *j, kj_err *err)
{
    char *uri = path_uri(j->path, "mode=rw");
    if (!uri)
        return kj_err_set(err, KJ_ENOMEM, "journal: out of memory");
    int rc = kj_ckpt_start(j->db, j->path, uri, KJ_BUSY_TIMEOUT_MS, &j->ckpt, err);
    free(uri);
    return rc;
}

kj_ckpt *kj_journal_ckpt(kj_journal *j)
{
    return j->ckpt;
}

int kj_journal_open(const char *path, unsigned flags, kj_journal **out, kj_err *err)
{
    *out = NULL;
    if (!path || !*path)
        return kj_err_set(err, KJ_EINVAL, "journal: no path given");
    kj_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        return kj_err_set(err, KJ_ENOMEM, "journal: out of memory");
    }
    j->readonly = (flags & KJ_JOURNAL_READONLY) != 0;
    j->file_mode = flags & KJ_JOURNAL_GROUP_READABLE ? 0640 : 0600;
    j->lock_fd = -1;

    int64_t version = 0;
    int fresh = 0;
    int rc = open_check_file(j, flags, err);
    if (!rc)
        rc = open_db(j, flags, err);
    if (!rc)
        rc = check_identity(j, &version, &fresh, err);
    if (!rc)
        rc = j->readonly ? open_reader(j, version, fresh, err) : open_writer(j, err);
    if (!rc && !j->readonly && (flags & KJ_JOURNAL_CHECKPOINTER))
        rc = start_checkpointer(j, err);
    if (rc) {
        kj_journal_close(j);
        return rc;
    }
    *out = j;
    return 0;
}

void kj_journal_close(kj_journal *j)
{
    if (!j)
        return;
    kj_ckpt_stop(j->ckpt); /* first: the writer's close must be the last connection's */
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(j->st[i]);
    for (int i = 0; i < UPD_VARIANTS; i++)
        sqlite3_finalize(j->upd[i]);
    close_lost(j);
    sqlite3_close_v2(j->db);
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* the lock file, never the database: SQLite's locks stay */
    free(j->path);
    free(j);
}

/* --- append ----------------------------------------------------------------- */

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s && *s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/*
 * Count deltas gathered over a batch and written once at its end. A batch may
 * touch as many keys as it has events (every session its own user), so the
 * deltas are found through a hash table: the cost of a commit stays linear in
 * its size.
 */
typedef struct count_delta {
    char dim[12];
    char *key;
    uint64_t hash;
    int64_t open, closed;
} count_delta;

typedef struct count_batch {
    count_delta *d; /* in the order first touched */
    size_t n, cap;
    size_t *slot; /* open addressing: index into d plus 1, 0 for empty */
    size_t nslot; /* a power of two, at least twice n */
} count_batch;

/* FNV-1a over dim, a separator and key. */
static uint64_t count_hash(const char *dim, const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = dim; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static int count_rehash(count_batch *b, size_t nslot)
{
    size_t *slot = calloc(nslot, sizeof *slot);
    if (!slot)
        return KJ_ENOMEM;
    for (size_t i = 0; i < b->n; i++) {
        size_t k = (size_t)b->d[i].hash & (nslot - 1);
        while (slot[k])
            k = (k + 1) & (nslot - 1);
        slot[k] = i + 1;
    }
    free(b->slot);
    b->slot = slot;
    b->nslot = nslot;
    return 0;
}

static int count_add(count_batch *b, const char *dim, const char *key, int64_t open, int64_t closed)
{
    if (!key)
        key = "";
    if (open == 0 && closed == 0)
        return 0;
    if (2 * (b->n + 1) > b->nslot && count_rehash(b, b->nslot ? 2 * b->nslot : 64))
        return KJ_ENOMEM;
    uint64_t h = count_hash(dim, key);
    size_t k = (size_t)h & (b->nslot - 1);
    for (; b->slot[k]; k = (k + 1) & (b->nslot - 1)) {
        count_delta *c = &b->d[b->slot[k] - 1];
        if (c->hash == h && !strcmp(c->dim, dim) && !strcmp(c->key, key)) {
            c->open += open;
            c->closed += closed;
            return 0;
        }
    }
    if (kj_grow((void **)&b->d, &b->cap, b->n + 1, sizeof *b->d))
        return KJ_ENOMEM;
    count_delta *c = &b->d[b->n];
    snprintf(c->dim, sizeof c->dim, "%s", dim);
    if (!(c->key = strdup(key)))
        return KJ_ENOMEM;
    c->hash = h;
    c->open = open;
    c->closed = closed;
    b->slot[k] = ++b->n;
    return 0;
}

static void count_free(count_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->d[i].key);
    free(b->d);
    free(b->slot);
}

/*
 * What a session is counted under in the totals: its state, user and
 * instance exactly as its row holds them (NULL stored as ""), so that the
 * totals always equal a recount of the sessions table (verify checks it).
 */
typedef struct session_key {
    kj_session_state state;
    char user[KJ_EVENT_FIELD_MAX + 1], instance[KJ_EVENT_FIELD_MAX + 1];
    /* Not counted under, but what a server restart looks at. */
    int interactive;    /* session_type is 'interactive' */
    int64_t created_ms; /* of the row, once written */
    int64_t closed_ms;
    int restarted; /* closed 'server_restarted' */
    int has_type;  /* session_type is set (it is never changed once set) */
} session_key;

/* snprintf("%s") without the format engine: this runs four times an event. */
static void copy_field(char *dst, size_t size, const char *src)
{
    size_t n = src ? strnlen(src, size - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

static void session_key_set(session_key *k, int state, const unsigned char *user,
                            const unsigned char *instance)
{
    k->state = (kj_session_state)state;
    copy_field(k->user, sizeof k->user, (const char *)user);
    copy_field(k->instance, sizeof k->instance, (const char *)instance);
}

/* Adds sign (1 or -1) times the session k to the totals by state, user, instance. */
static int count_session(count_batch *b, const session_key *k, int64_t sign)
{
    int64_t open = k->state == KJ_SESSION_OPEN ? sign : 0;
    int64_t closed = k->state == KJ_SESSION_CLOSED ? sign : 0;
    int rc = count_add(b, "state", "all", open, closed);
    if (!rc)
        rc = count_add(b, "user", k->user, open, closed);
    if (!rc)
        rc = count_add(b, "instance", k->instance, open, closed);
    return rc;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Runs the session insert or update (?1 already bound: session id or row):
 * both take the event's fields as ?2..?12. The row's new state, user,
 * instance, type and creation time go into *after, worked out here as the
 * statements do (a field the event leaves empty keeps the row's, before): a
 * RETURNING clause would run as a trigger, and a statement with one keeps a
 * statement journal, allocated, filled and freed for every event. */
static int write_session(sqlite3_stmt *st, const kj_event *ev, kj_session_state to,
                         const char *close_reason, int64_t now, const session_key *before,
                         session_key *after)
{
    sqlite3_bind_int(st, 2, to);
    bind_text(st, 3, ev->instance);
    bind_text(st, 4, ev->user);
    bind_text(st, 5, ev->engine_id);
    bind_text(st, 6, ev->engine_tag);
    bind_text(st, 7, ev->engine_namespace);
    sqlite3_bind_int64(st, 8, ev->time_ms);
    sqlite3_bind_int64(st, 9, close_reason ? ev->time_ms : 0);
    bind_text(st, 10, close_reason);
    sqlite3_bind_int64(st, 11, now);
    bind_text(st, 12, ev->session_type);
    int rc = step_done(st);
    if (rc == SQLITE_OK) {
        session_key_set(after, to,
                        (const unsigned char *)(ev->user && *ev->user ? ev->user : before->user),
                        (const unsigned char *)(ev->instance && *ev->instance ? ev->instance
                                                                              : before->instance));
        /* session_type = coalesce(session_type, ?12); created_ms = min(...) */
        after->interactive = before->has_type
                                 ? before->interactive
                                 : ev->session_type && !strcmp(ev->session_type, "interactive");
        after->created_ms = before->state != KJ_SESSION_NONE && before->created_ms < ev->time_ms
                                ? before->created_ms
                                : ev->time_ms;
    }
    return rc;
}

/*
 * Rejects ev with code and the message in r->message, unless its session
 * (row sid, 0 for none yet) already has an event with its id: a retry of a
 * stored event is a duplicate, not a rejection, whatever has happened to
 * its session since.
 */
static int reject_unless_stored(kj_journal *j, const kj_event *ev, int64_t sid, kj_append_result *r,
                                const char *code)
{
    int rc = SQLITE_DONE;
    if (sid) {
        sqlite3_stmt *st = j->st[ST_FIND_EVENT];
        sqlite3_bind_int64(st, 1, sid);
        bind_text(st, 2, ev->event_id);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    if (rc == SQLITE_ROW) {
        r->status = KJ_APPEND_DUPLICATE;
        r->message[0] = '\0';
    } else if (rc == SQLITE_DONE) {
        r->status = KJ_APPEND_REJECTED;
        r->code = code;
    } else {
        return rc;
    }
    return SQLITE_OK;
}

/* What the update compares the event with, besides the session's key. */
typedef struct session_row {
    int64_t created_ms;
    char engine_id[KJ_EVENT_FIELD_MAX + 1], engine_tag[KJ_EVENT_FIELD_MAX + 1];
} session_row;

/* Looks ev's session up: *sid 0 when it has none yet, else its row, the key
 * it is counted under and the rest of row. Returns a SQLite code. */
static int find_session(kj_journal *j, const kj_event *ev, int64_t *sid, session_key *before,
                        session_row *row)
{
    sqlite3_stmt *st = j->st[ST_FIND_SESSION];
    bind_text(st, 1, ev->session_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *sid = sqlite3_column_int64(st, 0);
        session_key_set(before, sqlite3_column_int(st, 1), sqlite3_column_text(st, 2),
                        sqlite3_column_text(st, 3));
        row->created_ms = before->created_ms = sqlite3_column_int64(st, 4);
        before->closed_ms = sqlite3_column_int64(st, 5);
        const unsigned char *reason = sqlite3_column_text(st, 6);
        before->restarted = reason && !strcmp((const char *)reason, KJ_REASON_SERVER_RESTARTED);
        copy_field(row->engine_id, sizeof row->engine_id, (const char *)sqlite3_column_text(st, 7));
        copy_field(row->engine_tag, sizeof row->engine_tag,
                   (const char *)sqlite3_column_text(st, 8));
        const unsigned char *type = sqlite3_column_text(st, 9);
        before->has_type = type != NULL;
        before->interactive = type && !strcmp((const char *)type, "interactive");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc;
}

/*
 * The publisher's clock decides when grace periods end (they count from
 * closed_ms): a time far ahead would hold a pod forever, a close before its
 * session's open (created_ms, when sid) would release a live engine at once.
 * Old times stay valid, for replays after an outage. Returns the rejection's
 * code with its message in msg, or NULL when ev's time is acceptable.
 */
static const char *time_problem(const kj_event *ev, int64_t now, int64_t sid, int64_t created_ms,
                                char *msg, size_t size)
{
    char t1[40], t2[40];
    if (ev->time_ms > now + KJ_EVENT_CLOCK_SKEW_MS) {
        snprintf(msg, size,
                 "field 'time_ms' is %s, more than %lld s ahead of the journal's clock (%s)",
                 kj_format_time(ev->time_ms, 1, t1, sizeof t1),
                 (long long)(KJ_EVENT_CLOCK_SKEW_MS / 1000), kj_format_time(now, 1, t2, sizeof t2));
        return "time_in_future";
    }
    if (sid && ev->type == KJ_EVENT_SESSION_CLOSE && ev->time_ms < created_ms) {
        snprintf(msg, size, "field 'time_ms' is %s, earlier than the open of session '%.64s' (%s)",
                 kj_format_time(ev->time_ms, 1, t1, sizeof t1), ev->session_id,
                 kj_format_time(created_ms, 1, t2, sizeof t2));
        return "close_before_open";
    }
    return NULL;
}

/* Inserts ev for session row sid; an event_id the session already has
 * changes nothing (sqlite3_changes() then says 0). Returns a SQLite code. */
static int insert_event(kj_journal *j, const kj_event *ev, int64_t sid, int64_t now)
{
    sqlite3_stmt *st = j->st[ST_INSERT_EVENT];
    bind_text(st, 1, ev->event_id);
    sqlite3_bind_int64(st, 2, sid);
    sqlite3_bind_int(st, 3, ev->type);
    sqlite3_bind_int64(st, 4, ev->time_ms);
    sqlite3_bind_int64(st, 5, now);
    bind_text(st, 6, ev->instance);
    bind_text(st, 7, ev->user);
    bind_text(st, 8, ev->engine_id);
    bind_text(st, 9, ev->engine_tag);
    bind_text(st, 10, ev->engine_namespace);
    bind_text(st, 11, ev->reason);
    bind_text(st, 12, ev->payload);
    bind_text(st, 13, ev->session_type);
    return step_done(st);
}

/*
 * Totals for a stored event: the session leaves what it was counted under
 * (before) and joins what its row now says (after). Any event may move it: a
 * close changes its state, and any event may teach it a user or instance it
 * did not have, or another one. 0 or KJ_ENOMEM.
 */
static int count_event(count_batch *counts, const kj_event *ev, const session_key *before,
                       const session_key *after)
{
    int rc = 0;
    if (before->state != after->state || strcmp(before->user, after->user) ||
        strcmp(before->instance, after->instance)) {
        if (before->state != KJ_SESSION_NONE)
            rc = count_session(counts, before, -1);
        if (!rc)
            rc = count_session(counts, after, 1);
    }
    if (!rc)
        rc = count_add(counts, "events", "all", ev->type == KJ_EVENT_SESSION_OPEN,
                       ev->type == KJ_EVENT_SESSION_CLOSE);
    return rc;
}

/* A field the event sets (non-empty) to something other than the row's. */
static int changes(const char *ev_value, const char *row_value)
{
    return ev_value && *ev_value && strcmp(ev_value, row_value);
}

/* The update variant for ev on a row that was before/row: only the indexed
 * columns the event changes are in its SET list. */
static int update_statement(kj_journal *j, const kj_event *ev, kj_session_state to,
                            const session_key *before, const session_row *row, sqlite3_stmt **out)
{
    unsigned set = (to != before->state ? UPD_STATE : 0) |
                   (changes(ev->user, before->user) ? UPD_USER : 0) |
                   (ev->time_ms < row->created_ms ? UPD_CREATED : 0) |
                   (changes(ev->engine_id, row->engine_id) ? UPD_ENGINE_ID : 0) |
                   (changes(ev->engine_tag, row->engine_tag) ? UPD_ENGINE_TAG : 0);
    if (!j->upd[set]) {
        char sql[1024];
        update_sql(set, sql, sizeof sql);
        int rc = sqlite3_prepare_v3(j->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &j->upd[set], NULL);
        if (rc != SQLITE_OK)
            return rc;
    }
    *out = j->upd[set];
    return SQLITE_OK;
}

static int append_one(kj_journal *j, const kj_event *ev, int64_t now, kj_append_result *r,
                      count_batch *counts);

/* The event id of the close a restart makes: one per session (a session is
 * closed by a restart once), so replaying the start stores nothing twice. */
static void restart_event_id(char *buf, size_t size, const char *session_id)
{
    if (strlen(session_id) + 16 <= KJ_EVENT_ID_MAX) {
        snprintf(buf, size, "kj:restarted:%s", session_id);
        return;
    }
    uint64_t h = count_hash("restart", session_id);
    snprintf(buf, size, "kj:restarted:#%016llx", (unsigned long long)h);
}

/* Closes session_id (open, interactive, of instance) "server_restarted" at
 * start_ms, inside the batch's transaction. Returns a SQLite code. */
static int close_restarted(kj_journal *j, const char *session_id, int64_t start_ms, int64_t now,
                           count_batch *counts)
{
    char id[KJ_EVENT_ID_MAX + 1];
    restart_event_id(id, sizeof id, session_id);
    kj_event close = {.event_id = id,
                      .type = KJ_EVENT_SESSION_CLOSE,
                      .session_id = session_id,
                      .time_ms = start_ms,
                      .reason = KJ_REASON_SERVER_RESTARTED};
    kj_append_result r;
    return append_one(j, &close, now, &r, counts);
}

/* The first start of instance after created_ms, if the journal knows one,
 * closes the session. Returns a SQLite code. */
static int close_if_restarted(kj_journal *j, const char *session_id, const char *instance,
                              int64_t created_ms, int64_t now, count_batch *counts)
{
    sqlite3_stmt *st = j->st[ST_FIRST_START_AFTER];
    bind_text(st, 1, instance);
    sqlite3_bind_int64(st, 2, created_ms);
    int rc = sqlite3_step(st);
    int64_t start = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL
                        ? sqlite3_column_int64(st, 0)
                        : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rc;
    return start ? close_restarted(j, session_id, start, now, counts) : SQLITE_OK;
}

/*
 * A server start or stop. A start of instance I at T closes the open
 * interactive sessions of I created before T; a stop is kept for the record.
 * Returns a SQLite code.
 */
static int append_server(kj_journal *j, const kj_event *ev, int64_t now, kj_append_result *r,
                         count_batch *counts)
{
    sqlite3_stmt *st = j->st[ST_FIND_SERVER_EVENT];
    bind_text(st, 1, ev->event_id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW) {
        r->status = KJ_APPEND_DUPLICATE;
        return SQLITE_OK;
    }
    if (rc != SQLITE_DONE)
        return rc;
    const char *code = time_problem(ev, now, 0, 0, r->message, sizeof r->message);
    if (code) {
        r->status = KJ_APPEND_REJECTED;
        r->code = code;
        return SQLITE_OK;
    }
    st = j->st[ST_INSERT_SERVER_EVENT];
    bind_text(st, 1, ev->event_id);
    sqlite3_bind_int(st, 2, ev->type);
    bind_text(st, 3, ev->instance);
    sqlite3_bind_int64(st, 4, ev->time_ms);
    sqlite3_bind_int64(st, 5, now);
    bind_text(st, 6, ev->payload);
    if ((rc = step_done(st)) != SQLITE_OK)
        return rc;
    r->status = KJ_APPEND_STORED;
    if (ev->type != KJ_EVENT_SERVER_START)
        return SQLITE_OK;
    if (ev->time_ms > j->latest_start)
        j->latest_start = ev->time_ms;
    /* The sessions first, then their closes: a statement is not stepped
     * while the rows it reads change. */
    char **ids = NULL;
    size_t n = 0, cap = 0;
    st = j->st[ST_RESTARTED_SESSIONS];
    bind_text(st, 1, ev->instance);
    sqlite3_bind_int64(st, 2, ev->time_ms);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *sid = (const char *)sqlite3_column_text(st, 0);
        if (kj_grow((void **)&ids, &cap, n + 1, sizeof *ids) || !(ids[n] = strdup(sid))) {
            rc = SQLITE_NOMEM;
            break;
        }
        n++;
    }
    sqlite3_reset(st);
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
        rc = close_restarted(j, ids[i], ev->time_ms, now, counts);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return rc;
}

/* Applies one event inside the batch's transaction. Returns a SQLite code;
 * anything but SQLITE_OK aborts the whole batch. */
static int append_one(kj_journal *j, const kj_event *ev, int64_t now, kj_append_result *r,
                      count_batch *counts)
{
    const char *code = NULL;
    memset(r, 0, sizeof *r);
    if (kj_event_validate(ev, &code, r->message, sizeof r->message) < 0) {
        r->status = KJ_APPEND_REJECTED;
        r->code = code;
        return SQLITE_OK;
    }
    if (kj_event_is_server(ev->type))
        return append_server(j, ev, now, r, counts);

    /* The hot path never looks the event id up: a new session has no
     * events yet, and for a known one the insert's ON CONFLICT finds a
     * duplicate. */
    int64_t sid = 0;
    session_key before = {0}, after = {0};
    session_row row = {0};
    int rc = find_session(j, ev, &sid, &before, &row);
    if (rc != SQLITE_OK)
        return rc;
    if ((code = time_problem(ev, now, sid, row.created_ms, r->message, sizeof r->message)))
        return reject_unless_stored(j, ev, sid, r, code);
    kj_session_state to = kj_session_next(before.state, ev->type, &code);
    /* The opens of a life a restart ended may come after the restart. */
    if (to == KJ_SESSION_NONE && before.restarted && ev->type == KJ_EVENT_SESSION_OPEN &&
        ev->time_ms < before.closed_ms)
        to = KJ_SESSION_CLOSED;
    if (to == KJ_SESSION_NONE) {
        snprintf(r->message, sizeof r->message, "session '%.120s' is already closed",
                 ev->session_id);
        return reject_unless_stored(j, ev, sid, r, code);
    }

    const char *close_reason = ev->type != KJ_EVENT_SESSION_CLOSE ? NULL
                               : ev->reason && *ev->reason        ? ev->reason
                                                                  : "unknown";
    sqlite3_stmt *st;
    int inserted = !sid;
    if (inserted) {
        st = j->st[ST_INSERT_SESSION];
        bind_text(st, 1, ev->session_id);
        if ((rc = write_session(st, ev, to, close_reason, now, &before, &after)) != SQLITE_OK)
            return rc;
        sid = sqlite3_last_insert_rowid(j->db);
    }
    if ((rc = insert_event(j, ev, sid, now)) != SQLITE_OK)
        return rc;
    if (sqlite3_changes(j->db) == 0) {
        r->status = KJ_APPEND_DUPLICATE;
        return SQLITE_OK;
    }
    if (!inserted) {
        if ((rc = update_statement(j, ev, to, &before, &row, &st)) != SQLITE_OK)
            return rc;
        sqlite3_bind_int64(st, 1, sid);
        if ((rc = write_session(st, ev, to, close_reason, now, &before, &after)) != SQLITE_OK)
            return rc;
    }
    r->status = KJ_APPEND_STORED;
    if (count_event(counts, ev, &before, &after))
        return SQLITE_NOMEM;
    /* An interactive session of a server that restarted since it was created
     * is gone, whichever of the two the journal learnt first. */
    if (after.state == KJ_SESSION_OPEN && after.interactive && after.instance[0] &&
        after.created_ms < j->latest_start)
        return close_if_restarted(j, ev->session_id, after.instance, after.created_ms, now, counts);
    return SQLITE_OK;
}

const char *kj_append_status_name(kj_append_status s)
{
    switch (s) {
    case KJ_APPEND_STORED:
        return "stored";
    case KJ_APPEND_DUPLICATE:
        return "duplicate";
    case KJ_APPEND_REJECTED:
        return "rejected";
    }
    return NULL;
}

int kj_journal_append(kj_journal *j, const kj_event *events, size_t n, kj_append_result *results,
                      kj_err *err)
{
    if (j->readonly)
        return kj_err_set(err, KJ_EREADONLY, "journal '%s': opened read-only", j->path);
    if (n == 0)
        return 0;
    int rc = sqlite3_exec(j->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_err(j, rc, err, "begin");
    count_batch counts = {0};
    int64_t now = kj_now_ms();
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
        rc = append_one(j, &events[i], now, &results[i], &counts);
    for (size_t i = 0; i < counts.n && rc == SQLITE_OK; i++) {
        sqlite3_stmt *st = j->st[ST_ADD_COUNT];
        sqlite3_bind_text(st, 1, counts.d[i].dim, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, counts.d[i].key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, counts.d[i].open);
        sqlite3_bind_int64(st, 4, counts.d[i].closed);
        rc = step_done(st);
    }
    count_free(&counts);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int code = db_err(j, rc, err, "append");
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
        return code;
    }
    return 0;
}

/* --- paged queries ------------------------------------------------------------ */

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/*
 * A page of rows copied out of its statement, which is finalized before any
 * callback runs: the read transaction ends with the page, so a consumer that
 * blocks in its callback (a full pipe, a pager waiting for a key) never holds
 * a snapshot and never starves WAL checkpoints.
 */
typedef struct page {
    sqlite3_value **v; /* rows x cols */
    int rows, cols;
    size_t cap; /* in rows */
} page;

static void page_free(page *p)
{
    for (int i = 0; i < p->rows * p->cols; i++)
        sqlite3_value_free(p->v[i]);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* Runs st to completion into p and finalizes it. Returns 0 or a negative code
 * (p is then empty). */
static int page_fill(kj_journal *j, sqlite3_stmt *st, page *p, const char *what, kj_err *err)
{
    int src;
    memset(p, 0, sizeof *p);
    p->cols = sqlite3_column_count(st);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        /* Room for a whole page at once (a row has cols > 0 values). */
        size_t need = p->rows < KJ_JOURNAL_PAGE ? KJ_JOURNAL_PAGE : (size_t)p->rows + 1;
        if (kj_grow((void **)&p->v, &p->cap, need, (size_t)p->cols * sizeof *p->v)) {
            src = SQLITE_NOMEM;
            break;
        }
        for (int i = 0; i < p->cols; i++)
            p->v[p->rows * p->cols + i] = sqlite3_value_dup(sqlite3_column_value(st, i));
        p->rows++;
    }
    int rc = src == SQLITE_DONE ? 0 : db_err(j, src, err, what);
    sqlite3_finalize(st);
    if (rc)
        page_free(p);
    return rc;
}

static sqlite3_value **page_row(const page *p, int row)
{
    return &p->v[row * p->cols];
}

static const char *v_text(sqlite3_value **v, int i)
{
    return (const char *)sqlite3_value_text(v[i]);
}

static int64_t v_int(sqlite3_value **v, int i)
{
    return sqlite3_value_int64(v[i]);
}

/*
 * A query paged by keyset, each page one statement in its own implicit read
 * transaction. For every page, sql() writes the statement (ORDER BY the
 * keyset, LIMIT limit; a query may leave its keyset condition out on the
 * first page) and bind() binds it; row() takes each row: it remembers the
 * row's keyset, which bounds the next page, and passes the row to the
 * caller's callback. q is the query's state, given back to all three.
 */
typedef struct keyset_query {
    const char *what; /* names the query in error messages */
    void (*sql)(const void *q, int first, int limit, char *buf, size_t size);
    void (*bind)(const void *q, sqlite3_stmt *st, int first);
    int (*row)(void *q, sqlite3_value **v);
} keyset_query;

/* Runs kq page by page until limit rows (0: no limit) went to row(), a page
 * comes back short, or row() returns non-zero (that value is returned). */
static int page_through(kj_journal *j, const keyset_query *kq, void *q, int64_t limit, kj_err *err)
{
    int64_t left = limit > 0 ? limit : INT64_MAX;
    int rc = 0;
    for (int first = 1; left > 0; first = 0) {
        char sql[1024];
        kq->sql(q, first, left < KJ_JOURNAL_PAGE ? (int)left : KJ_JOURNAL_PAGE, sql, sizeof sql);
        sqlite3_stmt *st = NULL;
        int src = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL);
        if (src != SQLITE_OK)
            return db_err(j, src, err, kq->what);
        kq->bind(q, st, first);
        page pg;
        if ((rc = page_fill(j, st, &pg, kq->what, err)))
            return rc;
        for (int i = 0; i < pg.rows && !rc; i++, left--)
            rc = kq->row(q, page_row(&pg, i));
        int rows = pg.rows;
        page_free(&pg);
        if (rc || rows < KJ_JOURNAL_PAGE)
            break;
    }
    return rc;
}

/* --- sessions --- */

#define SESSION_COLUMNS                                                                            \
    "session_id, state, instance, user, engine_id, engine_tag, engine_namespace, created_ms,"      \
    " updated_ms, closed_ms, close_reason, event_count, id, recorded_ms, session_type"

static void row_session(sqlite3_value **v, kj_session *s)
{
    s->session_id = v_text(v, 0);
    s->state = (kj_session_state)(int)v_int(v, 1);
    s->instance = v_text(v, 2);
    s->user = v_text(v, 3);
    s->engine_id = v_text(v, 4);
    s->engine_tag = v_text(v, 5);
    s->engine_namespace = v_text(v, 6);
    s->created_ms = v_int(v, 7);
    s->updated_ms = v_int(v, 8);
    s->closed_ms = v_int(v, 9);
    s->close_reason = v_text(v, 10);
    s->event_count = v_int(v, 11);
    s->recorded_ms = v_int(v, 13);
    s->session_type = v_text(v, 14);
}

typedef struct session_pages {
    const kj_session_filter *f;
    char where[512]; /* the filter's conditions */
    int64_t last_t, last_id;
    kj_session_cb cb;
    void *ud;
} session_pages;

static void session_page_sql(const void *q, int first, int limit, char *sql, size_t size)
{
    const session_pages *p = q;
    const char *dir = p->f->reverse ? "DESC" : "ASC";
    char keyset[64] = "";
    if (!first)
        snprintf(keyset, sizeof keyset, " AND (created_ms, id) %s (?7, ?8)",
                 p->f->reverse ? "<" : ">");
    snprintf(sql, size,
             "SELECT " SESSION_COLUMNS " FROM sessions WHERE%s%s"
             " ORDER BY created_ms %s, id %s LIMIT %d",
             p->where, keyset, dir, dir, limit);
}

static void session_page_bind(const void *q, sqlite3_stmt *st, int first)
{
    const session_pages *p = q;
    const kj_session_filter *f = p->f;
    sqlite3_bind_int(st, 1, f->state);
    bind_text(st, 2, f->user);
    bind_text(st, 3, f->instance);
    bind_text(st, 4, f->engine);
    sqlite3_bind_int64(st, 5, f->since_ms);
    sqlite3_bind_int64(st, 6, f->until_ms ? f->until_ms : INT64_MAX);
    if (first)
        return;
    sqlite3_bind_int64(st, 7, p->last_t);
    sqlite3_bind_int64(st, 8, p->last_id);
    /* SQLite does not seek an index on a row value: the time range itself
     * must start at the last row, or every page rescans all the pages
     * before it. */
    if (f->reverse)
        sqlite3_bind_int64(st, 6,
                           f->until_ms && f->until_ms <= p->last_t ? f->until_ms : p->last_t + 1);
    else if (p->last_t > f->since_ms)
        sqlite3_bind_int64(st, 5, p->last_t);
}

static int session_page_row(void *q, sqlite3_value **v)
{
    session_pages *p = q;
    kj_session s;
    row_session(v, &s);
    p->last_t = s.created_ms;
    p->last_id = v_int(v, 12);
    return p->cb(&s, p->ud);
}

int kj_journal_sessions(kj_journal *j, const kj_session_filter *f, kj_session_cb cb, void *ud,
                        kj_err *err)
{
    static const kj_session_filter all = {0};
    static const keyset_query query = {"sessions", session_page_sql, session_page_bind,
                                       session_page_row};
    session_pages p = {.f = f ? f : &all, .cb = cb, .ud = ud};
    f = p.f;
    /* Conditions are written so SQLite picks the index that fits the filter. */
    snprintf(p.where, sizeof p.where, "%s%s%s%s created_ms >= ?5 AND created_ms < ?6",
             f->state == KJ_SESSION_OPEN     ? " state = 1 AND"
             : f->state == KJ_SESSION_CLOSED ? " state = 2 AND"
                                             : "",
             f->user ? " user = ?2 AND" : "", f->instance ? " instance = ?3 AND" : "",
             f->engine ? " " ENGINE_MATCH("?4", "?4") " AND" : "");
    return page_through(j, &query, &p, f->limit, err);
}

/* Runs sql (binding text a and b to ?1 and ?2) and passes each session row to cb. */
static int sessions_where(kj_journal *j, const char *cond, const char *a, const char *b,
                          kj_session_cb cb, void *ud, int *found, kj_err *err)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT " SESSION_COLUMNS " FROM sessions WHERE %s ORDER BY id",
             cond);
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL), rc = 0;
    if (src != SQLITE_OK)
        return db_err(j, src, err, "sessions");
    bind_text(st, 1, a);
    bind_text(st, 2, b);
    page pg;
    if ((rc = page_fill(j, st, &pg, "sessions", err)))
        return rc;
    for (int i = 0; i < pg.rows && !rc; i++) {
        kj_session s;
        row_session(page_row(&pg, i), &s);
        ++*found;
        rc = cb(&s, ud);
    }
    page_free(&pg);
    return rc;
}

int kj_journal_session_get(kj_journal *j, const char *session_id, kj_session_cb cb, void *ud,
                           kj_err *err)
{
    int found = 0;
    int rc = sessions_where(j, "session_id = ?1", session_id, NULL, cb, ud, &found, err);
    if (!rc && !found)
        return kj_err_set(err, KJ_ENOENT, "no session '%s' in journal '%s'", session_id, j->path);
    return rc;
}

int kj_journal_sessions_of_pod(kj_journal *j, const char *tag, const char *app_id, kj_session_cb cb,
                               void *ud, kj_err *err)
{
    int found = 0;
    if (!(tag && *tag) && !(app_id && *app_id))
        return 0;
    return sessions_where(j, ENGINE_MATCH("?1", "?2"), tag, app_id, cb, ud, &found, err);
}

/* --- events --- */

#define EVENT_COLUMNS                                                                              \
    "e.seq, e.recorded_ms, e.event_id, e.type, s.session_id, e.instance, e.user, e.engine_id,"     \
    " e.engine_tag, e.engine_namespace, e.time_ms, e.reason, e.payload, e.session_type"

static void row_event(sqlite3_value **v, kj_event_row *r)
{
    memset(r, 0, sizeof *r);
    r->seq = v_int(v, 0);
    r->recorded_ms = v_int(v, 1);
    r->event.event_id = v_text(v, 2);
    r->event.type = (kj_event_type)(int)v_int(v, 3);
    r->event.session_id = v_text(v, 4);
    r->event.instance = v_text(v, 5);
    r->event.user = v_text(v, 6);
    r->event.engine_id = v_text(v, 7);
    r->event.engine_tag = v_text(v, 8);
    r->event.engine_namespace = v_text(v, 9);
    r->event.time_ms = v_int(v, 10);
    r->event.reason = v_text(v, 11);
    r->event.payload = v_text(v, 12);
    r->event.session_type = v_text(v, 13);
}

typedef struct event_pages {
    const kj_event_filter *f;
    int by_seq; /* in commit order (following a journal), not by (time_ms, seq) */
    int64_t last_t, last_s;
    int64_t *last_seq; /* may be NULL */
    kj_event_cb cb;
    void *ud;
} event_pages;

static void event_page_sql(const void *q, int first, int limit, char *sql, size_t size)
{
    const event_pages *p = q;
    const kj_event_filter *f = p->f;
    const char *cmp = f->reverse ? "<" : ">";
    char keyset[96] = "";
    if (p->by_seq)
        snprintf(keyset, sizeof keyset, " AND e.seq %s ?4", cmp);
    else if (!first)
        snprintf(keyset, sizeof keyset, " AND (e.time_ms, e.seq) %s (?5, ?4)", cmp);
    snprintf(sql, size,
             "SELECT " EVENT_COLUMNS " FROM events e JOIN sessions s ON s.id = e.session"
             " WHERE e.time_ms >= ?1 AND e.time_ms < ?2%s%s"
             " ORDER BY %s LIMIT %d",
             f->session_id ? " AND e.session = (SELECT id FROM sessions WHERE session_id = ?3)"
                           : "",
             keyset,
             p->by_seq ? (f->reverse ? "e.seq DESC" : "e.seq ASC")
                       : (f->reverse ? "e.time_ms DESC, e.seq DESC" : "e.time_ms ASC, e.seq ASC"),
             limit);
}

static void event_page_bind(const void *q, sqlite3_stmt *st, int first)
{
    const event_pages *p = q;
    const kj_event_filter *f = p->f;
    int64_t since = f->since_ms, until = f->until_ms ? f->until_ms : INT64_MAX;
    /* SQLite does not seek an index on a row value: the time range itself
     * must start at the last row, or every page rescans all the pages
     * before it. */
    if (!p->by_seq && !first) {
        if (f->reverse && p->last_t < until)
            until = p->last_t + 1;
        else if (!f->reverse && p->last_t > since)
            since = p->last_t;
    }
    sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_int64(st, 2, until);
    bind_text(st, 3, f->session_id);
    sqlite3_bind_int64(st, 4, p->last_s);
    sqlite3_bind_int64(st, 5, p->last_t);
}

static int event_page_row(void *q, sqlite3_value **v)
{
    event_pages *p = q;
    kj_event_row r;
    row_event(v, &r);
    p->last_t = r.event.time_ms;
    p->last_s = r.seq;
    if (p->last_seq)
        *p->last_seq = r.seq;
    return p->cb(&r, p->ud);
}

/* Streams events by (time_ms, seq), or by seq after after_seq. */
static int events_paged(kj_journal *j, const kj_event_filter *f, int by_seq, int64_t after_seq,
                        kj_event_cb cb, void *ud, int64_t *last_seq, kj_err *err)
{
    static const keyset_query query = {"events", event_page_sql, event_page_bind, event_page_row};
    event_pages p = {
        .f = f, .by_seq = by_seq, .last_s = after_seq, .last_seq = last_seq, .cb = cb, .ud = ud};
    if (last_seq)
        *last_seq = after_seq;
    return page_through(j, &query, &p, f->limit, err);
}

int kj_journal_events(kj_journal *j, const kj_event_filter *f, kj_event_cb cb, void *ud,
                      kj_err *err)
{
    static const kj_event_filter all = {0};
    return events_paged(j, f ? f : &all, 0, 0, cb, ud, NULL, err);
}

int kj_journal_events_after(kj_journal *j, int64_t after_seq, const char *session_id, int64_t limit,
                            kj_event_cb cb, void *ud, int64_t *last_seq, kj_err *err)
{
    kj_event_filter f = {.session_id = session_id, .limit = limit};
    int rc = j->snapshot ? snapshot_refresh(j, err) : 0;
    if (rc)
        return rc;
    return events_paged(j, &f, 1, after_seq, cb, ud, last_seq, err);
}

int kj_journal_last_seq(kj_journal *j, int64_t *seq, kj_err *err)
{
    return query_int(j, "SELECT coalesce(max(seq), 0) FROM events", seq, err);
}

/* --- statistics ------------------------------------------------------------- */

static int64_t file_size(const char *path, const char *suffix)
{
    char p[4096];
    struct stat sb;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

int kj_journal_stats_get(kj_journal *j, kj_journal_stats *out, kj_err *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    /* One statement, so every figure comes from the same snapshot. */
    const char *sql =
        "SELECT (SELECT open FROM counts WHERE dim = 'state' AND key = 'all'),"
        " (SELECT closed FROM counts WHERE dim = 'state' AND key = 'all'),"
        " (SELECT open FROM counts WHERE dim = 'events' AND key = 'all'),"
        " (SELECT closed FROM counts WHERE dim = 'events' AND key = 'all'),"
        " (SELECT min(time_ms) FROM events), (SELECT max(time_ms) FROM events),"
        " (SELECT count(*) FROM reconcile_runs), (SELECT max(id) FROM reconcile_actions)";
    int rc = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t *v[] = {&out->sessions_open, &out->sessions_closed, &out->events_open,
                        &out->events_close,  &out->oldest_ms,       &out->newest_ms,
                        &out->runs,          &out->actions};
        for (int i = 0; i < 8; i++)
            *v[i] = sqlite3_column_int64(st, i);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return db_err(j, rc, err, "stats");
    int64_t version = 0;
    if ((rc = query_int(j, "PRAGMA user_version", &version, err)))
        return rc;
    out->schema_version = (int)version;
    out->file_bytes = file_size(j->path, "");
    out->wal_bytes = file_size(j->path, "-wal");
    return 0;
}

int kj_journal_count_by(kj_journal *j, const char *column, kj_count_cb cb, void *ud, kj_err *err)
{
    if (!column || (strcmp(column, "user") && strcmp(column, "instance")))
        return kj_err_set(err, KJ_EINVAL, "journal: cannot count sessions by '%s'",
                          column ? column : "(null)");
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(j->db,
                                 "SELECT key, open, closed FROM counts WHERE dim = ?1"
                                 " AND (open <> 0 OR closed <> 0) ORDER BY key",
                                 -1, &st, NULL),
        rc = 0;
    if (src != SQLITE_OK)
        return db_err(j, src, err, "count");
    sqlite3_bind_text(st, 1, column, -1, SQLITE_STATIC);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = col_text(st, 0);
        if ((rc = cb(key && *key ? key : NULL, sqlite3_column_int64(st, 1),
                     sqlite3_column_int64(st, 2), ud)))
            break;
    }
    if (!rc && src != SQLITE_DONE)
        rc = db_err(j, src, err, "count");
    sqlite3_finalize(st);
    return rc;
}

/* --- maintenance ------------------------------------------------------------ */

int kj_journal_prune(kj_journal *j, int64_t cutoff_ms, int64_t *sessions, int64_t *events,
                     kj_err *err)
{
    *sessions = *events = 0;
    if (j->readonly)
        return kj_err_set(err, KJ_EREADONLY, "journal '%s': opened read-only", j->path);
    /* Chunks keep each write transaction short, so ingest is never held up long. */
    for (;;) {
        int rc = exec(j,
                      "BEGIN IMMEDIATE;"
                      "CREATE TEMP TABLE IF NOT EXISTS prune_batch (id INTEGER PRIMARY KEY,"
                      " user TEXT, instance TEXT, n INTEGER);"
                      "DELETE FROM prune_batch",
                      err);
        sqlite3_stmt *st = NULL;
        if (!rc) {
            int src = sqlite3_prepare_v2(
                j->db,
                "INSERT INTO prune_batch SELECT id, coalesce(user, ''), coalesce(instance, ''),"
                " event_count FROM sessions WHERE created_ms < ?1 AND state = 2 AND closed_ms < ?1"
                " LIMIT 5000",
                -1, &st, NULL);
            if (src == SQLITE_OK) {
                sqlite3_bind_int64(st, 1, cutoff_ms);
                src = step_done(st);
            }
            sqlite3_finalize(st);
            if (src != SQLITE_OK)
                rc = db_err(j, src, err, "prune");
        }
        int64_t n = 0, ev = 0;
        if (!rc)
            rc = query_int(j, "SELECT count(*) FROM prune_batch", &n, err);
        if (!rc)
            rc = query_int(j, "SELECT coalesce(sum(n), 0) FROM prune_batch", &ev, err);
        if (!rc && n > 0)
            rc = exec(j,
                      "UPDATE counts SET closed = closed - (SELECT count(*) FROM prune_batch)"
                      " WHERE dim = 'state' AND key = 'all';"
                      "UPDATE counts SET closed = closed - (SELECT count(*) FROM prune_batch b"
                      " WHERE b.user = counts.key) WHERE dim = 'user'"
                      " AND key IN (SELECT user FROM prune_batch);"
                      "UPDATE counts SET closed = closed - (SELECT count(*) FROM prune_batch b"
                      " WHERE b.instance = counts.key) WHERE dim = 'instance'"
                      " AND key IN (SELECT instance FROM prune_batch);"
                      "UPDATE counts SET"
                      " open = open - (SELECT count(*) FROM events WHERE type = 1"
                      "   AND session IN (SELECT id FROM prune_batch)),"
                      " closed = closed - (SELECT count(*) FROM events WHERE type = 2"
                      "   AND session IN (SELECT id FROM prune_batch))"
                      " WHERE dim = 'events' AND key = 'all';"
                      "DELETE FROM sessions WHERE id IN (SELECT id FROM prune_batch);"
                      "DELETE FROM counts WHERE dim IN ('user', 'instance')"
                      " AND open = 0 AND closed = 0",
                      err);
        if (!rc)
            rc = exec(j, "COMMIT", err);
        if (rc) {
            sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        *sessions += n;
        *events += ev;
        if (n < 5000)
            return 0;
    }
}

int kj_journal_backup(kj_journal *j, const char *dest, kj_err *err)
{
    if (!dest || !*dest)
        return kj_err_set(err, KJ_EINVAL, "backup: no destination given");
    /* Created here, with the journal's mode, rather than by VACUUM INTO
     * (which takes an empty file): the umask's 0644 would show every
     * session to every user of the machine. */
    int e = create_file(dest, j->file_mode);
    if (e == EEXIST)
        return kj_err_set(err, KJ_EINVAL, "backup: '%s' already exists; refusing to overwrite it",
                          dest);
    if (e)
        return create_failed(err, e, "backup", dest);
    /* query_only forbids VACUUM INTO even though it writes only dest; a
     * read-only handle still has mode=ro, so the journal stays untouched. */
    if (j->readonly)
        sqlite3_exec(j->db, "PRAGMA query_only = OFF", NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    char detail[256] = "";
    int rc = sqlite3_prepare_v2(j->db, "VACUUM INTO ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
        rc = step_done(st);
    }
    /* The message now: the statements below replace it. */
    if (rc != SQLITE_OK)
        snprintf(detail, sizeof detail, "%s",
                 code_of_sqlite(rc) == KJ_ECORRUPT
                     ? "the journal file is damaged (run 'kjournal verify')"
                 : code_of_sqlite(rc) == KJ_ENOSPC ? "the disk is full"
                                                   : sqlite3_errmsg(j->db));
    sqlite3_finalize(st);
    if (j->readonly)
        sqlite3_exec(j->db, "PRAGMA query_only = ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        unlink(dest); /* a partial copy is no backup; dest did not exist before */
        /* A destination SQLite cannot open is no missing session or journal. */
        int code = code_of_sqlite(rc) == KJ_ENOENT ? KJ_EIO : code_of_sqlite(rc);
        return kj_err_set(err, code, "backup of '%s' to '%s': %s", j->path, dest, detail);
    }
    return 0;
}

typedef struct verify_ctx {
    kj_problem_cb cb;
    void *ud;
    int64_t problems;
    int stopped;
} verify_ctx;

static void problem(verify_ctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(verify_ctx *v, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->cb && !v->stopped && v->cb(msg, v->ud))
        v->stopped = 1;
}

/* Runs a check query; every row is one problem, described by its text columns. */
static int check_rows(kj_journal *j, verify_ctx *v, const char *what, const char *sql, kj_err *err)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL), reported = 0;
    if (src != SQLITE_OK)
        return db_err(j, src, err, what);
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        if (++reported > 100) {
            problem(v, "%s: more problems not listed", what);
            src = SQLITE_DONE;
            break;
        }
        const char *a = col_text(st, 0);
        const char *b = sqlite3_column_count(st) > 1 ? col_text(st, 1) : NULL;
        problem(v, "%s: %s%s%s", what, a ? a : "?", b ? ": " : "", b ? b : "");
    }
    sqlite3_finalize(st);
    if (src != SQLITE_DONE) {
        if (code_of_sqlite(src) == KJ_ECORRUPT) {
            problem(v, "%s: %s", what, sqlite3_errstr(src));
            return 0;
        }
        return db_err(j, src, err, what);
    }
    return 0;
}

/* kjournal's invariants: each query's rows are problems (check_rows()). */
static const struct {
    const char *what, *sql;
} invariant_checks[] = {
    {"foreign key", "SELECT \"table\" || ' row ' || rowid, 'references a missing '"
                    " || parent FROM pragma_foreign_key_check"},
    {"event without session",
     "SELECT 'event ' || event_id, 'session row ' || session || ' does not exist'"
     " FROM events WHERE session NOT IN (SELECT id FROM sessions)"},
    {"session disagrees with its events",
     "SELECT 'session ' || s.session_id,"
     " CASE WHEN e.n IS NULL THEN 'has no events'"
     "  WHEN s.event_count <> e.n THEN 'event_count ' || s.event_count || ' but '"
     "       || e.n || ' events'"
     "  WHEN s.state <> (CASE WHEN e.cl IS NULL THEN 1 ELSE 2 END) THEN 'state '"
     "       || s.state || ' disagrees with its events'"
     "  WHEN s.closed_ms <> coalesce(e.cl, 0) THEN 'closed_ms disagrees with its events'"
     "  WHEN s.created_ms <> e.mn OR s.updated_ms <> e.mx THEN 'created/updated times"
     " disagree with its events'"
     "  WHEN s.recorded_ms <> e.rmx THEN 'recorded_ms disagrees with its events' END"
     " FROM sessions s LEFT JOIN (SELECT session, count(*) n, min(time_ms) mn,"
     "  max(time_ms) mx, min(CASE WHEN type = 2 THEN time_ms END) cl, max(recorded_ms) rmx"
     "  FROM events GROUP BY session) e ON e.session = s.id"
     " WHERE e.n IS NULL OR s.event_count <> e.n"
     "  OR s.state <> (CASE WHEN e.cl IS NULL THEN 1 ELSE 2 END)"
     "  OR s.closed_ms <> coalesce(e.cl, 0) OR s.created_ms <> e.mn OR s.updated_ms <> e.mx"
     "  OR s.recorded_ms <> e.rmx"},
    {"session type disagrees with its events",
     "SELECT 'session ' || s.session_id, 'type ' || coalesce(s.session_type, 'unknown')"
     "  || ' but its first event with a type says ' || coalesce(f.session_type, 'nothing')"
     " FROM sessions s LEFT JOIN (SELECT session, session_type FROM events WHERE seq IN"
     "  (SELECT min(seq) FROM events WHERE session_type IS NOT NULL GROUP BY session)) f"
     " ON f.session = s.id WHERE s.session_type IS NOT f.session_type"},
    {"session outlived its server",
     "SELECT 'session ' || s.session_id, 'interactive and open, but ' || s.instance"
     "  || ' started again after it was created'"
     " FROM sessions s WHERE s.state = 1 AND s.session_type = 'interactive' AND EXISTS"
     "  (SELECT 1 FROM server_events x WHERE x.type = 3 AND x.instance = s.instance"
     "   AND x.time_ms > s.created_ms)"},
    /* Both ways: a total that is wrong, and a key with sessions but no
     * total at all. */
    {"totals disagree with the journal",
     "WITH a (dim, key, open, closed) AS ("
     "  SELECT 'state', 'all', coalesce(sum(state = 1), 0), coalesce(sum(state = 2), 0)"
     "   FROM sessions"
     "  UNION ALL SELECT 'events', 'all', coalesce(sum(type = 1), 0),"
     "   coalesce(sum(type = 2), 0) FROM events"
     "  UNION ALL SELECT 'user', coalesce(user, ''), sum(state = 1), sum(state = 2)"
     "   FROM sessions GROUP BY 2"
     "  UNION ALL SELECT 'instance', coalesce(instance, ''), sum(state = 1), sum(state = 2)"
     "   FROM sessions GROUP BY 2)"
     " SELECT 'count ' || c.dim || '/' || c.key, 'recorded ' || c.open || ' open, '"
     "  || c.closed || ' closed; found ' || coalesce(a.open, 0) || ' open, '"
     "  || coalesce(a.closed, 0) || ' closed'"
     " FROM counts c LEFT JOIN a ON a.dim = c.dim AND a.key = c.key"
     " WHERE coalesce(a.open, 0) <> c.open OR coalesce(a.closed, 0) <> c.closed"
     " UNION ALL"
     " SELECT 'count ' || a.dim || '/' || a.key, 'recorded nothing; found ' || a.open"
     "  || ' open, ' || a.closed || ' closed'"
     " FROM a WHERE (a.open <> 0 OR a.closed <> 0) AND NOT EXISTS"
     "  (SELECT 1 FROM counts c WHERE c.dim = a.dim AND c.key = a.key)"},
};

/* PRAGMA integrity_check: its complaints, or why it could not run, are
 * problems. */
static void check_integrity(kj_journal *j, verify_ctx *v)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(j->db, "PRAGMA integrity_check(100)", -1, &st, NULL);
    if (src == SQLITE_OK) {
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            const char *msg = col_text(st, 0);
            if (msg && strcmp(msg, "ok"))
                problem(v, "integrity: %s", msg);
        }
    }
    sqlite3_finalize(st);
    if (src != SQLITE_DONE && src != SQLITE_OK)
        problem(v, "integrity: %s", sqlite3_errstr(src));
}

int kj_journal_verify(kj_journal *j, kj_problem_cb cb, void *ud, int64_t *problems, kj_err *err)
{
    verify_ctx v = {.cb = cb, .ud = ud};
    int rc = 0;
    check_integrity(j, &v);
    /* The invariants cannot be trusted on a file SQLite cannot read, nor on
     * one whose structure is damaged. */
    if (v.problems)
        goto out;
    /* One read transaction for all the invariants, so they see one snapshot. */
    if ((rc = exec(j, "BEGIN", err)))
        goto out;
    for (size_t i = 0; i < sizeof invariant_checks / sizeof invariant_checks[0] && !rc; i++)
        rc = check_rows(j, &v, invariant_checks[i].what, invariant_checks[i].sql, err);
    sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL);
out:
    if (problems)
        *problems = v.problems;
    if (rc)
        return rc;
    return v.problems ? kj_err_set(err, KJ_ECORRUPT, "journal '%s': %lld problem(s) found", j->path,
                                   (long long)v.problems)
                      : 0;
}

/* --- reconciler audit ------------------------------------------------------- */

int kj_journal_run_begin(kj_journal *j, const char *trigger, int dry_run, int64_t *run_id,
                         kj_err *err)
{
    return kj_journal_run_begin_as(j, trigger, dry_run, NULL, run_id, err);
}

int kj_journal_run_begin_as(kj_journal *j, const char *trigger, int dry_run, const char *identity,
                            int64_t *run_id, kj_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc =
        sqlite3_prepare_v2(j->db,
                           "INSERT INTO reconcile_runs (started_ms, trigger, dry_run, identity)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, kj_now_ms());
        bind_text(st, 2, trigger ? trigger : "manual");
        sqlite3_bind_int(st, 3, dry_run != 0);
        bind_text(st, 4, identity);
        rc = step_done(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return db_err(j, rc, err, "record run");
    *run_id = sqlite3_last_insert_rowid(j->db);
    return 0;
}

int kj_journal_run_end(kj_journal *j, int64_t run_id, const char *status, int64_t pods_seen,
                       int64_t actions_ok, int64_t actions_failed, kj_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(j->db,
                                "UPDATE reconcile_runs SET finished_ms = ?2, status = ?3,"
                                " pods_seen = ?4, actions_ok = ?5, actions_failed = ?6"
                                " WHERE id = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int64(st, 2, kj_now_ms());
        bind_text(st, 3, status ? status : "converged");
        sqlite3_bind_int64(st, 4, pods_seen);
        sqlite3_bind_int64(st, 5, actions_ok);
        sqlite3_bind_int64(st, 6, actions_failed);
        rc = step_done(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : db_err(j, rc, err, "record run");
}

static int record_action(kj_journal *j, const kj_action *a)
{
    sqlite3_stmt *st = j->st[ST_RECORD_ACTION];
    sqlite3_bind_int64(st, 1, a->run_id);
    sqlite3_bind_int64(st, 2, a->time_ms ? a->time_ms : kj_now_ms());
    bind_text(st, 3, a->namespace_);
    bind_text(st, 4, a->pod);
    bind_text(st, 5, a->uid);
    bind_text(st, 6, a->engine_tag);
    bind_text(st, 7, a->engine_id);
    bind_text(st, 8, a->action);
    bind_text(st, 9, a->reason);
    bind_text(st, 10, a->result ? a->result : "ok");
    sqlite3_bind_int(st, 11, a->http_code);
    bind_text(st, 12, a->message);
    return step_done(st);
}

int kj_journal_action_record_batch(kj_journal *j, const kj_action *a, size_t n, kj_err *err)
{
    if (j->readonly)
        return kj_err_set(err, KJ_EREADONLY, "journal '%s': opened read-only", j->path);
    int rc = sqlite3_exec(j->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
        rc = record_action(j, &a[i]);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(j->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int code = db_err(j, rc, err, "record action");
        sqlite3_exec(j->db, "ROLLBACK", NULL, NULL, NULL);
        return code;
    }
    return 0;
}

int kj_journal_action_record(kj_journal *j, const kj_action *a, kj_err *err)
{
    return kj_journal_action_record_batch(j, a, 1, err);
}

int kj_journal_count_sessions_of_pod(kj_journal *j, const char *tag, const char *app_id,
                                     int64_t *open, int64_t *closed, int64_t *last_closed_ms,
                                     kj_err *err)
{
    *open = *closed = *last_closed_ms = 0;
    if (!(tag && *tag) && !(app_id && *app_id))
        return 0;
    sqlite3_stmt *st = j->st[ST_COUNT_POD_SESSIONS];
    bind_text(st, 1, tag);
    bind_text(st, 2, app_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *open = sqlite3_column_int64(st, 0);
        *closed = sqlite3_column_int64(st, 1);
        *last_closed_ms = sqlite3_column_int64(st, 2);
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    return rc == SQLITE_OK ? 0 : db_err(j, rc, err, "sessions of pod");
}

#define RUN_COLUMNS                                                                                \
    "id, started_ms, finished_ms, trigger, dry_run, status, pods_seen, actions_ok,"                \
    " actions_failed, identity"

static void row_run(sqlite3_value **v, kj_run *r)
{
    *r = (kj_run){
        .id = v_int(v, 0),
        .started_ms = v_int(v, 1),
        .finished_ms = v_int(v, 2),
        .trigger = v_text(v, 3),
        .dry_run = (int)v_int(v, 4),
        .status = v_text(v, 5),
        .pods_seen = v_int(v, 6),
        .actions_ok = v_int(v, 7),
        .actions_failed = v_int(v, 8),
        .identity = v_text(v, 9),
    };
}

typedef struct run_pages {
    int reverse;
    int64_t last_id;
    kj_run_cb cb;
    void *ud;
} run_pages;

static void run_page_sql(const void *q, int first, int limit, char *sql, size_t size)
{
    const run_pages *p = q;
    (void)first; /* the first page starts after id 0 (before INT64_MAX) */
    snprintf(sql, size,
             "SELECT " RUN_COLUMNS " FROM reconcile_runs WHERE id %s ?1 ORDER BY id %s"
             " LIMIT %d",
             p->reverse ? "<" : ">", p->reverse ? "DESC" : "ASC", limit);
}

static void run_page_bind(const void *q, sqlite3_stmt *st, int first)
{
    const run_pages *p = q;
    (void)first;
    sqlite3_bind_int64(st, 1, p->last_id);
}

static int run_page_row(void *q, sqlite3_value **v)
{
    run_pages *p = q;
    kj_run r;
    row_run(v, &r);
    p->last_id = r.id;
    return p->cb(&r, p->ud);
}

int kj_journal_runs(kj_journal *j, int64_t limit, int reverse, kj_run_cb cb, void *ud, kj_err *err)
{
    static const keyset_query query = {"runs", run_page_sql, run_page_bind, run_page_row};
    run_pages p = {.reverse = reverse, .last_id = reverse ? INT64_MAX : 0, .cb = cb, .ud = ud};
    return page_through(j, &query, &p, limit, err);
}

int kj_journal_run_get(kj_journal *j, int64_t run_id, kj_run_cb cb, void *ud, kj_err *err)
{
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(j->db, "SELECT " RUN_COLUMNS " FROM reconcile_runs WHERE id = ?1",
                                 -1, &st, NULL),
        rc = 0;
    if (src != SQLITE_OK)
        return db_err(j, src, err, "run");
    sqlite3_bind_int64(st, 1, run_id);
    page pg;
    if ((rc = page_fill(j, st, &pg, "run", err)))
        return rc;
    if (pg.rows) {
        kj_run r;
        row_run(page_row(&pg, 0), &r);
        rc = cb(&r, ud);
    } else {
        rc = kj_err_set(err, KJ_ENOENT, "no reconcile run %lld in journal '%s'", (long long)run_id,
                        j->path);
    }
    page_free(&pg);
    return rc;
}

typedef struct action_pages {
    const kj_action_filter *f;
    int64_t last_id;
    kj_action_cb cb;
    void *ud;
} action_pages;

static void action_page_sql(const void *q, int first, int limit, char *sql, size_t size)
{
    const action_pages *p = q;
    (void)first; /* the first page starts after id 0 (before INT64_MAX) */
    snprintf(sql, size,
             "SELECT id, run, time_ms, namespace, pod, uid, engine_tag, engine_id, action,"
             " reason, result, http_code, message, identity FROM reconcile_actions a"
             " WHERE id %s ?1%s%s ORDER BY id %s LIMIT %d",
             p->f->reverse ? "<" : ">", p->f->run_id ? " AND run = ?2" : "",
             /* Scalar subqueries, so that SQLite reads the two engine
              * indexes (MULTI-INDEX OR) rather than every action. */
             p->f->session_id
                 ? " AND (a.engine_tag = (SELECT engine_tag FROM sessions WHERE session_id = ?3)"
                   " OR a.engine_id = (SELECT engine_id FROM sessions WHERE session_id = ?3))"
                 : "",
             p->f->reverse ? "DESC" : "ASC", limit);
}

static void action_page_bind(const void *q, sqlite3_stmt *st, int first)
{
    const action_pages *p = q;
    (void)first;
    sqlite3_bind_int64(st, 1, p->last_id);
    sqlite3_bind_int64(st, 2, p->f->run_id);
    bind_text(st, 3, p->f->session_id);
}

static int action_page_row(void *q, sqlite3_value **v)
{
    action_pages *p = q;
    kj_action a = {
        .id = v_int(v, 0),
        .run_id = v_int(v, 1),
        .time_ms = v_int(v, 2),
        .namespace_ = v_text(v, 3),
        .pod = v_text(v, 4),
        .uid = v_text(v, 5),
        .engine_tag = v_text(v, 6),
        .engine_id = v_text(v, 7),
        .action = v_text(v, 8),
        .reason = v_text(v, 9),
        .result = v_text(v, 10),
        .http_code = (int)v_int(v, 11),
        .message = v_text(v, 12),
        .identity = v_text(v, 13),
    };
    p->last_id = a.id;
    return p->cb(&a, p->ud);
}

int kj_journal_actions(kj_journal *j, const kj_action_filter *f, kj_action_cb cb, void *ud,
                       kj_err *err)
{
    static const kj_action_filter all = {0};
    static const keyset_query query = {"actions", action_page_sql, action_page_bind,
                                       action_page_row};
    action_pages p = {.f = f ? f : &all, .cb = cb, .ud = ud};
    p.last_id = p.f->reverse ? INT64_MAX : 0;
    return page_through(j, &query, &p, p.f->limit, err);
}

int kj_journal_pod_terminal_since(kj_journal *j, const char *uid, int64_t now_ms, int64_t *first_ms,
                                  kj_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(j->db,
                                "INSERT INTO pod_terminal (uid, first_seen_ms) VALUES (?1, ?2)"
                                " ON CONFLICT (uid) DO UPDATE SET first_seen_ms = first_seen_ms"
                                " RETURNING first_seen_ms",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        bind_text(st, 1, uid);
        sqlite3_bind_int64(st, 2, now_ms);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *first_ms = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : db_err(j, rc, err, "pod terminal time");
}

static int same_text(const unsigned char *a, const char *b)
{
    return a ? b && !strcmp((const char *)a, b) : !b;
}

int kj_journal_action_repeats_last(kj_journal *j, const kj_action *a, kj_err *err)
{
    /* The engine indexes hold a pod's rows in id order: the newest is one
     * step away. A pod with neither label is rare (a custom selector); its
     * search reads the audit backwards to its latest row. */
    const char *sql =
        a->engine_tag  ? "SELECT action, reason, result, message FROM reconcile_actions"
                         " WHERE engine_tag = ?1 AND uid IS ?3 ORDER BY id DESC LIMIT 1"
        : a->engine_id ? "SELECT action, reason, result, message FROM reconcile_actions"
                         " WHERE engine_id = ?2 AND uid IS ?3 ORDER BY id DESC LIMIT 1"
                       : "SELECT action, reason, result, message FROM reconcile_actions"
                         " WHERE uid IS ?3 AND engine_tag IS NULL AND engine_id IS NULL"
                         " ORDER BY id DESC LIMIT 1";
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL), same = 0;
    if (rc == SQLITE_OK) {
        bind_text(st, 1, a->engine_tag);
        bind_text(st, 2, a->engine_id);
        bind_text(st, 3, a->uid);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            same = same_text(sqlite3_column_text(st, 0), a->action) &&
                   same_text(sqlite3_column_text(st, 1), a->reason) &&
                   same_text(sqlite3_column_text(st, 2), a->result ? a->result : "ok") &&
                   same_text(sqlite3_column_text(st, 3), a->message);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? same : db_err(j, rc, err, "latest action of pod");
}

/* --- one writer per journal, and the file under it (issue 10) ------------------ */

#define KJ_WAL_LIMIT "67108864" /* journal_size_limit: also truncates the WAL at close */

static const char *const file_suffix[3] = {"", "-wal", "-shm"};

static void sibling(char *buf, size_t size, const char *path, const char *suffix)
{
    snprintf(buf, size, "%s%s", path, suffix);
}

/* Whether the process has CAP_CHOWN in its effective set. */
static int has_cap_chown(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    unsigned long long caps = 0;
    int found = 0;
    if (!f)
        return 0;
    while (!found && fgets(line, sizeof line, f))
        found = sscanf(line, "CapEff: %llx", &caps) == 1;
    fclose(f);
    return found && (caps & 1ULL); /* CAP_CHOWN is capability 0 */
}

/* Whether the -wal and -shm files SQLite creates for this process end up
 * usable by the journal's owner: we are the owner, or root with CAP_CHOWN
 * (SQLite then gives the files it creates to the database's owner). */
static int creates_owner_files(const struct stat *db)
{
    uid_t me = geteuid();
    return me == db->st_uid || (me == 0 && has_cap_chown());
}

/* The holder's pid as the lock file says it, 0 when unknown. */
static long lock_holder(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : 0;
}

/*
 * flock(2) on "<journal>.lock", a file of its own: closing a descriptor of
 * the database file would drop every POSIX lock SQLite holds on it in this
 * process, and flock() does not mix with those locks either way. The file is
 * never removed (removing a lock file lets two processes lock two inodes).
 */
static int lock_take(kj_journal *j, kj_err *err)
{
    char lp[4200];
    sibling(lp, sizeof lp, j->path, ".lock");
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return kj_err_set(err, errno == EACCES || errno == EROFS ? KJ_EREADONLY : KJ_EIO,
                          "journal '%s': cannot open its lock file '%s': %s", j->path, lp,
                          strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? lock_holder(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK)
            return kj_err_set(err, KJ_EIO, "journal '%s': cannot lock '%s': %s", j->path, lp,
                              strerror(e));
        if (pid)
            return kj_err_set(err, KJ_ELOCKED,
                              "journal '%s' is in use by another writer (pid %ld holds '%s')",
                              j->path, pid, lp);
        return kj_err_set(err, KJ_ELOCKED,
                          "journal '%s' is in use by another writer (it holds '%s')", j->path, lp);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    ssize_t w = ftruncate(fd, 0) == 0 ? pwrite(fd, pid, (size_t)n, 0) : -1;
    (void)w; /* the pid only makes a second writer's message better */
    j->lock_fd = fd;
    return 0;
}

/* A writer must be able to write the journal, the files SQLite keeps beside
 * it, and the directory they live in; say which one it cannot. */
static int check_access(kj_journal *j, kj_err *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", j->path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    if (access(dir, W_OK | X_OK) != 0)
        return kj_err_set(err, KJ_EREADONLY,
                          "journal '%s': cannot write in its directory '%s' (%s), where SQLite "
                          "keeps the journal's -wal and -shm files",
                          j->path, dir, strerror(errno));
    for (int i = 0; i < 3; i++) {
        char p[4200];
        struct stat sb;
        sibling(p, sizeof p, j->path, file_suffix[i]);
        if (stat(p, &sb) != 0 || access(p, R_OK | W_OK) == 0)
            continue;
        int e = errno;
        if (i == 0)
            return kj_err_set(err, KJ_EREADONLY,
                              "journal '%s': not writable by this process (uid %u; the file "
                              "belongs to uid %u, mode %04o): %s",
                              j->path, (unsigned)geteuid(), (unsigned)sb.st_uid,
                              (unsigned)(sb.st_mode & 07777), strerror(e));
        if (sb.st_uid == geteuid())
            return kj_err_set(err, KJ_EREADONLY,
                              "journal '%s': '%s' is not writable (mode %04o): %s", j->path, p,
                              (unsigned)(sb.st_mode & 07777), strerror(e));
        return kj_err_set(err, KJ_EREADONLY,
                          "journal '%s': '%s' belongs to uid %u and this process (uid %u) cannot "
                          "write it; a reader running as that user may have left it: give it to "
                          "uid %u, or remove '%s-wal' and '%s-shm' if the WAL is empty and nothing "
                          "uses the journal",
                          j->path, p, (unsigned)sb.st_uid, (unsigned)geteuid(), (unsigned)geteuid(),
                          j->path, j->path);
    }
    return 0;
}

/*
 * A reader must leave the journal's directory as it found it, or leave files
 * the journal's owner can use (SQLite creates -wal and -shm as whoever opens
 * the journal first). When neither holds, no connection is open (there is
 * no -shm) and the WAL is empty, the database file alone is the journal:
 * read it as an immutable snapshot, which creates nothing and locks nothing.
 */
static int reader_query(kj_journal *j, const char **query, kj_err *err)
{
    char p[4200];
    struct stat db, wal, shm;
    if (stat(j->path, &db) != 0)
        return 0; /* the open says why */
    sibling(p, sizeof p, j->path, "-wal");
    int have_wal = stat(p, &wal) == 0;
    sibling(p, sizeof p, j->path, "-shm");
    int have_shm = stat(p, &shm) == 0;
    if ((have_wal && have_shm) || creates_owner_files(&db))
        return 0;
    if (have_wal && wal.st_size > 0)
        return kj_err_set(err, KJ_EREADONLY,
                          "journal '%s': its -wal holds changes and its -shm is missing; reading "
                          "it as uid %u would create files the journal's owner (uid %u) cannot "
                          "use: read it as uid %u, or start kjournald first",
                          j->path, (unsigned)geteuid(), (unsigned)db.st_uid, (unsigned)db.st_uid);
    j->snapshot = 1;
    *query = "mode=ro&immutable=1";
    return 0;
}

static int open_prepare(kj_journal *j, unsigned flags, const char **query, kj_err *err)
{
    if (j->readonly)
        return reader_query(j, query, err);
    int rc = check_access(j, err);
    if (!rc && (flags & KJ_JOURNAL_LOCK))
        rc = lock_take(j, err);
    return rc;
}

/* SQLite falls back to read-only when it cannot open the file for writing;
 * a writer must fail at once rather than at its first commit. */
static int open_check_writable(kj_journal *j, kj_err *err)
{
    if (j->readonly || sqlite3_db_readonly(j->db, "main") != 1)
        return 0;
    return kj_err_set(err, KJ_EREADONLY,
                      "journal '%s': SQLite could open it only read-only (uid %u): a writer needs "
                      "to write the file and its directory",
                      j->path, (unsigned)geteuid());
}

static void record_ids(kj_journal *j)
{
    for (int i = 0; i < 3; i++) {
        char p[4200];
        struct stat sb;
        sibling(p, sizeof p, j->path, file_suffix[i]);
        if (stat(p, &sb) == 0) {
            j->ids[i].dev = sb.st_dev;
            j->ids[i].ino = sb.st_ino;
        }
    }
}

static int open_finish(kj_journal *j, kj_err *err)
{
    struct stat db;
    int rc = exec(j, "PRAGMA journal_size_limit = " KJ_WAL_LIMIT, err);
    if (rc)
        return rc;
    /* The owner's -wal and -shm stay after the last close, WAL emptied, so
     * that readers (another user, a group) find them and create nothing.
     * Files nobody else could use are removed by SQLite as usual. */
    if (stat(j->path, &db) == 0 && creates_owner_files(&db)) {
        int one = 1;
        sqlite3_file_control(j->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    }
    record_ids(j);
    return 0;
}

int kj_journal_check_path(kj_journal *j, kj_err *err)
{
    static const char *const name[3] = {"the journal file", "its -wal file", "its -shm file"};
    if (j->lost)
        return kj_err_set(err, KJ_ESTALE, "journal '%s': deleted or replaced while open", j->path);
    for (int i = 0; i < 3; i++) {
        char p[4200];
        struct stat sb;
        if (!j->ids[i].ino)
            continue;
        sibling(p, sizeof p, j->path, file_suffix[i]);
        int gone = stat(p, &sb) != 0;
        if (!gone && sb.st_dev == j->ids[i].dev && sb.st_ino == j->ids[i].ino)
            continue;
        j->lost = 1;
        return kj_err_set(err, KJ_ESTALE,
                          "journal '%s': %s was %s while open; nothing more can be stored in it",
                          j->path, name[i], gone ? "deleted" : "replaced by another file");
    }
    return 0;
}

/*
 * A lost handle's WAL goes into the file it belongs to, through the
 * descriptors SQLite holds (a journal moved away keeps every acknowledged
 * event), and is emptied; then nothing is removed or checkpointed by name,
 * since the names may now be another journal's. Should the WAL stay full,
 * it is moved aside when it still sits beside a file that is not its own.
 */
static void close_lost(kj_journal *j)
{
    if (!j->lost || !j->db)
        return;
    int one = 1;
    sqlite3_file_control(j->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    int rc = sqlite3_wal_checkpoint_v2(j->db, "main", SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_db_config(j->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
    if (rc == SQLITE_OK)
        return;
    char q[4400], wal[4200], aside[4300];
    struct stat sb;
    sibling(wal, sizeof wal, j->path, "-wal");
    int db_ours =
        stat(j->path, &sb) == 0 && sb.st_dev == j->ids[0].dev && sb.st_ino == j->ids[0].ino;
    int wal_ours = j->ids[1].ino && stat(wal, &sb) == 0 && sb.st_dev == j->ids[1].dev &&
                   sb.st_ino == j->ids[1].ino;
    snprintf(aside, sizeof aside, "%s.lost-%ld", wal, (long)getpid());
    if (!db_ours && wal_ours && rename(wal, aside) == 0) {
        kj_log(KJ_LOG_ERROR, "journal lost: its WAL moved aside", "path=%s wal=%s error=%s",
               kj_logq(q, sizeof q, j->path), aside, sqlite3_errstr(rc));
        return;
    }
    kj_log(KJ_LOG_ERROR, "journal lost: its WAL could not be emptied", "path=%s error=%s",
           kj_logq(q, sizeof q, j->path), sqlite3_errstr(rc));
}

/* A snapshot sees the file as it was when opened: open again, normally if a
 * writer has come since (its -wal and -shm exist now). */
static int snapshot_refresh(kj_journal *j, kj_err *err)
{
    kj_journal *fresh = NULL;
    int rc = kj_journal_open(j->path, KJ_JOURNAL_READONLY, &fresh, err);
    if (rc)
        return rc;
    kj_journal old = *j;
    *j = *fresh;
    *fresh = old;
    kj_journal_close(fresh);
    return 0;
}

int kj_journal_runs_interrupt(kj_journal *j, int64_t *n, kj_err *err)
{
    if (n)
        *n = 0;
    if (j->lock_fd < 0)
        return kj_err_set(err, KJ_EINVAL,
                          "journal '%s': only the holder of the writer lock may mark runs "
                          "interrupted",
                          j->path);
    int rc = exec(j,
                  "UPDATE reconcile_runs SET status = 'interrupted',"
                  " finished_ms = coalesce((SELECT max(time_ms) FROM reconcile_actions"
                  "  WHERE run = reconcile_runs.id), started_ms),"
                  " actions_ok = (SELECT count(*) FROM reconcile_actions"
                  "  WHERE run = reconcile_runs.id AND result = 'ok'),"
                  " actions_failed = (SELECT count(*) FROM reconcile_actions"
                  "  WHERE run = reconcile_runs.id AND result = 'failed')"
                  " WHERE status = 'running'",
                  err);
    if (!rc && n)
        *n = sqlite3_changes(j->db);
    return rc;
}
