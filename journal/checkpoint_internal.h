/*
 * checkpoint_internal.h - the journal's background checkpointer (issue 15),
 * internal to the journal module (journal.c starts it for handles opened
 * KJ_JOURNAL_CHECKPOINTER; tests read its counters and shrink its limits).
 *
 * SQLite's own checkpoints (wal_autocheckpoint) run inside the commit that
 * crosses the threshold: that commit copies the whole WAL into the database
 * and fsyncs it before it returns, and every ack queued behind it waits.
 * Here the writer's connection checkpoints nothing by itself; its WAL hook
 * (run after each commit, on the writer's thread) wakes a thread that owns
 * its own connection to the same file and runs PASSIVE checkpoints, which
 * never take the writer lock, so commits go on while the WAL is copied.
 *
 * SQLite rewinds the WAL only when a write transaction starts with every
 * frame copied and no reader inside the WAL; under continuous commits a
 * PASSIVE pass rarely ends between two commits, so the writer rewinds it
 * itself (a RESTART checkpoint in its WAL hook): once the WAL holds
 * `restart` frames and the thread's last pass left at most `cheap` frames
 * to copy (the rewind then costs a few pages and two fsyncs), or whatever
 * it costs once it holds `hard` frames. Readers hold the WAL only for a
 * page of rows; one still inside it makes the rewind fail (SQLITE_BUSY),
 * and the next commit tries again. Durability is SQLite's: commits are
 * synchronous=FULL whatever the checkpointer does, and a failed checkpoint
 * only leaves the WAL longer; the hook never fails a commit.
 *
 * Not across fork(): a child must open its own handle.
 */
#ifndef KJ_CHECKPOINT_INTERNAL_H
#define KJ_CHECKPOINT_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "journal.h"

typedef struct kj_ckpt kj_ckpt;

/* In WAL frames (one page, 4 KiB, each); times in ms. */
typedef struct kj_ckpt_limits {
    int soft;      /* wake the thread every `soft` frames committed */
    int restart;   /* from here, rewind once a rewind is cheap */
    int cheap;     /* ... i.e. at most this many frames are left to copy */
    int hard;      /* from here, rewind at every commit until it succeeds */
    int hard_wait; /* how long a rewind at `hard` waits for readers */
    int idle;      /* a pass at least this often while frames are uncopied */
} kj_ckpt_limits;

typedef struct kj_ckpt_stats {
    int64_t passes;        /* the thread's checkpoints, completed or not */
    int64_t pass_errors;   /* ... that failed with something else than BUSY */
    int64_t rewinds;       /* the WAL started over (by the writer or by SQLite) */
    int64_t rewinds_cheap; /* ... by the writer, cheap */
    int64_t rewinds_hard;  /* ... by the writer, at the hard limit */
    int64_t rewind_busy;   /* rewinds a reader or another writer stopped */
    int64_t rewind_errors; /* ... failed otherwise */
    int max_frames;        /* the most frames the WAL held after a commit */
} kj_ckpt_stats;

/*
 * Starts the checkpointer of the writer connection `writer` (of the journal
 * at path, opened through uri): sets its wal_autocheckpoint to 0 and its WAL
 * hook, opens the thread's connection, starts the thread. busy_ms: the
 * writer's busy timeout, restored after each rewind.
 */
int kj_ckpt_start(sqlite3 *writer, const char *path, const char *uri, int busy_ms, kj_ckpt **out,
                  kj_err *err);
/* Stops and joins the thread, closes its connection, removes the hook.
 * Accepts NULL. Call before the writer connection closes (its close, the
 * last connection's, then empties the WAL). */
void kj_ckpt_stop(kj_ckpt *c);

void kj_ckpt_limits_get(kj_ckpt *c, kj_ckpt_limits *out);
/* From the writer's thread, between commits. */
void kj_ckpt_limits_set(kj_ckpt *c, const kj_ckpt_limits *l);
void kj_ckpt_stats_get(kj_ckpt *c, kj_ckpt_stats *out);

/* The checkpointer of a handle, NULL when it has none (journal.c). */
kj_ckpt *kj_journal_ckpt(kj_journal *j);

#endif
