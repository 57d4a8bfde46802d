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
#include <time.h>

static const kj_ckpt_limits default_limits = {
    .soft = 4000,    /* ~16 MB copied per pass, as often as wal_autocheckpoint did */
    .restart = 8000, /* the WAL file stays near 32 MB */
    .cheap = 256,
    .hard = 16000, /* ~64 MB, journal_size_limit */
    .rewind_wait = 5,
    .hard_wait = 20,
    .idle = 1000,
};

struct kj_ckpt {
    sqlite3 *writer; /* the handle's connection; the hook runs on its thread */
    sqlite3 *db;     /* the thread's own connection */
    char *path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* wake, stop, a pass ended, the writer's rewind ended */

    /* Under mu. */
    kj_ckpt_limits lim;
    int stop, wake, in_pass, writer_busy;
    int pending;     /* commits since the thread's last pass began */
    unsigned cycle;  /* WAL rewinds seen */
    int last_frames; /* the WAL's frames after the latest commit */
    kj_ckpt_stats st;

    /* The writer's thread only. */
    int busy_ms;     /* the writer's busy timeout, and the one in force */
    int busy_now;    /* ... now (hard_wait during a rewind) */
    int64_t busy_t0; /* when the current wait began */
    int woke_at;     /* frames when the thread was last woken */
    int over_hard;   /* a rewind at the hard limit has failed since the last rewind */
    int writer_err;  /* the last rewind error logged; 0: none */

    /* The thread only. */
    int thread_err;    /* the last error logged; 0: none */
    int thread_wait;   /* how long its rewind waits (thread_busy_wait) */
    int64_t thread_t0; /* ... since when */
};

static void log_sqlite(kj_log_level level, const char *msg, const char *path, int rc, sqlite3 *db)
{
    char q[4400], e[600];
    const char *detail =
        sqlite3_extended_errcode(db) == rc ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    kj_log(level, msg, "path=%s error=%s", kj_logq(q, sizeof q, path),
           kj_logq(e, sizeof e, detail));
}

static void sleep_us(long us)
{
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static void add_ms(int64_t *total, int64_t *max, int64_t ms)
{
    *total += ms;
    if (ms > *max)
        *max = ms;
}

/*
 * The writer's busy handler: SQLite's default sleeps 1, 2, 5, 10 ms ... so
 * a commit that finds the thread rewinding for 1 ms would wait 3; here it
 * polls every 100 us, for as long as the busy timeout allows.
 */
static int writer_busy_wait(void *arg, int count)
{
    kj_ckpt *c = arg;
    if (count == 0)
        c->busy_t0 = kj_mono_ms();
    if (kj_mono_ms() - c->busy_t0 >= c->busy_now)
        return 0;
    sleep_us(count < 50 ? 100 : 1000);
    return 1;
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

/* BUSY is normal (a reader, a commit, another checkpointer); anything else
 * (a full disk, an I/O error) is logged once, and once more when
 * checkpoints work again. Commits go on either way: the WAL only grows. */
static void thread_result(kj_ckpt *c, int rc)
{
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY && rc != c->thread_err) {
        log_sqlite(KJ_LOG_ERROR, "journal checkpoint failed; the WAL keeps growing", c->path, rc,
                   c->db);
        c->thread_err = rc;
    } else if (rc == SQLITE_OK && c->thread_err) {
        char q[4400];
        kj_log(KJ_LOG_INFO, "journal checkpoints work again", "path=%s",
               kj_logq(q, sizeof q, c->path));
        c->thread_err = 0;
    }
}

/*
 * A rewind by the thread, when its pass left little to copy: a RESTART
 * checkpoint takes the writer lock, copies the rest, fsyncs and starts the
 * WAL over. A commit that comes meanwhile waits (writer_busy_wait); one in
 * progress, or a reader in the WAL, makes it give up after rewind_wait ms,
 * the writer lock held no longer than that plus the copy.
 */
static int thread_busy_wait(void *arg, int count)
{
    kj_ckpt *c = arg;
    if (count == 0)
        c->thread_t0 = kj_mono_ms();
    if (kj_mono_ms() - c->thread_t0 >= c->thread_wait)
        return 0;
    sleep_us(100); /* to take the writer lock between two commits */
    return 1;
}

static int thread_rewind(kj_ckpt *c, int wait_ms)
{
    c->thread_wait = wait_ms;
    sqlite3_busy_handler(c->db, thread_busy_wait, c);
    int rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    sqlite3_busy_handler(c->db, NULL, NULL);
    return rc;
}

/* A RESTART's outcome, under mu: a rewind counts under done, and starts a
 * new cycle of the WAL. */
static void count_rewind(kj_ckpt *c, int rc, int64_t *done)
{
    if (rc == SQLITE_OK) {
        c->cycle++;
        (*done)++;
    } else if ((rc & 0xff) == SQLITE_BUSY) {
        c->st.rewind_busy++;
    } else {
        c->st.rewind_errors++;
    }
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
        int64_t t0 = kj_mono_ms();
        int rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, &log, &done);
        int64_t t1 = kj_mono_ms();

        pthread_mutex_lock(&c->mu);
        c->st.passes++;
        add_ms(&c->st.pass_ms, &c->st.pass_ms_max, t1 - t0);
        if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
            c->st.pass_errors++;
        /* done counts frames of this WAL only if no rewind came between
         * the pass's start and now. The further past `restart`, the more
         * the rewind may copy: it costs a commit that collides with it no
         * more than the writer's rewind at `hard` would, which also waits
         * for the pass. */
        int wait = c->lim.rewind_wait;
        int allowed = c->lim.cheap + (c->last_frames - c->lim.restart) / 4;
        int rewind = rc == SQLITE_OK && cycle == c->cycle && !c->stop &&
                     c->last_frames >= c->lim.restart && c->last_frames - done <= allowed;
        pthread_mutex_unlock(&c->mu);
        thread_result(c, rc);

        if (rewind) {
            rc = thread_rewind(c, wait);
            int64_t t2 = kj_mono_ms();
            pthread_mutex_lock(&c->mu);
            add_ms(&c->st.rewind_ms, &c->st.rewind_ms_max, t2 - t1);
            count_rewind(c, rc, &c->st.rewinds_thread);
            pthread_mutex_unlock(&c->mu);
            thread_result(c, rc);
        }
        pthread_mutex_lock(&c->mu);
        c->in_pass = 0;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* --- the writer's side ---------------------------------------------------------- */

/*
 * At the hard limit: a RESTART checkpoint on the writer's connection,
 * outside any transaction, waiting hard_wait ms at most for readers (and
 * another writer). The thread is not in a pass (it holds the checkpoint
 * lock, which a checkpoint never waits for).
 */
static void writer_rewind(kj_ckpt *c)
{
    c->busy_now = c->lim.hard_wait;
    int rc = sqlite3_wal_checkpoint_v2(c->writer, "main", SQLITE_CHECKPOINT_RESTART, NULL, NULL);
    c->busy_now = c->busy_ms;

    pthread_mutex_lock(&c->mu);
    count_rewind(c, rc, &c->st.rewinds_hard);
    pthread_mutex_unlock(&c->mu);

    char q[4400];
    if (rc == SQLITE_OK) {
        if (c->writer_err)
            kj_log(KJ_LOG_INFO, "journal WAL rewound again", "path=%s",
                   kj_logq(q, sizeof q, c->path));
        c->writer_err = 0;
    } else if ((rc & 0xff) == SQLITE_BUSY) {
        if (!c->over_hard)
            kj_log(KJ_LOG_WARN, "journal WAL past its limit: a reader or another writer holds it",
                   "path=%s frames=%d limit=%d", kj_logq(q, sizeof q, c->path), c->last_frames,
                   c->lim.hard);
        c->over_hard = 1;
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
    if (frames < c->last_frames) { /* the WAL started over: by a RESTART, or by SQLite */
        c->cycle++;
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
    if (frames >= c->lim.hard) {
        int64_t t0 = kj_mono_ms();
        while (c->in_pass)
            pthread_cond_wait(&c->cv, &c->mu);
        c->writer_busy = 1;
        pthread_mutex_unlock(&c->mu);
        writer_rewind(c);
        pthread_mutex_lock(&c->mu);
        c->writer_busy = 0;
        add_ms(&c->st.writer_ms, &c->st.writer_ms_max, kj_mono_ms() - t0);
        pthread_cond_broadcast(&c->cv);
    } else if (!c->in_pass && !c->wake &&
               (frames - c->woke_at >= c->lim.soft || frames >= c->lim.restart)) {
        /* Past `restart`, passes run back to back, until one leaves little
         * enough to copy for the thread to rewind. */
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
    c->busy_ms = c->busy_now = busy_ms;
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
    sqlite3_busy_handler(writer, writer_busy_wait, c);
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
    sqlite3_busy_timeout(c->writer, c->busy_ms);
    pthread_mutex_lock(&c->mu);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close_v2(c->db);
    char q[4400];
    kj_ckpt_stats *st = &c->st;
    kj_log(KJ_LOG_INFO, "journal checkpointer stopped",
           "path=%s passes=%lld pass_errors=%lld pass_ms=%lld pass_ms_max=%lld rewinds=%lld "
           "rewinds_thread=%lld rewinds_hard=%lld rewind_busy=%lld rewind_errors=%lld "
           "rewind_ms=%lld rewind_ms_max=%lld writer_ms=%lld writer_ms_max=%lld max_frames=%d",
           kj_logq(q, sizeof q, c->path), (long long)st->passes, (long long)st->pass_errors,
           (long long)st->pass_ms, (long long)st->pass_ms_max, (long long)st->rewinds,
           (long long)st->rewinds_thread, (long long)st->rewinds_hard, (long long)st->rewind_busy,
           (long long)st->rewind_errors, (long long)st->rewind_ms, (long long)st->rewind_ms_max,
           (long long)st->writer_ms, (long long)st->writer_ms_max, st->max_frames);
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
    out->working = c->in_pass || c->wake || c->pending;
    pthread_mutex_unlock(&c->mu);
}
