/*
 * cmd_ship.c - kjournal ship: follow Kyuubi's JSON event log (session and
 * server-info files under its root) and publish each complete line to
 * kjournald, remembering per file how far kjournald has acknowledged.
 *
 * The loop: scan the day directories (on inotify events, and every --rescan
 * as a fallback), and for every file that grew, was truncated or replaced,
 * read complete lines from the acknowledged offset in rounds of --chunk
 * lines, publish a round through the publisher (window, retries, Lazy
 * Pirate), move the offset past the lines kjournald answered, and write the
 * state file now and then (atomically). Only what is answered moves the
 * offset, so a crash of anything re-sends, and the journal's dedupe answers
 * "duplicate".
 *
 * SIGTERM and SIGINT are blocked and read from a signalfd between rounds: a
 * round in flight always finishes, and its acknowledgements are saved.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "ipc/ipc.h"
#include "publish_flags.h"
#include "ship.h"

static const char usage[] =
    "usage: kjournal ship --state PATH [--endpoint E] [--once] [OPTIONS] ROOT\n"
    "\n"
    "Follows Kyuubi's JSON event log under ROOT (Kyuubi's\n"
    "kyuubi.backend.server.event.json.log.path: a directory or a file:// URI):\n"
    "ROOT/kyuubi_session/day=*/*.json and ROOT/kyuubi_server_info/day=*/*.json,\n"
    "including day directories and files that appear later and old day files that\n"
    "grow again, and publishes each complete line to kjournald in file order.\n"
    "\n"
    "The state file records, per file (device, inode, a fingerprint of its first\n"
    "bytes), how far kjournald has acknowledged; it is written atomically after\n"
    "acknowledgements, and a restart resumes there. A file that shrank or whose\n"
    "first bytes changed (Kyuubi truncates its day files when it restarts) is read\n"
    "again from the start: the journal answers 'duplicate' for what it has.\n"
    "\n"
    "A line kjournald rejects, or that is not JSON, is logged with its file, line\n"
    "number and error code, counted and skipped. A line too large for a request\n"
    "is sent with its exception cut to its message. Server-info lines are sent\n"
    "with serverName, serverIP, startTime, eventTime, state and eventType only:\n"
    "serverConf and serverEnv (secrets) never leave this process.\n"
    "\n"
    "Without --once it follows until SIGTERM or SIGINT (which finish the requests\n"
    "in flight and save the state) and logs its progress at --progress intervals.\n"
    "\n"
    "options:\n";

static const char usage_end[] =
    "\n"
    "exit codes: 0 every line acknowledged (--once) or stopped by a signal,\n"
    "1 some lines were rejected or skipped (--once) or a runtime failure, 2 usage\n"
    "error, 3 no ROOT (--once), 6 the state file is damaged (move it away to ship\n"
    "everything again), 8 kjournald stayed unreachable (--once), 9 another\n"
    "kjournal ship uses the state file. --check-config exits 3 when ROOT or the\n"
    "state file's directory does not exist.\n"
    "\n"
    "example:\n"
    "  kjournal ship --endpoint tcp://kjournald:5680 \\\n"
    "      --state /opt/kyuubi/events/.kjournal-ship.state file:///opt/kyuubi/events\n";

#define PROG "kjournal ship"
#define READ_BUF (1u << 20) /* the reader's buffer, unless a line is longer */

typedef struct counts {
    uint64_t lines, stored, dup, rejected, skipped, unacked;
} counts;

/* One line of a round: where it ends, its number, and what became of it. */
typedef struct mark {
    int64_t end, lineno;
    long idx;         /* index into the round's events; -1: not sent */
    const char *code; /* not sent: why (NULL: blank) */
} mark;

typedef struct shipper {
    const char *root, *state_path;
    kj_ship_state st;
    kj_publisher *pub;
    size_t max_request, max_line, chunk_lines, chunk_bytes;
    int once;
    int ino_fd, sig_fd;
    int stop;        /* a signal asked us to stop */
    int unreachable; /* the last round left lines unacknowledged */
    int dirty;       /* the state changed since it was saved */
    int64_t last_save;
    counts n;
    /* the reader: buf holds the file's bytes [rbase, rbase + rhave) */
    char *buf;
    size_t cap, rhave;
    int64_t rbase;
    /* the round */
    char **ev;
    mark *m;
    kj_publish_result *res;
    size_t nev, nm, bytes;
} shipper;

static const char *q(char *buf, size_t size, const char *s)
{
    return kj_logq(buf, size, s);
}

static int signalled(shipper *s)
{
    struct signalfd_siginfo si;
    while (s->sig_fd >= 0 && read(s->sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
        s->stop = 1;
    return s->stop;
}

static int save(shipper *s, int force)
{
    if (!s->dirty || (!force && kj_mono_ms() - s->last_save < 1000))
        return 0;
    kj_err err = {0};
    if (kj_ship_state_save(s->state_path, &s->st, 1, &err) < 0) {
        char b[512];
        kj_log(KJ_LOG_ERROR, "cannot save the state", "error=%s", q(b, sizeof b, err.msg));
        return -1;
    }
    s->dirty = 0;
    s->last_save = kj_mono_ms();
    return 0;
}

/* --- scanning ------------------------------------------------------------------ */

static void watch(shipper *s, const char *path, uint32_t mask)
{
    static int warned;
    if (s->ino_fd < 0 || inotify_add_watch(s->ino_fd, path, mask | IN_ONLYDIR) >= 0)
        return;
    if (errno == ENOSPC && !warned++)
        kj_log(KJ_LOG_WARN, "out of inotify watches, relying on the periodic rescan", NULL);
}

/* Finds the event-log files under the root: marks the known ones seen, adds
 * the new ones at offset 0, and watches every directory on the way. */
static void scan(shipper *s)
{
    static const char *const kinds[] = {"kyuubi_session", "kyuubi_server_info"};
    char dir[4096], day[4096], rel[4096];
    for (size_t i = 0; i < s->st.n; i++)
        s->st.f[i].seen = 0;
    watch(s, s->root, IN_CREATE | IN_MOVED_TO);
    for (int k = 0; k < 2; k++) {
        snprintf(dir, sizeof dir, "%s/%s", s->root, kinds[k]);
        watch(s, dir, IN_CREATE | IN_MOVED_TO);
        DIR *d = opendir(dir);
        if (!d)
            continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "day=", 4))
                continue;
            if ((size_t)snprintf(day, sizeof day, "%s/%s", dir, de->d_name) >= sizeof day)
                continue;
            DIR *dd = opendir(day);
            if (!dd)
                continue;
            watch(s, day, IN_CREATE | IN_MOVED_TO | IN_MODIFY);
            struct dirent *fe;
            while ((fe = readdir(dd))) {
                if ((size_t)snprintf(rel, sizeof rel, "%s/%s/%s", kinds[k], de->d_name,
                                     fe->d_name) >= sizeof rel ||
                    kj_ship_rel_kind(rel) < 0)
                    continue;
                kj_ship_file *f = kj_ship_state_find(&s->st, rel);
                if (!f && !(f = kj_ship_state_add(&s->st, rel))) {
                    kj_log(KJ_LOG_ERROR, "out of memory", NULL);
                    continue;
                }
                f->seen = 1;
            }
            closedir(dd);
        }
        closedir(d);
    }
}

/* --- one file -------------------------------------------------------------- */

static int head_hash(int fd, uint32_t len, uint64_t *out)
{
    char b[KJ_SHIP_FP_MAX];
    ssize_t r = pread(fd, b, len, 0);
    if (r != (ssize_t)len)
        return -1;
    *out = kj_ship_hash(b, len);
    return 0;
}

/* A fingerprint of a file's head, read before any line is: the lines read
 * after it come from the same file or from one that no longer matches it. */
typedef struct head {
    uint64_t fp;
    uint32_t len; /* 0: none to record */
} head;

/* Starts f again from 0 when the file at its path is not the one the state
 * knows, or is shorter than what was acknowledged. Reads the file's head into
 * *hd for grow_fingerprint, now, before its lines are read: a fingerprint
 * taken after them could be of the file Kyuubi truncated and wrote again
 * meanwhile (same path, same inode, maybe the same size), whose lines would
 * then pass for acknowledged. */
static void check_identity(shipper *s, kj_ship_file *f, int fd, const struct stat *sb, head *hd)
{
    const char *why = NULL;
    uint64_t h;
    *hd = (head){0};
    if (f->dev != (uint64_t)sb->st_dev || f->ino != (uint64_t)sb->st_ino)
        why = f->ino || f->dev ? "replaced" : NULL;
    else if (sb->st_size < f->offset)
        why = "truncated";
    else if (f->fp_len && (head_hash(fd, f->fp_len, &h) < 0 || h != f->fp))
        why = "rewritten";
    else
        goto head;
    if (why) {
        char b[1024];
        kj_log(KJ_LOG_INFO, "file changed, reading it again from the start",
               "file=%s how=%s offset=%" PRId64 " size=%lld", q(b, sizeof b, f->rel), why,
               f->offset, (long long)sb->st_size);
    }
    f->dev = (uint64_t)sb->st_dev;
    f->ino = (uint64_t)sb->st_ino;
    f->fp = 0;
    f->fp_len = 0;
    f->offset = f->line = 0;
    s->dirty = 1;
head:
    if (f->fp_len >= KJ_SHIP_FP_MAX || sb->st_size <= f->fp_len)
        return;
    uint32_t len = sb->st_size < KJ_SHIP_FP_MAX ? (uint32_t)sb->st_size : KJ_SHIP_FP_MAX;
    char b[KJ_SHIP_FP_MAX];
    /* Its first fp_len bytes must still be those the fingerprint knows. */
    if (pread(fd, b, len, 0) == (ssize_t)len && (!f->fp_len || kj_ship_hash(b, f->fp_len) == f->fp))
        *hd = (head){.fp = kj_ship_hash(b, len), .len = len};
}

/* Extends the fingerprint to the head read before the lines (up to
 * KJ_SHIP_FP_MAX bytes), once the file has been shipped past the old one. */
static void grow_fingerprint(shipper *s, kj_ship_file *f, const head *hd)
{
    if (hd->len <= f->fp_len || f->offset < f->fp_len)
        return;
    f->fp = hd->fp;
    f->fp_len = hd->len;
    s->dirty = 1;
}

static void round_reset(shipper *s)
{
    for (size_t i = 0; i < s->nev; i++)
        free(s->ev[i]);
    s->nev = s->nm = s->bytes = 0;
}

static void add_mark(shipper *s, int64_t end, int64_t lineno, long idx, const char *code)
{
    s->m[s->nm++] = (mark){.end = end, .lineno = lineno, .idx = idx, .code = code};
}

/* Looks for the end of a line too long to hold, from off on. Returns 1 and
 * the offset after its newline in *end, 0 when the file ends first. */
static int skip_line(shipper *s, int fd, int64_t off, int64_t *end)
{
    for (;;) {
        ssize_t r = pread(fd, s->buf, s->cap, off);
        if (r <= 0)
            return 0;
        char *nl = memchr(s->buf, '\n', (size_t)r);
        if (nl) {
            *end = off + (nl - s->buf) + 1;
            return 1;
        }
        off += r;
    }
}

/* Reads the next round of complete lines of f, from pos on (the reader's
 * buffer carries over between rounds of one file). Returns 0 or KJ_ENOMEM. */
static int read_round(shipper *s, kj_ship_file *f, int fd, int64_t pos, int64_t lineno)
{
    round_reset(s);
    if (pos < s->rbase || pos > s->rbase + (int64_t)s->rhave)
        s->rbase = pos, s->rhave = 0;
    while (s->nm < s->chunk_lines && s->bytes < s->chunk_bytes) {
        size_t at = (size_t)(pos - s->rbase), avail = s->rhave - at;
        char *start = s->buf + at;
        char *nl = memchr(start, '\n', avail);
        if (!nl) {
            memmove(s->buf, start, avail);
            s->rbase = pos, s->rhave = avail;
            if (avail >= s->max_line) {
                int64_t end;
                if (!skip_line(s, fd, pos + (int64_t)avail, &end))
                    break; /* its end is not written yet */
                add_mark(s, end, ++lineno, -1, "too_large");
                pos = s->rbase = end, s->rhave = 0;
                continue;
            }
            if (s->rhave == s->cap) {
                size_t cap = s->cap * 2 < s->max_line ? s->cap * 2 : s->max_line;
                char *b = realloc(s->buf, cap);
                if (!b)
                    return KJ_ENOMEM;
                s->buf = b, s->cap = cap;
            }
            ssize_t r = pread(fd, s->buf + s->rhave, s->cap - s->rhave, pos + (int64_t)s->rhave);
            if (r <= 0)
                break; /* no newline yet: a partial line waits */
            s->rhave += (size_t)r;
            continue;
        }
        size_t len = (size_t)(nl - start);
        if (len >= s->max_line) {
            pos += (int64_t)len + 1;
            add_mark(s, pos, ++lineno, -1, "too_large");
            continue;
        }
        char *out = NULL;
        const char *code = NULL;
        int v = kj_ship_line(f->kind, start, len, s->max_request, &out, &code);
        pos += (int64_t)len + 1;
        lineno++;
        if (v < 0)
            return v;
        if (v == KJ_SHIP_SEND_RAW) {
            /* not strndup: the buffer holds no NUL to stop a string function */
            if (!(out = malloc(len + 1)))
                return KJ_ENOMEM;
            memcpy(out, start, len);
            out[len] = 0;
        }
        if (v == KJ_SHIP_SEND_RAW || v == KJ_SHIP_SEND_OUT) {
            s->bytes += strlen(out);
            s->ev[s->nev] = out;
            add_mark(s, pos, lineno, (long)s->nev++, NULL);
        } else {
            add_mark(s, pos, lineno, -1, code);
        }
    }
    return 0;
}

/* Moves f's offset past every line of the round that was answered, in order,
 * and counts them; stops at the first line without an answer. */
static void apply_round(shipper *s, kj_ship_file *f)
{
    char fb[1024], mb[512], cb[128];
    for (size_t i = 0; i < s->nm; i++) {
        const mark *m = &s->m[i];
        if (m->idx >= 0) {
            const kj_publish_result *r = &s->res[m->idx];
            if (!r->status) {
                s->unreachable = 1;
                break;
            }
            s->n.stored += r->status == KJ_APPEND_STORED;
            s->n.dup += r->status == KJ_APPEND_DUPLICATE;
            if (r->status == KJ_APPEND_REJECTED) {
                s->n.rejected++;
                kj_log(KJ_LOG_WARN, "line rejected by kjournald",
                       "file=%s line=%" PRId64 " code=%s error=%s", q(fb, sizeof fb, f->rel),
                       m->lineno, q(cb, sizeof cb, r->code[0] ? r->code : "rejected"),
                       q(mb, sizeof mb, r->message));
            }
            s->n.lines++;
        } else if (m->code) {
            s->n.skipped++;
            s->n.lines++;
            kj_log(KJ_LOG_WARN, "line skipped", "file=%s line=%" PRId64 " code=%s",
                   q(fb, sizeof fb, f->rel), m->lineno, m->code);
        }
        f->offset = m->end;
        f->line = m->lineno;
        s->dirty = 1;
    }
}

static int publish_round(shipper *s, kj_ship_file *f)
{
    kj_err err = {0};
    if (s->nev) {
        int rc = kj_publisher_publish(s->pub, (const char *const *)s->ev, s->nev, s->res, &err);
        if (rc < 0 && rc != KJ_ETIMEDOUT) {
            char b[512];
            kj_log(KJ_LOG_WARN, "publishing failed", "error=%s", q(b, sizeof b, err.msg));
        }
    }
    apply_round(s, f);
    return 0;
}

/* Ships what f holds beyond its acknowledged offset. */
static int ship_file(shipper *s, kj_ship_file *f)
{
    char path[8192], b[1024];
    snprintf(path, sizeof path, "%s/%s", s->root, f->rel);
    struct stat sb;
    if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
        return 0;
    f->size = sb.st_size;
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    if (f->mtime == mtime && f->dev == (uint64_t)sb.st_dev && f->ino == (uint64_t)sb.st_ino &&
        sb.st_size == f->offset &&
        f->fp_len >= (sb.st_size < KJ_SHIP_FP_MAX ? sb.st_size : KJ_SHIP_FP_MAX))
        return 0; /* nothing new: the common case costs a stat */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno != ENOENT)
            kj_log(KJ_LOG_WARN, "cannot open", "file=%s error=%s", q(b, sizeof b, f->rel),
                   strerror(errno));
        return 0;
    }
    int rc = 0;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
        goto out;
    f->mtime = mtime;
    head hd = {0};
    check_identity(s, f, fd, &sb, &hd);
    s->rbase = f->offset, s->rhave = 0;
    while (!signalled(s)) {
        if ((rc = read_round(s, f, fd, f->offset, f->line)) < 0)
            break;
        if (!s->nm)
            break;
        int64_t before = f->offset;
        publish_round(s, f);
        round_reset(s);
        if (s->unreachable || f->offset == before)
            break;
        save(s, 0);
    }
    round_reset(s);
    grow_fingerprint(s, f, &hd);
    if (fstat(fd, &sb) == 0)
        f->size = sb.st_size;
out:
    close(fd);
    /* A long line grew the buffer: give the memory back. */
    if (s->cap > READ_BUF) {
        char *small = realloc(s->buf, READ_BUF);
        if (small)
            s->buf = small, s->cap = READ_BUF;
        s->rhave = 0;
    }
    return rc;
}

static int ship_all(shipper *s)
{
    s->unreachable = 0;
    for (size_t i = 0; i < s->st.n && !s->stop && !s->unreachable; i++) {
        if (!s->st.f[i].seen)
            continue;
        int rc = ship_file(s, &s->st.f[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void progress(shipper *s)
{
    char b[1024];
    int64_t behind = 0;
    size_t files = 0;
    for (size_t i = 0; i < s->st.n; i++) {
        const kj_ship_file *f = &s->st.f[i];
        if (!f->seen)
            continue;
        files++;
        int64_t fb = f->size > f->offset ? f->size - f->offset : 0;
        behind += fb;
        if (fb)
            kj_log(KJ_LOG_INFO, "behind",
                   "file=%s line=%" PRId64 " offset=%" PRId64 " behind_bytes=%" PRId64,
                   q(b, sizeof b, f->rel), f->line, f->offset, fb);
    }
    kj_log(KJ_LOG_INFO, "progress",
           "files=%zu lines=%" PRIu64 " stored=%" PRIu64 " duplicate=%" PRIu64 " rejected=%" PRIu64
           " skipped=%" PRIu64 " behind_bytes=%" PRId64 " kjournald=%s",
           files, s->n.lines, s->n.stored, s->n.dup, s->n.rejected, s->n.skipped, behind,
           s->unreachable ? "unreachable" : "ok");
}

/* Drains the inotify queue; returns 1 when something may have been created
 * (a directory scan is due). */
static int drain_inotify(shipper *s)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int rescan = 0;
    ssize_t r;
    while (s->ino_fd >= 0 && (r = read(s->ino_fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + r;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            if (e->mask & (IN_CREATE | IN_MOVED_TO | IN_Q_OVERFLOW | IN_IGNORED))
                rescan = 1;
            p += sizeof *e + e->len;
        }
    }
    return rescan;
}

static int follow(shipper *s, int64_t rescan_ms, int64_t progress_ms)
{
    int64_t next_scan = 0, next_progress = kj_mono_ms() + progress_ms, backoff = 0;
    int64_t retry_at = 0;
    int need_scan = 1;
    while (!signalled(s)) {
        int64_t now = kj_mono_ms();
        if (need_scan || now >= next_scan) {
            scan(s);
            next_scan = now + rescan_ms;
            need_scan = 0;
        }
        if (now >= retry_at) {
            int was = s->unreachable;
            if (ship_all(s) < 0)
                return KJ_EXIT_FAILURE;
            if (s->unreachable) {
                backoff = backoff ? (backoff * 2 > 30000 ? 30000 : backoff * 2) : 1000;
                retry_at = kj_mono_ms() + backoff;
                if (!was)
                    kj_log(KJ_LOG_WARN, "kjournald does not acknowledge, retrying",
                           "retry_ms=%" PRId64, backoff);
            } else {
                if (was)
                    kj_log(KJ_LOG_INFO, "kjournald acknowledges again", NULL);
                backoff = 0;
            }
        }
        save(s, 1);
        now = kj_mono_ms();
        if (now >= next_progress) {
            progress(s);
            next_progress = now + progress_ms;
        }
        int64_t wait = next_scan - now;
        if (next_progress - now < wait)
            wait = next_progress - now;
        if (s->unreachable && retry_at - now < wait)
            wait = retry_at - now;
        struct pollfd pf[2] = {{s->sig_fd, POLLIN, 0}, {s->ino_fd, POLLIN, 0}};
        if (poll(pf, s->ino_fd >= 0 ? 2 : 1, wait > 0 ? (int)wait : 0) > 0 &&
            (pf[1].revents & POLLIN))
            need_scan |= drain_inotify(s);
    }
    return save(s, 1) < 0 ? KJ_EXIT_FAILURE : KJ_EXIT_OK;
}

static int once(shipper *s)
{
    scan(s);
    if (ship_all(s) < 0)
        return KJ_EXIT_FAILURE;
    int saved = save(s, 1);
    size_t files = 0;
    int64_t behind = 0;
    for (size_t i = 0; i < s->st.n; i++)
        if (s->st.f[i].seen) {
            files++;
            if (s->st.f[i].size > s->st.f[i].offset)
                behind += s->st.f[i].size - s->st.f[i].offset;
        }
    printf("kjournal ship: %zu files, %" PRIu64 " lines: %" PRIu64 " stored, %" PRIu64
           " duplicate, %" PRIu64 " rejected, %" PRIu64 " skipped%s\n",
           files, s->n.lines, s->n.stored, s->n.dup, s->n.rejected, s->n.skipped,
           s->unreachable ? "; kjournald stopped acknowledging, the rest was not shipped"
           : s->stop      ? "; stopped by a signal"
                          : "");
    fflush(stdout);
    if (saved < 0)
        return KJ_EXIT_FAILURE;
    if (s->unreachable)
        return KJ_EXIT_UNAVAILABLE;
    if (s->n.rejected || s->n.skipped)
        return KJ_EXIT_FAILURE;
    return KJ_EXIT_OK;
}

static int set_log_level(void *ud, const char *v, char *msg, size_t size)
{
    kj_log_level *l = ud;
    if (kj_log_parse_level(v, l) < 0) {
        snprintf(msg, size, "expected debug, info, warn or error");
        return -1;
    }
    return 0;
}

/* --check-config: the endpoint and the key files as kjournal publish checks
 * them, ROOT a directory, the state file's directory there and the state file
 * (when there is one) readable; nothing connected, locked or written. */
static int check_config(const char *endpoint, const kj_publisher_opts *po, const char *root,
                        const char *state)
{
    kj_err err = {0};
    if (kj_ipc_check_endpoint(endpoint, 0, &err) < 0 ||
        kj_ipc_check_publisher_keys(po->curve_server_key, po->curve_secret_key, &err) < 0)
        return kj_opts_fail(PROG, err.code == KJ_ENOENT ? KJ_EXIT_NOFILE : KJ_EXIT_USAGE, "%s",
                            err.msg);
    struct stat sb;
    if (stat(root, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return kj_opts_fail(PROG, KJ_EXIT_NOFILE,
                            "no directory '%s' (ROOT, Kyuubi's event log path; without --once "
                            "kjournal ship would wait for it)",
                            root);
    char *dir = strdup(state);
    if (!dir)
        return kj_opts_fail(PROG, KJ_EXIT_FAILURE, "out of memory");
    char *slash = strrchr(dir, '/');
    const char *d = !slash ? "." : slash == dir ? "/" : (*slash = 0, dir);
    int have_dir = stat(d, &sb) == 0 && S_ISDIR(sb.st_mode);
    int code = have_dir ? KJ_EXIT_OK
                        : kj_opts_fail(PROG, KJ_EXIT_NOFILE,
                                       "--state '%s': its directory '%s' does not exist", state, d);
    free(dir);
    if (code)
        return code;
    kj_ship_state st = {0};
    int rc = kj_ship_state_load(state, &st, &err);
    size_t files = st.n;
    kj_ship_state_free(&st);
    if (rc < 0)
        return kj_opts_fail(PROG, rc == KJ_ECORRUPT ? KJ_EXIT_CORRUPT : KJ_EXIT_FAILURE,
                            "state file damaged: %s (move it away to ship everything again; the "
                            "journal answers duplicate for what it has)",
                            err.msg);
    char what[9000];
    snprintf(what, sizeof what, "root %s, endpoint %s, curve %s, state %s (%zu files)", root,
             endpoint, po->curve_server_key ? "on" : "off", state, files);
    kj_opts_config_ok(PROG, what);
}

/* ROOT without its file:// scheme and trailing slashes; NULL for another
 * scheme. */
static char *root_path(const char *arg)
{
    if (!strncmp(arg, "file://", 7)) {
        arg += 7;
        if (*arg != '/')
            return NULL; /* file://host/... */
    } else if (strstr(arg, "://")) {
        return NULL;
    }
    char *p = strdup(arg);
    size_t n = p ? strlen(p) : 0;
    while (n > 1 && p[n - 1] == '/')
        p[--n] = 0;
    return p;
}

int kj_cmd_ship(int argc, char **argv)
{
    const char *endpoint = kj_publish_default_endpoint();
    kj_publisher_opts po = kj_publisher_defaults();
    const char *state = NULL;
    int help = 0, once_flag = 0, check = 0, operands;
    int64_t rescan_ms = 10000, progress_ms = 60000;
    size_t max_request = KJ_IPC_MAX_MESSAGE, max_line = 8u << 20, chunk = 4096;
    kj_log_level level = KJ_LOG_INFO;
    kj_opt net[KJ_PUBLISH_FLAGS_N];
    kj_publish_flags(net, &endpoint, &po);
    const kj_opt opts[] = {
        {"state", 0, KJ_OPT_STRING, &state, "PATH",
         .help = "the state file (required; its directory must exist)"},
        {"once", 0, KJ_OPT_FLAG, &once_flag, NULL,
         .help = "ship what is there, wait for every acknowledgement, print a\nsummary and exit"},
        KJ_OPTS_INCLUDE(net),
        {"rescan", 0, KJ_OPT_DURATION, &rescan_ms, "DUR",
         .help = "look for new files this often besides inotify (default 10s)", .min = 100},
        {"progress", 0, KJ_OPT_DURATION, &progress_ms, "DUR",
         .help = "log progress this often (default 1m)", .min = 100},
        {"max-request", 0, KJ_OPT_SIZE, &max_request, "BYTES",
         .help = "a line above this has its exception cut to its message\n"
                 "(default 1048576, kjournald's --max-message)",
         .min = 4096, .max = 1u << 30},
        {"max-line", 0, KJ_OPT_SIZE, &max_line, "BYTES",
         .help = "a line above this is skipped unread (default 8 MiB)", .min = 65536,
         .max = 1u << 30},
        {"chunk", 0, KJ_OPT_SIZE, &chunk, "N",
         .help = "lines (and KiB) per round of acknowledgements (default\n4096): more keeps more "
                 "requests in flight at the end of\na round, and costs memory",
         .min = 1, .max = 65536},
        {"log-level", 0, KJ_OPT_CALL, NULL, "LEVEL", .help = "debug, info (default), warn, error",
         .fn = set_log_level, .ud = &level},
        {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"},
        KJ_OPTS_CHECK_CONFIG(&check),
        {0},
    };
    int rc = kj_opts_parse(PROG, opts, argc, argv, &operands);
    if (help) {
        kj_opts_usage(stdout, usage, opts, usage_end);
        return KJ_EXIT_OK;
    }
    if (rc)
        return rc;
    if (operands != 1)
        return kj_opts_fail(PROG, KJ_EXIT_USAGE, "expected one ROOT (Kyuubi's event log path)");
    if (!state)
        return kj_opts_fail(PROG, KJ_EXIT_USAGE, "--state PATH is required");
    kj_log_set_level(level);
    if (max_line < max_request)
        max_line = max_request;

    shipper s = {.state_path = state, .once = once_flag, .ino_fd = -1, .sig_fd = -1};
    s.max_request = max_request, s.max_line = max_line, s.chunk_lines = chunk;
    s.chunk_bytes = chunk * 1024; /* 4 MiB by default, whatever the lines' size */
    int code = KJ_EXIT_OK, lock_fd = -1;
    char *root = root_path(argv[1]);
    kj_err err = {0};
    if (!root) {
        code = kj_opts_fail(PROG, KJ_EXIT_USAGE,
                            "ROOT '%s' is neither a local path nor a file:///path URI", argv[1]);
        goto out;
    }
    s.root = root;
    if (check) {
        code = check_config(endpoint, &po, root, state);
        goto out;
    }
    struct stat sb;
    int have_root = stat(root, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (once_flag && !have_root) {
        code = kj_opts_fail(PROG, KJ_EXIT_NOFILE, "no directory '%s'", root);
        goto out;
    }
    char lock[4096];
    snprintf(lock, sizeof lock, "%s.lock", state);
    lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) {
        code = kj_opts_fail(PROG, KJ_EXIT_FAILURE, "cannot open '%s': %s", lock, strerror(errno));
        goto out;
    }
    if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        code = kj_opts_fail(PROG, KJ_EXIT_LOCKED, "another kjournal ship uses the state file '%s'",
                            state);
        goto out;
    }
    if ((rc = kj_ship_state_load(state, &s.st, &err)) < 0) {
        code = kj_opts_fail(PROG, rc == KJ_ECORRUPT ? KJ_EXIT_CORRUPT : KJ_EXIT_FAILURE,
                            "state file damaged: %s (move it away to ship everything again; the "
                            "journal answers duplicate for what it has)",
                            err.msg);
        goto out;
    }
    s.cap = READ_BUF;
    s.buf = malloc(s.cap);
    s.ev = calloc(chunk, sizeof *s.ev);
    s.m = calloc(chunk, sizeof *s.m);
    s.res = calloc(chunk, sizeof *s.res);
    if (!s.buf || !s.ev || !s.m || !s.res) {
        code = kj_opts_fail(PROG, KJ_EXIT_FAILURE, "out of memory");
        goto out;
    }
    /* Before the publisher starts ZeroMQ's threads: they inherit the mask, and
     * one that has not run yet (and blocked every signal itself) would take a
     * SIGTERM with its default action, killing us instead of stopping us. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    s.sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (kj_publisher_new(endpoint, &po, &s.pub, &err) < 0) {
        code = kj_opts_fail(PROG, err.code == KJ_ENOENT ? KJ_EXIT_NOFILE : KJ_EXIT_USAGE, "%s",
                            err.msg);
        goto out;
    }
    if (!once_flag)
        s.ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    char b[4096], eb[512];
    kj_log(KJ_LOG_INFO, once_flag ? "shipping once" : "following", "root=%s endpoint=%s files=%zu",
           q(b, sizeof b, root), q(eb, sizeof eb, endpoint), s.st.n);
    if (!have_root)
        kj_log(KJ_LOG_WARN, "no such directory yet, waiting for Kyuubi to create it", "root=%s",
               q(b, sizeof b, root));
    code = once_flag ? once(&s) : follow(&s, rescan_ms, progress_ms);
    if (!once_flag)
        progress(&s);
out:
    if (s.sig_fd >= 0)
        close(s.sig_fd);
    if (s.ino_fd >= 0)
        close(s.ino_fd);
    if (lock_fd >= 0)
        close(lock_fd);
    kj_publisher_destroy(s.pub);
    kj_ship_state_free(&s.st);
    round_reset(&s);
    free(s.buf);
    free(s.ev);
    free(s.m);
    free(s.res);
    free(root);
    return code;
}
