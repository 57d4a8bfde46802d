/*
 * ship.h - the parts of kjournal ship (cmd_ship.c): the state file that
 * records, per event-log file, how far kjournald has acknowledged
 * (ship_state.c), and what is sent for one line of Kyuubi's event log
 * (ship_line.c).
 *
 * A file is known by its path under ROOT ("kyuubi_session/day=20261201/
 * server-kyuubi-0.json"), its device and inode, and a fingerprint of its first
 * bytes; the state holds the offset up to which every line was answered by
 * kjournald (stored, duplicate or rejected) and the number of lines there.
 */
#ifndef KJ_SHIP_H
#define KJ_SHIP_H

#include <stddef.h>
#include <stdint.h>

#include "journal/kj.h"

/* Bytes of a file's head that identify it (with device and inode). */
#define KJ_SHIP_FP_MAX 256
/* A state file larger than this is damaged, not read. */
#define KJ_SHIP_STATE_MAX (16u << 20)

typedef enum { KJ_SHIP_SESSION = 0, KJ_SHIP_SERVER_INFO = 1 } kj_ship_kind;

typedef struct kj_ship_file {
    char *rel;         /* path under ROOT, owned */
    kj_ship_kind kind; /* from the first component of rel */
    uint64_t dev, ino; /* 0, 0: not seen yet */
    uint64_t fp;       /* FNV-1a 64 of the first fp_len bytes */
    uint32_t fp_len;
    int64_t offset; /* acknowledged up to here (a line boundary) */
    int64_t line;   /* lines before offset */
    int64_t size;   /* at the last look (not saved) */
    int64_t mtime;  /* ns, at the last look (not saved) */
    int seen;       /* found by the last directory scan (not saved) */
} kj_ship_file;

typedef struct kj_ship_state {
    kj_ship_file *f;
    size_t n, cap;
} kj_ship_state;

/* The kind of a path under ROOT, or -1 when it is none the shipper reads:
 * "kyuubi_session/day=D/NAME.json" or "kyuubi_server_info/day=D/NAME.json",
 * NAME without '/', nothing that is ".." or hidden. */
int kj_ship_rel_kind(const char *rel);

/* Reads the state file at path into st (empty when the file does not exist).
 * KJ_ECORRUPT with err naming what is wrong when it is malformed, truncated
 * or hostile; KJ_EIO when it cannot be read. */
int kj_ship_state_load(const char *path, kj_ship_state *st, kj_err *err);
/* Writes st atomically: path.tmp, fsync, rename over path, fsync of the
 * directory. Files not seen by the last scan (seen == 0) are left out when
 * drop_unseen. */
int kj_ship_state_save(const char *path, const kj_ship_state *st, int drop_unseen, kj_err *err);
kj_ship_file *kj_ship_state_find(kj_ship_state *st, const char *rel);
/* Adds rel (a kj_ship_rel_kind() path) at offset 0; NULL when out of memory.
 * Pointers into st->f move: look files up again after an add. */
kj_ship_file *kj_ship_state_add(kj_ship_state *st, const char *rel);
void kj_ship_state_free(kj_ship_state *st);

/* FNV-1a 64 over n bytes. */
uint64_t kj_ship_hash(const void *p, size_t n);

/* --- lines (ship_line.c) ----------------------------------------------------- */

typedef enum {
    KJ_SHIP_SEND_RAW = 0, /* send the line as it is */
    KJ_SHIP_SEND_OUT,     /* send *out (the caller frees it) */
    KJ_SHIP_SKIP,         /* do not send; *code says why */
    KJ_SHIP_BLANK,        /* an empty line: nothing to send, nothing to count */
} kj_ship_verdict;

/*
 * What to send for one line (len bytes, no newline, no NUL needed) of a file
 * of kind. Server-info lines keep serverName, serverIP, startTime, eventTime,
 * state and eventType only (serverConf and serverEnv hold secrets). A line
 * over max_request bytes has its exception cut down to its message (then its
 * conf dropped) so that it fits; "too_large" when it still does not. Lines
 * that are not a JSON object are skipped ("not_json"). Returns the verdict;
 * KJ_ENOMEM when out of memory.
 */
int kj_ship_line(kj_ship_kind kind, const char *line, size_t len, size_t max_request, char **out,
                 const char **code);

#endif
