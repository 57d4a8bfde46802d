/*
 * checkpoint.c - WAL checkpoints off the commit path (checkpoint_internal.h
 * says why and how).
 */
#include "checkpoint_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const kj_ckpt_limits default_limits = {
    .soft = 1000,    /* ~4 MB copied per pass */
    .restart = 4000, /* the WAL file stays ~16 MB */
    .cheap = 256,
    .hard = 16000, /* ~64 MB, journal_size_limit */
    .hard_wait = 20,
    .idle = 1000,
};

struct kj_ckpt {
    sqlite3 *writer; /* the handle's connection; the hook runs on its thread */
    sqlite3 *db;     /* the thread's own connection */
    char *path;
    int busy_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wake, stop, a pass ended, the writer's rewind ended */

    /* Under mu. */
    kj_ckpt_limits lim;
    int stop, wake, in_pass, writer_busy;
    int pending;    /* commits since the thread's last pass began */
    unsigned cycle; /* WAL rewinds the writer has seen */
    int have;       /* done: the last pass of this cycle, done frames copied */
    int done;
    kj_ckpt_stats st;

    /* The writer's thread only. */
    int last_frames; /* the WAL's frames after the previous commit */
    int woke_at;     /* ... when the thread was last woken */
    int over_hard;   /* a rewind at the hard limit has failed since the last rewind */
    int writer_err;  /* the last rewind error logged; 0: none */

    /* The thread only. */
    int thread_err; /* the last pass error logged; 0: none */
};

static void log_sqlite(kj_log_level level, const char *msg, const char *path, int rc, sqlite3 *db)
{
    char q[4400], e[600];
    const char *detail =
        sqlite3_extended_errcode(db) == rc ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    kj_log(level, msg, "path=%s error=%s", kj_logq(q, sizeof q, path),
           kj_logq(e, sizeof e, detail));
}

/* --- the thread ------------------------------------------------------------- */

/* Waits for a reason to run a pass; returns 0 to stop. With frames left
 * uncopied, a pass comes at least every lim.idle ms, so that an idle
 * journal's WAL ends up copied and the next commit starts it over. */
static int wait_for_work(kj_ckpt *c)
{
    while (!c->stop) {
        if (c->wake && !c->writer_busy)
            return 1;
        if (c->pending && !c->writer_busy && c->lim.idle > 0) {
            struct timespec dl = kj_deadline_in(c->lim.idle);
            if (pthread_cond_timedwait(&c->cv, &c->mu, &dl) == ETIMEDOUT && !c->writer_busy)
                c->wake = 1;
        } else {
            pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    return 0;
}

static void *run(void *arg)
{
    kj_ckpt *c = arg;
    pthread_mutex_lock(&c->mu);
    while (wait_for_work(c)) {
        c->wake = 0;
        c->pending = 0;
        c->in_pass = 1;
        unsigned cycle = c->cycle;
        pthread_mutex_unlock(&c->mu);

        int log = 0, done = 0;
        int rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);

        pthread_mutex_lock(&c->mu);
        c->in_pass = 0;
        c->st.passes++;
        /* A pass that began before the WAL started over counted frames of
         * the old one. */
        if (rc == SQLITE_OK && cycle == c->cycle) {
            c->have = 1;
            c->done = done;
        }
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
            c->st.pass_errors++;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);

        /* BUSY: another connection checkpoints; the WAL is copied all the
         * same. Anything else (a full disk, an I/O error) is logged once,
         * and once more when passes work again. Commits are unaffected:
         * the WAL only grows until a checkpoint works. */
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && rc != c->thread_err) {
            log_sqlite(KJ_LOG_ERROR, "journal checkpoint failed; the WAL keeps growing", c->path,
                       rc, c->db);
            c->thread_err = rc;
        } else if (rc == SQLITE_OK && c->thread_err) {
            char q[4400];
            kj_log(KJ_LOG_INFO, "journal checkpoints work again", "path=%s",
                   kj_logq(q, sizeof q, c->path));
            c->thread_err = 0;
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* --- the writer's side ---------------------------------------------------------- */

/* A RESTART checkpoint on the writer's connection, outside any transaction:
 * copies what is left, fsyncs, and rewinds the WAL once no reader is in it.
 * Waits wait_ms at most for readers (and another writer); 0: not at all. */
static void rewind_wal(kj_ckpt *c, int hard, int wait_ms)
{
    sqlite3_busy_timeout(c->writer, wait_ms);
    int rc = sqlite3_wal_checkpoint_v2(c->writer, "main", SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    sqlite3_busy_timeout(c->writer, c->busy_ms);

    pthread_mutex_lock(&c->mu);
    if (rc == SQLITE_OK) {
        c->cycle++;
        c->have = 0;
        if (hard)
            c->st.rewinds_hard++;
        else
            c->st.rewinds_cheap++;
    } else if ((rc & 0xff) == SQLITE_BUSY) {
        c->st.rewind_busy++;
    } else {
        c->st.rewind_errors++;
    }
    pthread_mutex_unlock(&c->mu);

    char q[4400];
    if (rc == SQLITE_OK) {
        c->woke_at = 0;
        c->over_hard = 0;
        if (c->writer_err)
            kj_log(KJ_LOG_INFO, "journal WAL rewound again", "path=%s",
                   kj_logq(q, sizeof q, c->path));
        c->writer_err = 0;
    } else if ((rc & 0xff) == SQLITE_BUSY) {
        if (hard && !c->over_hard)
            kj_log(KJ_LOG_WARN, "journal WAL past its limit: a reader or another writer holds it",
                   "path=%s frames=%d limit=%d", kj_logq(q, sizeof q, c->path), c->last_frames,
                   c->lim.hard);
        c->over_hard |= hard;
    } else if (rc != c->writer_err) {
        log_sqlite(KJ_LOG_ERROR, "journal checkpoint failed; the WAL keeps growing", c->path, rc,
                   c->writer);
        c->writer_err = rc;
    }
}

/*
 * The WAL hook: runs after every commit of the writer's connection, the
 * commit durable and its locks released. Always SQLITE_OK: anything else
 * would make a committed transaction report a failure.
 */
static int on_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    kj_ckpt *c = arg;
    (void)db;
    (void)name;
    pthread_mutex_lock(&c->mu);
    if (frames < c->last_frames) { /* the WAL started over (rewind_wal, or SQLite) */
        c->cycle++;
        c->have = 0;
        c->st.rewinds++;
        c->woke_at = 0;
        c->over_hard = 0;
    }
    c->last_frames = frames;
    if (frames > c->st.max_frames)
        c->st.max_frames = frames;
    if (!c->pending) { /* the thread may wait for this, to run an idle pass */
        c->pending = 1;
        pthread_cond_broadcast(&c->cv);
    }
    int hard = frames >= c->lim.hard;
    int cheap =
        frames >= c->lim.restart && c->have && !c->in_pass && frames - c->done <= c->lim.cheap;
    if (hard || cheap) {
        /* The thread's pass holds the checkpoint lock: a rewind now would
         * fail at once. At the hard limit, wait for it. */
        while (c->in_pass)
            pthread_cond_wait(&c->cv, &c->mu);
        c->writer_busy = 1;
        pthread_mutex_unlock(&c->mu);
        rewind_wal(c, hard, hard ? c->lim.hard_wait : 0);
        pthread_mutex_lock(&c->mu);
        c->writer_busy = 0;
        pthread_cond_broadcast(&c->cv);
    } else if (!c->in_pass && !c->wake &&
               (frames - c->woke_at >= c->lim.soft || frames >= c->lim.restart)) {
        /* Past `restart`, passes run back to back, so that a cheap rewind
         * comes soon. */
        c->wake = 1;
        c->woke_at = frames;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return SQLITE_OK;
}

/* --- start and stop ------------------------------------------------------------ */

int kj_ckpt_start(sqlite3 *writer, const char *path, const char *uri, int busy_ms, kj_ckpt **out,
                  kj_err *err)
{
    *out = NULL;
    kj_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return kj_err_set(err, KJ_ENOMEM, "journal: out of memory");
    }
    c->writer = writer;
    c->busy_ms = busy_ms;
    c->lim = default_limits;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);

    /* The thread's connection: synchronous=FULL, so that a pass fsyncs the
     * database before it counts frames as copied (the WAL may then be
     * overwritten); the SELECT opens the WAL. */
    int rc = sqlite3_open_v2(uri, &c->db,
                             SQLITE_OPEN_URI | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
        rc = sqlite3_exec(c->db, "PRAGMA synchronous = FULL; SELECT count(*) FROM sqlite_schema",
                          NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        kj_err_set(err, KJ_EIO, "journal '%s': cannot open its checkpointer's connection: %s", path,
                   c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }

    /* The thread takes no signal: kjournald's handlers must interrupt the
     * threads that wait for them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&c->thread, NULL, run, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e) {
        kj_err_set(err, KJ_ENOMEM, "journal '%s': cannot start its checkpointer: %s", path,
                   strerror(e));
        goto fail;
    }
    sqlite3_wal_autocheckpoint(writer, 0);
    sqlite3_wal_hook(writer, on_commit, c);
    *out = c;
    return 0;
fail:
    sqlite3_close_v2(c->db);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
    return err ? err->code : KJ_EIO;
}

void kj_ckpt_stop(kj_ckpt *c)
{
    if (!c)
        return;
    sqlite3_wal_hook(c->writer, NULL, NULL);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close_v2(c->db);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
}

void kj_ckpt_limits_get(kj_ckpt *c, kj_ckpt_limits *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->lim;
    pthread_mutex_unlock(&c->mu);
}

void kj_ckpt_limits_set(kj_ckpt *c, const kj_ckpt_limits *l)
{
    pthread_mutex_lock(&c->mu);
    c->lim = *l;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void kj_ckpt_stats_get(kj_ckpt *c, kj_ckpt_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
