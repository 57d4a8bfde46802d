/*
 * kj.h - what every kjournal module shares: error codes, error messages,
 * clocks and the logfmt logger.
 *
 * Errors follow libuv: a function that can fail returns int, 0 on success or
 * a negative KJ_E... code. Where a caller needs more than the code it passes a
 * kj_err, which receives a human-readable message:
 *
 *     kj_err err = {0};
 *     if (kj_journal_open(path, 0, &j, &err) < 0)
 *         fprintf(stderr, "kjournal: %s\n", err.msg);
 *
 * A NULL kj_err is allowed everywhere and means "I only want the code".
 * Messages are lowercase, say what went wrong first, name the thing, and
 * never carry a token, a key or a certificate.
 */
#ifndef KJ_H
#define KJ_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum {
    KJ_OK = 0,
    KJ_EINVAL = -1,      /* bad argument or malformed input */
    KJ_ENOMEM = -2,      /* out of memory */
    KJ_EIO = -3,         /* I/O or SQLite failure */
    KJ_ENOENT = -4,      /* no such file or object */
    KJ_ENOTJOURNAL = -5, /* the file is not a kjournal database */
    KJ_ETOONEW = -6,     /* the journal's schema is newer than this binary */
    KJ_ECORRUPT = -7,    /* the journal is damaged */
    KJ_EBUSY = -8,       /* locked by another process for too long */
    KJ_ETIMEDOUT = -9,   /* a deadline passed */
    KJ_ECONFLICT = -10,  /* the object changed under us (HTTP 409 / 422) */
    KJ_EHTTP = -11,      /* an HTTP error that is none of the above */
    KJ_EPROTO = -12,     /* the peer broke the protocol */
    KJ_EREADONLY = -13,  /* a write on a read-only journal */
    KJ_ECANCELED = -14,  /* stopped on request */
    KJ_EAUTH = -15,      /* authentication or authorization failed */
    KJ_EUNAVAIL = -16,   /* the peer cannot be reached */
    KJ_ENOSPC = -17,     /* no space left: the disk (or the file size limit) is full */
    KJ_ELOCKED = -18,    /* the journal is held by another writer */
    KJ_ESTALE = -19,     /* the journal file was deleted or replaced while open */
};

/* A static name for an error code ("not a kjournal database"). */
const char *kj_strerror(int code);

typedef struct kj_err {
    int code;
    char msg[512];
} kj_err;

/* Sets err (if not NULL) to code and a printf-formatted message; returns code,
 * so that `return kj_err_set(err, KJ_EINVAL, "...")` reads naturally. */
int kj_err_set(kj_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends "prefix: " to the message already in err. Returns err->code. */
int kj_err_prefix(kj_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Wall-clock time in epoch milliseconds, and a monotonic clock in ms. */
int64_t kj_now_ms(void);
int64_t kj_mono_ms(void);
/* The absolute CLOCK_REALTIME time ms from now, as pthread_cond_timedwait()
 * takes it (ms <= 0: now). */
struct timespec kj_deadline_in(int64_t ms);

/* Formats epoch ms as ISO 8601 into buf ("2026-11-29T05:49:11.123Z" in UTC,
 * or local time with its offset). Returns buf. */
char *kj_format_time(int64_t ms, int utc, char *buf, size_t size);

/*
 * Logging, one logfmt record per line on stderr:
 *
 *     ts=2026-11-29T05:49:11.123Z level=info msg="journal opened" path=/var/lib/kjournal/journal.db
 *
 * kv is a printf format for the fields after msg. Values that can hold spaces
 * or quotes (paths, messages from elsewhere) go through kj_logq(), which
 * quotes and escapes them into a caller buffer. Records below the level set
 * with kj_log_set_level() are dropped. Thread-safe: one write(2) per record.
 */
typedef enum { KJ_LOG_DEBUG = 0, KJ_LOG_INFO, KJ_LOG_WARN, KJ_LOG_ERROR } kj_log_level;

void kj_log_set_level(kj_log_level level);
/* Parses "debug", "info", "warn", "error"; returns 0 or KJ_EINVAL. */
int kj_log_parse_level(const char *s, kj_log_level *out);
void kj_log(kj_log_level level, const char *msg, const char *kv, ...)
    __attribute__((format(printf, 3, 4)));
const char *kj_logq(char *buf, size_t size, const char *value);

/*
 * Makes room for at least need elements of size bytes in the array *p of
 * capacity *cap (doubling, from 16), keeping *p and *cap unchanged on
 * failure, so the caller's array stays whole. Returns 0 or KJ_ENOMEM.
 *
 *     if (kj_grow((void **)&a->items, &a->cap, a->n + 1, sizeof *a->items))
 *         return KJ_ENOMEM;
 *     a->items[a->n++] = item;
 */
int kj_grow(void **p, size_t *cap, size_t need, size_t size);

#endif
