/*
 * journal.h - the kjournal journal: a SQLite file that is the single source
 * of truth for Kyuubi sessions, their events and the reconciler's audit.
 *
 * Open a journal, append events in batches, query it:
 *
 *     kj_journal *j;
 *     kj_err err = {0};
 *     if (kj_journal_open("/var/lib/kjournal/journal.db", 0, &j, &err) < 0)
 *         die("%s", err.msg);
 *     kj_append_result res[2];
 *     kj_journal_append(j, events, 2, res, &err);   // one transaction
 *     kj_journal_close(j);
 *
 * Durability: WAL, synchronous=FULL. When kj_journal_append() returns 0 the
 * batch is committed and on disk; an ack sent after that is safe.
 *
 * Threads: a kj_journal is one SQLite connection; use it from one thread at a
 * time. Several handles (threads or processes) may share one file: writers
 * wait for each other up to the busy timeout, readers never block writers.
 *
 * Read-only handles (KJ_JOURNAL_READONLY) open the file with mode=ro, never
 * write, never migrate, and work while kjournald writes. The query functions
 * below page through results and end their read transaction after every page
 * (KJ_JOURNAL_PAGE rows), so a slow consumer never starves WAL checkpoints.
 *
 * Callbacks receive rows whose strings are valid only during the call. A
 * callback returns 0 to go on, anything else to stop; the query then returns
 * that value.
 */
#ifndef KJ_JOURNAL_H
#define KJ_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "kj.h"

#define KJ_JOURNAL_PAGE 256

typedef struct kj_journal kj_journal;

enum {
    KJ_JOURNAL_READONLY = 1 << 0, /* open with mode=ro; the file must exist */
    KJ_JOURNAL_NOCREATE = 1 << 1, /* fail with KJ_ENOENT rather than create the file */
    /* The files this handle creates (the journal with its -wal and -shm, and
     * backups) are mode 0640 rather than 0600, whatever the umask. Files
     * that exist keep their mode. */
    KJ_JOURNAL_GROUP_READABLE = 1 << 2,
};

/*
 * Opens (and creates, unless NOCREATE or READONLY, mode 0600 or with
 * GROUP_READABLE 0640) the journal at path and brings its schema up to date.
 * Refuses, without modifying the file: a file that is not SQLite or a SQLite
 * database that is not a journal (KJ_ENOTJOURNAL), a journal whose schema is
 * newer than this binary (KJ_ETOONEW), a damaged file (KJ_ECORRUPT).
 */
int kj_journal_open(const char *path, unsigned flags, kj_journal **out, kj_err *err);
/* Closes j; accepts NULL. */
void kj_journal_close(kj_journal *j);
const char *kj_journal_path(const kj_journal *j);
/* The schema version this binary writes (the last embedded migration). */
int kj_journal_schema_version(void);

/* --- appending ------------------------------------------------------------ */

typedef enum {
    KJ_APPEND_STORED = 1,
    KJ_APPEND_DUPLICATE = 2, /* an event with this event_id is already stored */
    KJ_APPEND_REJECTED = 3,
} kj_append_status;

/* "stored" / "duplicate" / "rejected" / NULL. */
const char *kj_append_status_name(kj_append_status s);

typedef struct kj_append_result {
    kj_append_status status;
    const char *code;  /* on rejection: static machine-readable code */
    char message[192]; /* on rejection: what was wrong, naming the field */
} kj_append_result;

/*
 * Appends n events in one transaction and fills results[0..n). A rejected
 * event changes nothing; the others still land. Besides kj_event_validate()'s
 * codes, the journal rejects "session_closed" (an open for a closed session),
 * "time_in_future" (time_ms more than KJ_EVENT_CLOCK_SKEW_MS ahead of the
 * journal's clock) and "close_before_open" (a close earlier than its
 * session's first event); an event whose event_id is stored is a duplicate
 * whatever it carries. A server_start may close sessions (event.h): those
 * closes are stored with it, as events of their own ("kj:restarted:<session>",
 * reason "server_restarted"), and so is the close of an interactive session
 * whose open arrives after its server's restart. Returns 0 once the
 * transaction is committed and durable, or a negative code when nothing was
 * committed (results are then meaningless).
 */
int kj_journal_append(kj_journal *j, const kj_event *events, size_t n, kj_append_result *results,
                      kj_err *err);

/* --- sessions ------------------------------------------------------------- */

typedef struct kj_session {
    const char *session_id;
    kj_session_state state;
    const char *instance, *user; /* may be NULL */
    const char *engine_id;       /* Spark application id, may be NULL */
    const char *engine_tag;      /* kyuubi-unique-tag, may be NULL */
    const char *engine_namespace;
    int64_t created_ms; /* time_ms of the session's first event */
    int64_t updated_ms; /* time_ms of its latest event */
    int64_t closed_ms;  /* 0 while open */
    const char *close_reason;
    int64_t event_count;
    int64_t recorded_ms; /* when the journal last stored an event of it */
    const char *session_type; /* "interactive", "batch", or NULL: not known */
} kj_session;

typedef struct kj_session_filter {
    kj_session_state state; /* KJ_SESSION_NONE: any */
    const char *user;       /* NULL: any */
    const char *instance;   /* NULL: any */
    const char *engine;     /* NULL: any; else equal to engine_tag or engine_id */
    int64_t since_ms;       /* created_ms >= since_ms; 0: unbounded */
    int64_t until_ms;       /* created_ms < until_ms; 0: unbounded */
    int64_t limit;          /* 0: no limit */
    int reverse;            /* newest first */
} kj_session_filter;

typedef int (*kj_session_cb)(const kj_session *s, void *ud);

/* Sessions matching f, ordered by created_ms (then insertion order). */
int kj_journal_sessions(kj_journal *j, const kj_session_filter *f, kj_session_cb cb, void *ud,
                        kj_err *err);
/* One session; KJ_ENOENT when there is none. */
int kj_journal_session_get(kj_journal *j, const char *session_id, kj_session_cb cb, void *ud,
                           kj_err *err);
/* The sessions a pod belongs to: engine_tag == tag or engine_id == app_id
 * (either may be NULL). */
int kj_journal_sessions_of_pod(kj_journal *j, const char *tag, const char *app_id, kj_session_cb cb,
                               void *ud, kj_err *err);

/* Counts the sessions kj_journal_sessions_of_pod() streams, for the
 * reconciler's plan, from one prepared statement: how many are open and
 * closed, and the latest closed_ms among the closed ones. */
int kj_journal_count_sessions_of_pod(kj_journal *j, const char *tag, const char *app_id,
                                     int64_t *open, int64_t *closed, int64_t *last_closed_ms,
                                     kj_err *err);

/* --- events --------------------------------------------------------------- */

typedef struct kj_event_row {
    int64_t seq;         /* commit order, increasing */
    int64_t recorded_ms; /* when the journal stored it */
    kj_event event;
} kj_event_row;

typedef struct kj_event_filter {
    const char *session_id; /* NULL: any */
    int64_t since_ms;       /* time_ms >= since_ms; 0: unbounded */
    int64_t until_ms;       /* time_ms < until_ms; 0: unbounded */
    int64_t limit;          /* 0: no limit */
    int reverse;            /* newest first */
} kj_event_filter;

typedef int (*kj_event_cb)(const kj_event_row *row, void *ud);

/* Events matching f, ordered by (time_ms, seq), streamed page by page. */
int kj_journal_events(kj_journal *j, const kj_event_filter *f, kj_event_cb cb, void *ud,
                      kj_err *err);
/* Events with seq > after_seq in commit order (for following a live journal),
 * at most limit (0: all); *last_seq receives the last seq delivered (or
 * after_seq when none). */
int kj_journal_events_after(kj_journal *j, int64_t after_seq, const char *session_id, int64_t limit,
                            kj_event_cb cb, void *ud, int64_t *last_seq, kj_err *err);
/* The highest seq in the journal, 0 when empty. */
int kj_journal_last_seq(kj_journal *j, int64_t *seq, kj_err *err);

/* --- statistics ----------------------------------------------------------- */

typedef struct kj_journal_stats {
    int64_t sessions_open, sessions_closed;
    int64_t events_open, events_close;
    int64_t oldest_ms, newest_ms; /* event time_ms range; 0 when empty */
    int64_t runs, actions;
    int64_t file_bytes, wal_bytes;
    int schema_version;
} kj_journal_stats;

int kj_journal_stats_get(kj_journal *j, kj_journal_stats *out, kj_err *err);

typedef int (*kj_count_cb)(const char *key, int64_t open, int64_t closed, void *ud);
/* Sessions counted by "user" or "instance" (key NULL for sessions without one),
 * ordered by key. */
int kj_journal_count_by(kj_journal *j, const char *column, kj_count_cb cb, void *ud, kj_err *err);

/* --- maintenance ---------------------------------------------------------- */

/* Deletes sessions closed before cutoff_ms, with their events. */
int kj_journal_prune(kj_journal *j, int64_t cutoff_ms, int64_t *sessions, int64_t *events,
                     kj_err *err);
/* Writes a consistent copy to dest (VACUUM INTO); dest must not exist, and is
 * created 0600 (0640 for a handle opened KJ_JOURNAL_GROUP_READABLE). Safe
 * while another process writes. Works on a read-only handle. */
int kj_journal_backup(kj_journal *j, const char *dest, kj_err *err);

typedef int (*kj_problem_cb)(const char *problem, void *ud);
/*
 * Checks integrity (PRAGMA integrity_check, foreign keys) and kjournal's
 * invariants: every session's state, counts and times agree with its events;
 * no event without a session. Each problem found is passed to cb (may be
 * NULL). Returns 0 when clean, KJ_ECORRUPT when problems were found (their
 * number in *problems), another negative code when the check could not run.
 */
int kj_journal_verify(kj_journal *j, kj_problem_cb cb, void *ud, int64_t *problems, kj_err *err);

/* --- reconciler audit ----------------------------------------------------- */

typedef struct kj_run {
    int64_t id;
    int64_t started_ms, finished_ms; /* finished_ms 0 while running */
    const char *trigger;             /* "recovery", "close", "resync", "manual" */
    int dry_run;
    const char *status; /* "running", "converged", "failed", ... */
    int64_t pods_seen, actions_ok, actions_failed;
    const char *identity; /* the kjournald --identity that ran it; NULL if none (schema 4) */
} kj_run;

typedef struct kj_action {
    int64_t id, run_id, time_ms;
    const char *namespace_, *pod, *uid; /* the pod acted on */
    const char *engine_tag, *engine_id; /* its labels, so sessions find their actions */
    const char *action;                 /* "release_finalizer", "delete", "close_session", ... */
    const char *reason;                 /* why, from the reconciliation table */
    const char *result;                 /* "ok", "gone", "conflict", "canceled", "failed",
                                           "reported", "planned" */
    int http_code;                      /* 0 when no request was made */
    const char *message;                /* may be NULL */
    const char *identity; /* read: its run's identity (NULL if none); ignored when recording */
} kj_action;

typedef struct kj_action_filter {
    int64_t run_id;         /* 0: any */
    const char *session_id; /* NULL: any; else actions on that session's pods */
    int64_t limit;          /* 0: no limit */
    int reverse;
} kj_action_filter;

typedef int (*kj_run_cb)(const kj_run *r, void *ud);
typedef int (*kj_action_cb)(const kj_action *a, void *ud);

int kj_journal_run_begin(kj_journal *j, const char *trigger, int dry_run, int64_t *run_id,
                         kj_err *err);
/* The same, recording who runs it (kjournald's --identity; NULL: nobody
 * named). The run's actions are recorded with the same identity. */
int kj_journal_run_begin_as(kj_journal *j, const char *trigger, int dry_run, const char *identity,
                            int64_t *run_id, kj_err *err);
int kj_journal_run_end(kj_journal *j, int64_t run_id, const char *status, int64_t pods_seen,
                       int64_t actions_ok, int64_t actions_failed, kj_err *err);
/* Records a->*; a->time_ms is set by the journal when 0 (a->id is ignored). */
int kj_journal_action_record(kj_journal *j, const kj_action *a, kj_err *err);
/* Records n actions in one transaction (one fsync for a whole pass's worth). */
int kj_journal_action_record_batch(kj_journal *j, const kj_action *a, size_t n, kj_err *err);
/* At most limit runs (0: all) in id order, newest first when reverse. */
int kj_journal_runs(kj_journal *j, int64_t limit, int reverse, kj_run_cb cb, void *ud, kj_err *err);
/* One run; KJ_ENOENT when there is none. */
int kj_journal_run_get(kj_journal *j, int64_t run_id, kj_run_cb cb, void *ud, kj_err *err);
int kj_journal_actions(kj_journal *j, const kj_action_filter *f, kj_action_cb cb, void *ud,
                       kj_err *err);

/*
 * When a pod was first seen terminal, for the retain period when the pod
 * carries no container finishedAt: the first call for a uid stores now_ms,
 * every call returns the stored time in *first_ms.
 */
int kj_journal_pod_terminal_since(kj_journal *j, const char *uid, int64_t now_ms, int64_t *first_ms,
                                  kj_err *err);

/*
 * Whether a would only repeat the latest action recorded for its pod: 1 when
 * the last row for a->uid (looked up through a->engine_tag, else
 * a->engine_id, the audit's indexes) has the same action, reason, result and
 * message; 0 when it differs or the pod has none; a negative code on error.
 * Lets the reconciler record a running orphan once, then only when it
 * changes, rather than at every pass.
 */
int kj_journal_action_repeats_last(kj_journal *j, const kj_action *a, kj_err *err);
/* --- one writer per journal, and the file under it (issue 10) --------------- */

/*
 * KJ_JOURNAL_LOCK (with a read-write open): take the journal's writer lock,
 * an flock(2) on the sidecar file "<path>.lock" (created 0600; it holds the
 * holder's pid and is never removed), for the life of the handle. A second
 * locked open anywhere, in this process too, fails with KJ_ELOCKED and a
 * message naming the journal and the holder's pid. kjournald and 'kjournal
 * recover' lock; read-only handles never look at the lock and are never
 * blocked; other read-write handles (prune, kjournald's own second handle)
 * rely on SQLite's locking as before.
 *
 * Every read-write open also refuses a journal this process cannot write
 * (KJ_EREADONLY): the file, its directory, or an existing "-wal"/"-shm" file
 * that is not writable.
 *
 * -wal and -shm: a read-write handle of the journal's owner (or of root with
 * CAP_CHOWN, whose files SQLite gives to the owner) leaves the two files in
 * place when it closes (SQLITE_FCNTL_PERSIST_WAL, the WAL truncated to 0
 * bytes), so that readers find them and create nothing. A read-only handle
 * that would have to create them, and whose files the owner could not use
 * (another user; root without CAP_CHOWN), reads the database file alone
 * (immutable=1) when no "-shm" exists (no connection is open) and the WAL
 * is empty; when the WAL holds changes it refuses (KJ_EREADONLY) rather than
 * leave files behind. Such a snapshot handle reopens itself before each
 * kj_journal_events_after(), so following still sees new events.
 */
enum { KJ_JOURNAL_LOCK = 1 << 8 }; /* an open flag, beside READONLY and NOCREATE */

/*
 * KJ_JOURNAL_CHECKPOINTER (with a read-write open; issue 15): WAL checkpoints
 * leave the commit path. Without it, the commit that finds 4000 pages in the
 * WAL copies them into the database and fsyncs it before it returns (tens of
 * ms, and every request queued behind it waits). With it, a thread of the
 * handle, with a connection of its own, copies the WAL while commits go on
 * (PASSIVE checkpoints) and starts it over when little is left to copy; a
 * commit waits for that only when it comes during it. The "-wal" file stays
 * near 32 MiB; should the thread fall behind, the commit that finds 16,000
 * pages (64 MiB) in the WAL rewinds it itself, so the file is bounded while
 * no reader holds a snapshot for long. Commits are as durable either way
 * (synchronous=FULL); checkpoint errors are logged and never fail a commit.
 * For long-lived writers that care about commit latency (kjournald); it
 * costs a thread and a second connection. Ignored on a read-only handle.
 * A handle so opened must not be used in a child after fork().
 */
enum { KJ_JOURNAL_CHECKPOINTER = 1 << 9 };

/*
 * Whether the path still names the files this read-write handle has open:
 * the journal, its "-wal" and its "-shm" (one stat(2) each; 0 on a
 * read-only handle). 0 when they do; KJ_ESTALE, with a message saying
 * which file went, when one was deleted or replaced; from then on the
 * handle is "lost": kj_journal_close() moves what the WAL holds into the
 * old file through the descriptors SQLite has open, empties that WAL, and
 * removes or rewrites nothing by name, so a file put in the journal's place
 * is never touched. kjournald calls it before each append (nothing goes
 * into a file that is no longer the journal) and after it, before the acks.
 */
int kj_journal_check_path(kj_journal *j, kj_err *err);

/*
 * With the writer lock held (KJ_JOURNAL_LOCK), no pass can be running: a
 * run still "running" was cut short by a killed process. Marks every such
 * run "interrupted", with finished_ms its last recorded action (else its
 * start) and its action counts from the audit; *n (may be NULL) receives
 * how many. KJ_EINVAL without the lock.
 */
int kj_journal_runs_interrupt(kj_journal *j, int64_t *n, kj_err *err);

#endif
