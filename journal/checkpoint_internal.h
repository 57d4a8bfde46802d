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
 * PASSIVE pass rarely ends between two commits, so the WAL would grow for
 * ever. Once it holds `restart` frames, the thread passes back to back, and
 * when a pass leaves at most `cheap` frames it rewinds the WAL itself: a
 * RESTART checkpoint, which takes the writer lock for the copy of those few
 * frames and two fsyncs (a commit arriving meanwhile waits that long, one
 * in progress makes it give up and try after the next pass). Should the WAL
 * reach `hard` frames all the same (the thread cannot keep up), the writer
 * rewinds it in its WAL hook, whatever it costs, and tries again at every
 * commit until it works. Readers hold the WAL only for a page of rows; one
 * inside it makes a rewind fail (SQLITE_BUSY) and the next attempt wait.
 * Durability is SQLite's: commits are synchronous=FULL whatever the
 * checkpointer does, and a failed checkpoint only leaves the WAL longer;
 * the hook never fails a commit. The thread's errors are logged.
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
    int soft;        /* wake the thread every `soft` frames committed */
    int restart;     /* from here, the thread passes back to back and rewinds */
    int cheap;       /* ... once a pass leaves at most this many frames to copy (plus a
                      * quarter of those past `restart`) */
    int hard;        /* from here, the writer rewinds at every commit until it works */
    int rewind_wait; /* how long the thread's rewind waits for the writer lock, readers */
    int hard_wait;   /* how long the writer's rewind waits for readers */
    int idle;        /* a pass at least this often while frames are uncopied */
} kj_ckpt_limits;

typedef struct kj_ckpt_stats {
    int64_t passes;                   /* the thread's PASSIVE checkpoints */
    int64_t pass_errors;              /* ... that failed with something else than BUSY */
    int64_t rewinds;                  /* the WAL started over (seen at the next commit) */
    int64_t rewinds_thread;           /* ... by the thread's RESTART */
    int64_t rewinds_hard;             /* ... by the writer's, at the hard limit */
    int64_t rewind_busy;              /* RESTARTs a reader or a commit stopped */
    int64_t rewind_errors;            /* ... that failed otherwise */
    int max_frames;                   /* the most frames the WAL held after a commit */
    int64_t pass_ms, pass_ms_max;     /* time in passes: total, longest */
    int64_t rewind_ms, rewind_ms_max; /* time in the thread's RESTARTs */
    int64_t writer_ms, writer_ms_max; /* time commits spent waiting for a pass and rewinding */
    int working;                      /* a pass runs or is due (kj_ckpt_stats_get's moment) */
} kj_ckpt_stats;

/*
 * Starts the checkpointer of the writer connection `writer` (of the journal
 * at path, opened through uri): sets its wal_autocheckpoint to 0 and its WAL
 * hook, opens the thread's connection, starts the thread. busy_ms: the
 * writer's busy timeout; its busy handler polls more finely than SQLite's
 * (a commit may wait for a rewind of the thread).
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
