/*
 * server.c - the ingest loop kjournald runs: ROUTER sockets, group commit,
 * acks after the commit.
 *
 * Two threads. The worker owns the ROUTER sockets: it takes each request off
 * its socket as soon as it is free to (between two decodes, never later than
 * after one), answers at once what needs no decoding (a broken envelope, a
 * body over max_message, anything that arrives while the requests held
 * exceed max_queued_bytes: "overloaded", retry), stages the rest in a queue
 * per peer, and sends the replies itself. As it never waits on the journal,
 * libzmq's per-peer queues (bounded only by HWM x message size, a GiB a
 * peer) stay short, and what kjournald holds is bounded in bytes for all
 * peers together by its count. (A front thread used to own the sockets and
 * pass requests and replies over an inproc pipe: two more thread hand-offs
 * per request, which cost more than all the rest of the ingest path.)
 *
 * The worker decodes requests into the batch in hand and hands each batch to
 * the committer thread, which appends it in one journal transaction
 * (synchronous=FULL: the commit returns once the WAL is on disk). The two
 * overlap: while one batch waits for its fsync, the worker takes the next
 * requests off the sockets, decodes them and gathers the next batch; once
 * the commit returns, the worker hands over the next batch at once, then
 * sends the acks of the one just done. So group commit adapts by itself:
 * an idle server commits a request as soon as it arrives (one fsync of
 * latency), a loaded one commits what arrived during the previous fsync (up
 * to batch_max events, and half as many requests as a peer's reply queue
 * holds). An ack is never sent before its batch's commit returned. Requests that need no journal (a
 * request-level error, every event rejected by the decoder) are answered at
 * once. A reply never blocks: ROUTER_MANDATORY plus DONTWAIT turn a vanished
 * or slow peer into a dropped reply, and the peer retries.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc.h"
#include "ipc_internal.h"

const double kj_ipc_batch_bounds[KJ_IPC_BUCKETS - 1] = {1,  2,   4,   8,   16,  32,
                                                        64, 128, 256, 512, 1024};
const double kj_ipc_commit_bounds_s[KJ_IPC_BUCKETS - 1] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};

#define MAX_ENV (1 + KJ_IPC_ENVELOPE_MAX + 1) /* identity, envelope, delimiter */
/* What a request costs the queued-bytes count besides its frames, so that a
 * flood of tiny requests is bounded too. */
#define REQUEST_OVERHEAD 512
/* A failing commit is logged when it starts, then once per this interval. */
#define FAIL_LOG_MS 10000
/* glibc's heap: shrunk at once only past this much free at its top, grown
 * by this much more than asked (see kj_ipc_server_new). */
#define KJ_IPC_TRIM_THRESHOLD (32 << 20)
#define KJ_IPC_TOP_PAD (1 << 20)
/* Worker idle after handling this many bytes: give the memory back. */
#define TRIM_AFTER_BYTES (8u << 20)

/* Where a request came from (its ROUTER) and what it counts in s->queued. */
typedef struct req_src {
    uint32_t sock;
    uint64_t bytes;
} req_src;

typedef struct pending {
    int sock;
    zmq_msg_t env[MAX_ENV];
    int nenv;
    size_t bytes; /* counted in s->queued until freed */
    kj_wire_request *req;
} pending;

typedef struct slot {
    kj_wire_item *item;
} slot;

/* A batch: the requests it answers and their events, in order. evs, res and
 * slots: nev in use, each with its own capacity. */
typedef struct batch {
    pending **pend;
    size_t npend, pend_cap;
    kj_event *evs;
    kj_append_result *res;
    slot *slots;
    size_t nev, ev_cap, res_cap, slot_cap;
    int64_t started_ms; /* when its first request was taken (batch_window_ms) */
    /* the commit's outcome, set by the committer */
    int rc;
    kj_err err;
    double secs;
} batch;

/* A request the worker took off its socket and has not decoded yet. */
typedef struct staged {
    struct staged *next;
    req_src h;
    zmq_msg_t f[MAX_ENV + 1]; /* envelope, then the body */
    int nf;
} staged;

/* A peer with staged requests: the worker serves peers in turn, as libzmq's
 * ROUTER does, so that one peer's flood does not delay the others. */
typedef struct peer {
    struct peer *hnext, *next; /* hash chain; the queue of peers to serve */
    uint32_t sock;
    size_t idlen;
    unsigned char id[KJ_IPC_ENVELOPE_FRAME_MAX + 1];
    staged *head, *tail;
} peer;
#define PEER_BUCKETS 1024

struct kj_ipc_server {
    kj_journal *j;
    kj_ipc_server_opts o;
    kj_wire_limits lim;
    void *ctx;
    void **socks;
    size_t nsocks;
    kj_zap *zap;
    int wake[2];
    atomic_int stop;
    pthread_mutex_t mu;
    kj_ipc_stats st;
    size_t transport_max;
    atomic_size_t queued; /* bytes of requests taken in and not yet answered */
    size_t since_trim;    /* bytes the worker handled since memory was last trimmed */
    /* A socket may hold requests its ZMQ_FD does not signal: set by a send
     * (libzmq may then take the read signal along with its own commands) and
     * by a run of takes cut short; cleared once every socket said EAGAIN. */
    int recheck;
    peer *peers[PEER_BUCKETS];
    peer *turn_head, *turn_tail; /* peers with staged requests, in serving order */
    /* a run of failed commits, for a log line per FAIL_LOG_MS, not per commit */
    uint64_t fail_run, fail_quiet;
    int64_t fail_logged_ms;
    /* The batch in hand (fill) and the one being committed (flight, or
     * NULL); they swap when a commit starts. */
    batch b[2];
    batch *fill, *flight;
    /* the committer thread: takes s->job, commits it, writes to done[1] */
    pthread_t committer;
    int committer_up;
    pthread_mutex_t cmu;
    pthread_cond_t cwake;
    batch *job;
    int cquit;
    int done[2];
    kj_err lost; /* code != 0: the journal file went (kj_journal_check_path) */
};

kj_ipc_server_opts kj_ipc_server_defaults(void)
{
    kj_ipc_server_opts o = {0};
    o.batch_max = KJ_IPC_BATCH_MAX;
    o.batch_window_ms = 0;
    o.drain_budget_ms = 5;
    o.max_message = KJ_IPC_MAX_MESSAGE;
    o.max_events = KJ_IPC_MAX_EVENTS;
    o.hwm = KJ_IPC_HWM;
    o.max_queued_bytes = KJ_IPC_MAX_QUEUED;
    return o;
}

static int bucket(const double *bounds, double v)
{
    int i = 0;
    while (i < KJ_IPC_BUCKETS - 1 && v > bounds[i])
        i++;
    return i;
}

static int open_socket(kj_ipc_server *s, const char *ep, const char *secret, kj_err *err)
{
    void *sock = zmq_socket(s->ctx, ZMQ_ROUTER);
    if (!sock)
        return kj_err_set(err, KJ_EIO, "cannot create a socket: %s", zmq_strerror(errno));
    s->socks[s->nsocks++] = sock;
    int one = 1, linger = 2000, hwm = s->o.hwm;
    /* The transport limit sits well above the protocol limit so that a
     * request too large gets a "too_large" answer (a publisher that hears
     * nothing retries, and it looks like an outage); only beyond the hard cap
     * does libzmq drop the connection. */
    int64_t maxmsg = (int64_t)s->transport_max;
    if (zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) < 0 ||
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm) < 0 ||
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0 ||
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof one) < 0)
        return kj_err_set(err, KJ_EIO, "cannot set socket options: %s", zmq_strerror(errno));
    if (secret && (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0 ||
                   zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, 40) < 0 ||
                   zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "kjournal", 8) < 0))
        return kj_err_set(err, KJ_EIO, "cannot enable CURVE: %s", zmq_strerror(errno));
    int is_ipc = !strncmp(ep, "ipc://", 6);
    int rc = is_ipc ? kj_ipc_check_endpoint_dir(ep, 1, err) : 0;
    if (rc < 0)
        return rc;
    mode_t old = 0;
    if (is_ipc)
        old = umask(077);
    rc = zmq_bind(sock, ep);
    int e = errno;
    if (is_ipc)
        umask(old);
    if (rc < 0)
        return kj_err_set(err, KJ_EUNAVAIL, "cannot listen on '%s': %s", ep, zmq_strerror(e));
    char last[512] = "";
    size_t ll = sizeof last;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, last, &ll);
    char q[600];
    kj_log(KJ_LOG_INFO, "listening", "endpoint=%s curve=%s", kj_logq(q, sizeof q, last),
           secret ? "on" : "off");
    return 0;
}

int kj_ipc_server_new(kj_journal *j, const kj_ipc_server_opts *opts, kj_ipc_server **out,
                      kj_err *err)
{
    *out = NULL;
    if (!opts || !opts->n_endpoints)
        return kj_err_set(err, KJ_EINVAL, "server: no endpoint to listen on");
    if (opts->curve_secret_key && !opts->curve_allow_dir)
        return kj_err_set(err, KJ_EINVAL, "server: CURVE needs an allow directory");
    kj_ipc_server *s = calloc(1, sizeof *s);
    if (!s)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    s->j = j;
    s->o = *opts;
    kj_ipc_server_opts d = kj_ipc_server_defaults();
    if (!s->o.batch_max)
        s->o.batch_max = d.batch_max;
    if (!s->o.max_message)
        s->o.max_message = d.max_message;
    if (!s->o.max_events)
        s->o.max_events = d.max_events;
    if (s->o.hwm <= 0)
        s->o.hwm = d.hwm;
    if (s->o.drain_budget_ms <= 0)
        s->o.drain_budget_ms = d.drain_budget_ms;
    if (!s->o.max_queued_bytes)
        s->o.max_queued_bytes = d.max_queued_bytes;
    s->transport_max =
        s->o.max_message + 65536 > KJ_IPC_HARD_CAP ? s->o.max_message + 65536 : KJ_IPC_HARD_CAP;
    s->lim.max_message = s->o.max_message;
    s->lim.max_events = s->o.max_events;
    s->wake[0] = s->wake[1] = -1;
    s->done[0] = s->done[1] = -1;
    s->fill = &s->b[0];
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    pthread_cond_init(&s->cwake, NULL);
    int rc = 0;
    char secret[41] = "";
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0 || pipe2(s->done, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = kj_err_set(err, KJ_EIO, "cannot create a pipe: %s", strerror(errno));
        goto fail;
    }
#ifdef __GLIBC__
    /* Request buffers (up to the transport limit) are malloc'd by libzmq's
     * I/O thread and freed by ours. glibc raises its mmap threshold to the
     * largest chunk freed, after which such buffers come from arenas that
     * seldom shrink: a flood of 1 MiB requests left 330 MB resident for good.
     * A fixed threshold keeps each large buffer in a mapping of its own,
     * returned to the system when freed. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    /* That fixed threshold also fixes the trim threshold at 128 KiB, and the
     * journal's page cache grows the heap at its top: every commit then
     * freed SQLite's statement journals just below the top, glibc gave the
     * top back (brk, a TLB shootdown on every core) and took it again at the
     * next page. A third of kjournald's CPU went there. The heap now shrinks
     * only past 32 MiB free at its top, and when idle (trim_memory). */
    mallopt(M_TRIM_THRESHOLD, KJ_IPC_TRIM_THRESHOLD);
    mallopt(M_TOP_PAD, KJ_IPC_TOP_PAD);
#endif
    s->ctx = zmq_ctx_new();
    s->socks = calloc(opts->n_endpoints, sizeof *s->socks);
    if (!s->ctx || !s->socks) {
        rc = kj_err_set(err, KJ_ENOMEM, "cannot create the ZeroMQ context");
        goto fail;
    }
    if (opts->curve_secret_key) {
        if (!zmq_has("curve")) {
            rc = kj_err_set(err, KJ_EINVAL, "this libzmq has no CURVE support");
            goto fail;
        }
        if ((rc = kj_ipc_read_secret_key(opts->curve_secret_key, secret, err)) < 0)
            goto fail;
        char pub[41];
        zmq_curve_public(pub, secret);
        kj_log(KJ_LOG_INFO, "curve enabled", "public_key=%s", pub);
        if ((rc = kj_zap_start(s->ctx, opts->curve_allow_dir, &s->zap, err)) < 0)
            goto fail;
    }
    for (size_t i = 0; i < opts->n_endpoints; i++)
        if ((rc = open_socket(s, opts->endpoints[i], secret[0] ? secret : NULL, err)) < 0)
            goto fail;
    memset(secret, 0, sizeof secret);
    *out = s;
    return 0;
fail:
    memset(secret, 0, sizeof secret);
    kj_ipc_server_destroy(s);
    return rc;
}

void kj_ipc_server_stop(kj_ipc_server *s)
{
    atomic_store(&s->stop, 1);
    ssize_t r = write(s->wake[1], "x", 1);
    (void)r;
}

void kj_ipc_server_stats(kj_ipc_server *s, kj_ipc_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
    out->queued_bytes = atomic_load(&s->queued);
}

static void count(kj_ipc_server *s, uint64_t *field, uint64_t n)
{
    pthread_mutex_lock(&s->mu);
    *field += n;
    pthread_mutex_unlock(&s->mu);
}

/* --- taking requests off the sockets, sending replies ----------------------------- */

static int msg_from(zmq_msg_t *m, const void *data, size_t len)
{
    if (zmq_msg_init_size(m, len) < 0)
        return -1;
    memcpy(zmq_msg_data(m), data, len);
    return 0;
}

/* Sends f[0..n) (an envelope, then the body) on ROUTER k without blocking;
 * consumes the frames. */
static void route(kj_ipc_server *s, uint32_t k, zmq_msg_t *f, int n)
{
    int ok = k < s->nsocks && n > 0;
    s->recheck = 1;
    for (int i = 0; i < n; i++) {
        /* A frame that was not sent stays ours to close. */
        if (!ok ||
            zmq_msg_send(&f[i], s->socks[k], (i + 1 < n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
            ok = 0;
            zmq_msg_close(&f[i]);
        }
    }
    if (!ok) {
        count(s, &s->st.replies_dropped, 1);
        kj_log(KJ_LOG_DEBUG, "reply dropped", "reason=\"%s\"", zmq_strerror(errno));
    }
}

/* Answers a request refused before decoding, with its envelope f[0..nenv). */
static void refuse(kj_ipc_server *s, uint32_t k, zmq_msg_t *f, int nenv, const kj_wire_error *we,
                   int retry)
{
    char *body = kj_wire_error_reply(we, NULL, retry);
    if (!body || msg_from(&f[nenv], body, strlen(body)) < 0) {
        for (int i = 0; i < nenv; i++)
            zmq_msg_close(&f[i]);
        count(s, &s->st.replies_dropped, 1);
    } else {
        route(s, k, f, nenv + 1);
    }
    free(body);
}

static size_t peer_hash(uint32_t sock, const void *id, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ sock;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)id)[i]) * 1099511628211ULL;
    return (size_t)(h % PEER_BUCKETS);
}

static void staged_free(kj_ipc_server *s, staged *m)
{
    for (int i = 0; i < m->nf; i++)
        zmq_msg_close(&m->f[i]);
    atomic_fetch_sub(&s->queued, m->h.bytes);
    free(m);
}

/* Queues m behind its peer's other staged requests. Consumes m. */
static void stage(kj_ipc_server *s, staged *m)
{
    const void *id = zmq_msg_data(&m->f[0]);
    size_t idlen = zmq_msg_size(&m->f[0]);
    if (idlen > KJ_IPC_ENVELOPE_FRAME_MAX)
        idlen = KJ_IPC_ENVELOPE_FRAME_MAX;
    size_t b = peer_hash(m->h.sock, id, idlen);
    peer *pr = s->peers[b];
    while (pr && !(pr->sock == m->h.sock && pr->idlen == idlen && !memcmp(pr->id, id, idlen)))
        pr = pr->hnext;
    if (!pr) {
        if (!(pr = calloc(1, sizeof *pr))) {
            staged_free(s, m); /* out of memory: no answer, the peer retries */
            return;
        }
        pr->sock = m->h.sock;
        pr->idlen = idlen;
        memcpy(pr->id, id, idlen);
        pr->hnext = s->peers[b];
        s->peers[b] = pr;
        if (s->turn_tail)
            s->turn_tail->next = pr;
        else
            s->turn_head = pr;
        s->turn_tail = pr;
    }
    if (pr->tail)
        pr->tail->next = m;
    else
        pr->head = m;
    pr->tail = m;
}

/* Takes one request off ROUTER k: refuses it at once or stages it for the
 * worker. Returns 1, or 0 when none is queued. */
static int take_req(kj_ipc_server *s, uint32_t k)
{
    zmq_msg_t f[MAX_ENV + 2];
    int nf = 0, extra = 0, more = 1;
    size_t bytes = REQUEST_OVERHEAD;
    void *sock = s->socks[k];
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, nf || extra ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (nf == 0 && !extra)
                return 0;
            break;
        }
        more = zmq_msg_more(&m);
        bytes += zmq_msg_size(&m);
        if (nf < MAX_ENV + 2) {
            zmq_msg_init(&f[nf]);
            zmq_msg_move(&f[nf++], &m);
        } else {
            extra++;
        }
        zmq_msg_close(&m);
    }
    count(s, &s->st.requests, 1);
    /* f[0] is the peer identity. Up to and including the first empty frame
     * (within KJ_IPC_ENVELOPE_MAX) is the envelope, echoed verbatim; then
     * exactly one body frame. */
    int delim = -1;
    for (int i = 1; i < nf && i <= 1 + KJ_IPC_ENVELOPE_MAX; i++) {
        if (zmq_msg_size(&f[i]) == 0) {
            delim = i;
            break;
        }
        if (zmq_msg_size(&f[i]) > KJ_IPC_ENVELOPE_FRAME_MAX)
            break;
    }
    int body_at = delim >= 0 ? delim + 1 : 1;
    int nbody = nf - body_at + extra;
    kj_wire_error we = {0};
    int retry = 0;
    size_t held = atomic_load(&s->queued);
    if (nbody == 0) {
        we.code = "empty_request";
        snprintf(we.message, sizeof we.message, "request has no body frame");
    } else if (nbody > 1) {
        we.code = "extra_frames";
        snprintf(we.message, sizeof we.message,
                 "request has %d frames after the envelope, expected one", nbody);
    } else if (zmq_msg_size(&f[body_at]) > s->o.max_message) {
        we.code = "too_large";
        snprintf(we.message, sizeof we.message, "request is %zu bytes, the limit is %zu",
                 zmq_msg_size(&f[body_at]), s->o.max_message);
    } else if (held > 0 && held + bytes > s->o.max_queued_bytes) {
        /* One request alone always goes through, whatever its size. */
        we.code = "overloaded";
        snprintf(we.message, sizeof we.message,
                 "kjournald holds %zu bytes of requests, its limit is %zu; retry later", held,
                 s->o.max_queued_bytes);
        retry = 1;
    }
    staged *m = we.code ? NULL : calloc(1, sizeof *m);
    if (!we.code && !m) {
        we.code = "internal";
        snprintf(we.message, sizeof we.message, "out of memory");
        retry = 1;
    }
    if (we.code) {
        for (int i = body_at; i < nf; i++)
            zmq_msg_close(&f[i]);
        count(s, retry ? &s->st.overloaded : &s->st.bad_requests, 1);
        kj_log(KJ_LOG_DEBUG, "request refused", "code=%s", we.code);
        refuse(s, k, f, body_at, &we, retry);
        return 1;
    }
    atomic_fetch_add(&s->queued, bytes);
    s->since_trim += bytes;
    m->h.sock = k;
    m->h.bytes = bytes;
    /* The envelope, then the body. */
    for (int i = 0; i <= body_at; i++) {
        zmq_msg_init(&m->f[i]);
        zmq_msg_move(&m->f[i], &f[i]);
        zmq_msg_close(&f[i]);
    }
    m->nf = body_at + 1;
    stage(s, m);
    return 1;
}

/* Takes what the sockets hold, a bounded run per socket, so that one busy
 * peer does not starve the others. */
static void take_all(kj_ipc_server *s)
{
    int cut = 0;
    s->recheck = 0;
    for (uint32_t k = 0; k < s->nsocks; k++) {
        int i = 0;
        while (i < 256 && take_req(s, k))
            i++;
        cut |= i == 256;
    }
    /* A refusal sent in the run set recheck; what it took along was read
     * by the receives that followed, up to the EAGAIN. */
    s->recheck = cut;
}

/* --- the worker ----------------------------------------------------------------- */

static void pending_free(kj_ipc_server *s, pending *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nenv; i++)
        zmq_msg_close(&p->env[i]);
    kj_wire_request_free(p->req);
    atomic_fetch_sub(&s->queued, p->bytes);
    free(p);
}

/* Sends the envelope and body to the peer; consumes the envelope. */
static void send_reply(kj_ipc_server *s, pending *p, const char *body)
{
    zmq_msg_t f[MAX_ENV + 1];
    int n = p->nenv;
    for (int i = 0; i < n; i++) {
        zmq_msg_init(&f[i]);
        zmq_msg_move(&f[i], &p->env[i]);
    }
    p->nenv = 0;
    if (!body || msg_from(&f[n], body, strlen(body)) < 0) {
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
        count(s, &s->st.replies_dropped, 1);
        kj_log(KJ_LOG_DEBUG, "reply dropped", "reason=\"%s\"", "out of memory");
        return;
    }
    route(s, (uint32_t)p->sock, f, n + 1);
}

static void reply_error(kj_ipc_server *s, pending *p, const kj_wire_error *we, int retry)
{
    char *body = kj_wire_error_reply(we, p->req ? kj_wire_request_id(p->req) : NULL, retry);
    send_reply(s, p, body);
    free(body);
}

/* The batch arrays start with room for a typical batch (events) and a burst
 * of requests (pending), then double. */
#define EVENTS_MIN 256
#define PEND_MIN 64

static size_t at_least(size_t need, size_t min)
{
    return need < min ? min : need;
}

/* Room for more events; on failure the batch in hand is intact (kj_grow
 * leaves an array it cannot grow as it was). */
static int grow_events(batch *b, size_t more)
{
    size_t need = at_least(b->nev + more, EVENTS_MIN);
    if (kj_grow((void **)&b->evs, &b->ev_cap, need, sizeof *b->evs) ||
        kj_grow((void **)&b->res, &b->res_cap, need, sizeof *b->res) ||
        kj_grow((void **)&b->slots, &b->slot_cap, need, sizeof *b->slots))
        return -1;
    return 0;
}

/* Room for one more pending request; on failure the batch in hand is intact. */
static int grow_pend(batch *b)
{
    return kj_grow((void **)&b->pend, &b->pend_cap, at_least(b->npend + 1, PEND_MIN),
                   sizeof *b->pend)
               ? -1
               : 0;
}

/* The next request to serve: the first of the peer whose turn it is. */
static staged *pick(kj_ipc_server *s)
{
    peer *pr = s->turn_head;
    if (!pr)
        return NULL;
    s->turn_head = pr->next;
    if (!s->turn_head)
        s->turn_tail = NULL;
    pr->next = NULL;
    staged *m = pr->head;
    pr->head = m->next;
    m->next = NULL;
    if (pr->head) {
        if (s->turn_tail)
            s->turn_tail->next = pr;
        else
            s->turn_head = pr;
        s->turn_tail = pr;
        return m;
    }
    peer **pp = &s->peers[peer_hash(pr->sock, pr->id, pr->idlen)];
    while (*pp != pr)
        pp = &(*pp)->hnext;
    *pp = pr->hnext;
    free(pr);
    return m;
}

/* Takes one request, by turns among peers (1), none is queued (0). */
static int take_one(kj_ipc_server *s)
{
    staged *m = pick(s);
    if (!m && s->recheck) {
        take_all(s);
        m = pick(s);
    }
    if (!m)
        return 0;
    pending *p = calloc(1, sizeof *p);
    if (!p) {
        staged_free(s, m);
        return 1;
    }
    req_src h = m->h;
    int nf = m->nf;
    zmq_msg_t *f = m->f;
    p->sock = (int)h.sock;
    p->bytes = h.bytes;
    /* The envelope, then the body. */
    int body_at = nf - 1;
    p->nenv = body_at;
    for (int i = 0; i < body_at; i++) {
        zmq_msg_init(&p->env[i]);
        zmq_msg_move(&p->env[i], &f[i]);
        zmq_msg_close(&f[i]);
    }
    kj_wire_error we = {0};
    int rc =
        kj_wire_decode(zmq_msg_data(&f[body_at]), zmq_msg_size(&f[body_at]), &s->lim, &p->req, &we);
    zmq_msg_close(&f[body_at]);
    free(m); /* its frames are p's or closed; its bytes are p's to give back */
    if (rc < 0) {
        count(s, &s->st.bad_requests, 1);
        char q[256];
        kj_log(KJ_LOG_DEBUG, "request refused", "code=%s error=%s", we.code,
               kj_logq(q, sizeof q, we.message));
        reply_error(s, p, &we, we.code && !strcmp(we.code, "internal"));
        pending_free(s, p);
        return 1;
    }
    size_t n = kj_wire_count(p->req), want = 0;
    for (size_t i = 0; i < n; i++)
        if (kj_wire_item_at(p->req, i)->res.status != KJ_APPEND_REJECTED)
            want++;
    batch *b = s->fill;
    if (want == 0 || grow_events(b, want) < 0 || grow_pend(b) < 0) {
        if (want) {
            we.code = "internal";
            snprintf(we.message, sizeof we.message, "out of memory");
            reply_error(s, p, &we, 1);
        } else {
            count(s, &s->st.events_rejected, n);
            char *body = kj_wire_reply(p->req);
            send_reply(s, p, body);
            free(body);
        }
        pending_free(s, p);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        kj_wire_item *it = kj_wire_item_at(p->req, i);
        if (it->res.status == KJ_APPEND_REJECTED)
            continue;
        b->evs[b->nev] = it->ev;
        b->slots[b->nev].item = it;
        b->nev++;
    }
    if (b->npend == 0)
        b->started_ms = kj_mono_ms();
    b->pend[b->npend++] = p;
    return 1;
}

/* The batch in hand takes no more: batch_max events, or half as many
 * requests as a peer's reply queue holds (hwm), so that the replies of two
 * batches fit in it. A batch's replies leave at once, and past the HWM a
 * peer's replies are dropped: a peer with more requests than that in flight
 * (an open-loop client) lost them when the batches gathered during a slow
 * commit grew past it. */
static int batch_full(const kj_ipc_server *s)
{
    size_t requests = s->o.hwm > 1 ? (size_t)s->o.hwm / 2 : 1;
    return s->fill->nev >= s->o.batch_max || s->fill->npend >= requests;
}

/* Drains queued requests into the batch in hand. */
static void drain(kj_ipc_server *s, int64_t deadline)
{
    while (!batch_full(s) && kj_mono_ms() <= deadline && take_one(s) > 0)
        ;
}

/* One line when commits start failing, then one per FAIL_LOG_MS with the
 * count: a full disk fails every commit, and a line each would flood the
 * log that is needed to find out why. */
static void log_commit_failure(kj_ipc_server *s, size_t nev, const char *msg)
{
    int64_t now = kj_mono_ms();
    s->fail_run++;
    s->fail_quiet++;
    if (s->fail_run > 1 && now - s->fail_logged_ms < FAIL_LOG_MS)
        return;
    char q[600];
    if (s->fail_run == 1)
        kj_log(KJ_LOG_ERROR, "commit failed", "events=%zu error=%s", nev,
               kj_logq(q, sizeof q, msg));
    else
        kj_log(KJ_LOG_ERROR, "commits still failing",
               "failed=%llu since_last_line=%llu events=%zu error=%s",
               (unsigned long long)s->fail_run, (unsigned long long)s->fail_quiet, nev,
               kj_logq(q, sizeof q, msg));
    s->fail_quiet = 0;
    s->fail_logged_ms = now;
}

static void log_commit_recovered(kj_ipc_server *s)
{
    if (!s->fail_run)
        return;
    kj_log(KJ_LOG_INFO, "commits succeed again", "failed=%llu", (unsigned long long)s->fail_run);
    s->fail_run = s->fail_quiet = 0;
}

/* The journal's path no longer names the file we write: stop acknowledging,
 * answer what is in hand "journal_unavailable" (retry), and stop, so that a
 * restart opens whatever the path holds now. */
static void journal_lost(kj_ipc_server *s, const kj_err *e)
{
    char q[600];
    s->lost = *e;
    atomic_store(&s->stop, 1);
    pthread_mutex_lock(&s->mu);
    s->st.last_commit = e->code;
    pthread_mutex_unlock(&s->mu);
    kj_log(KJ_LOG_ERROR, "journal deleted or replaced; no longer acknowledging", "error=%s",
           kj_logq(q, sizeof q, e->msg));
}

/* The committer's half of a commit: the append, between two checks of the
 * journal's path. It touches the journal and b only. */
static void commit_batch(kj_ipc_server *s, batch *b, int lost_code)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(&b->err, 0, sizeof b->err);
    /* The journal's path is checked before the append (nothing goes into a
     * file that is no longer the journal) and after it, before any ack (the
     * file went during the commit: the retry may then be a duplicate). */
    int rc = lost_code ? lost_code : kj_journal_check_path(s->j, &b->err);
    if (rc == 0)
        rc = kj_journal_append(s->j, b->evs, b->nev, b->res, &b->err);
    if (rc == 0)
        rc = kj_journal_check_path(s->j, &b->err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    b->rc = rc;
    b->secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
}

static void *committer_main(void *arg)
{
    kj_ipc_server *s = arg;
    pthread_mutex_lock(&s->cmu);
    for (;;) {
        while (!s->job && !s->cquit)
            pthread_cond_wait(&s->cwake, &s->cmu);
        if (!s->job)
            break;
        batch *b = s->job;
        int lost_code = s->lost.code;
        pthread_mutex_unlock(&s->cmu);
        commit_batch(s, b, lost_code);
        pthread_mutex_lock(&s->cmu);
        s->job = NULL;
        /* The worker polls done[0]; the byte only wakes it. */
        ssize_t r = write(s->done[1], "c", 1);
        (void)r;
    }
    pthread_mutex_unlock(&s->cmu);
    return NULL;
}

/* Hands the batch in hand to the committer; the other one becomes the batch
 * in hand. No commit may be in flight. */
static void commit_start(kj_ipc_server *s)
{
    batch *b = s->fill;
    if (b->npend == 0)
        return;
    s->flight = b;
    s->fill = b == &s->b[0] ? &s->b[1] : &s->b[0];
    if (!s->committer_up) { /* no thread (it could not start): commit here */
        commit_batch(s, b, s->lost.code);
        ssize_t r = write(s->done[1], "c", 1);
        (void)r;
        return;
    }
    pthread_mutex_lock(&s->cmu);
    s->job = b;
    pthread_cond_signal(&s->cwake);
    pthread_mutex_unlock(&s->cmu);
}

/* The worker's half of a commit, once the committer is done with b: the
 * counters, the replies (acks only after a successful commit), the
 * on_committed hook, then b is empty again. */
static void commit_finish(kj_ipc_server *s, batch *b)
{
    int rc = b->rc;
    kj_err *e = &b->err;
    if (rc == KJ_ESTALE && !s->lost.code)
        journal_lost(s, e);
    uint64_t stored = 0, dup = 0, rej = 0;
    if (rc == 0) {
        log_commit_recovered(s);
        for (size_t i = 0; i < b->nev; i++)
            b->slots[i].item->res = b->res[i];
        for (size_t i = 0; i < b->npend; i++) {
            kj_wire_request *r = b->pend[i]->req;
            for (size_t k = 0; k < kj_wire_count(r); k++) {
                kj_append_status st = kj_wire_item_at(r, k)->res.status;
                stored += st == KJ_APPEND_STORED;
                dup += st == KJ_APPEND_DUPLICATE;
                rej += st == KJ_APPEND_REJECTED;
            }
        }
    } else {
        log_commit_failure(s, b->nev, e->msg[0] ? e->msg : s->lost.msg);
    }
    pthread_mutex_lock(&s->mu);
    if (rc == 0) {
        s->st.commits++;
        s->st.events_stored += stored;
        s->st.events_duplicate += dup;
        s->st.events_rejected += rej;
        s->st.batch_hist[bucket(kj_ipc_batch_bounds, (double)b->nev)]++;
        s->st.batch_sum += b->nev;
        s->st.commit_hist[bucket(kj_ipc_commit_bounds_s, b->secs)]++;
        s->st.commit_sum_s += b->secs;
        s->st.last_commit = 0;
    } else {
        s->st.commit_failures++;
        s->st.last_commit = rc;
    }
    pthread_mutex_unlock(&s->mu);
    kj_log(KJ_LOG_DEBUG, "batch committed", "requests=%zu events=%zu ms=%.3f rc=%d", b->npend,
           b->nev, b->secs * 1000, rc);
    for (size_t i = 0; i < b->npend; i++) {
        pending *p = b->pend[i];
        if (rc == 0) {
            char *body = kj_wire_reply(p->req);
            send_reply(s, p, body);
            free(body);
        } else {
            kj_wire_error we = {"journal_unavailable", ""};
            snprintf(we.message, sizeof we.message, "the journal could not commit (%s); retry",
                     kj_strerror(rc));
            reply_error(s, p, &we, 1);
        }
    }
    if (rc == 0 && s->o.on_committed)
        s->o.on_committed(b->evs, b->res, b->nev, s->o.ud);
    for (size_t i = 0; i < b->npend; i++)
        pending_free(s, b->pend[i]);
    b->npend = 0;
    b->nev = 0;
}

/* Whether the batch in hand should be committed now: nothing in flight, and
 * it is full, or the batch window (if any) has passed, or we are stopping. */
static int commit_due(kj_ipc_server *s, int64_t now)
{
    batch *b = s->fill;
    if (s->flight || b->npend == 0)
        return 0;
    if (s->o.batch_window_ms <= 0 || batch_full(s) || atomic_load(&s->stop))
        return 1;
    return now - b->started_ms >= s->o.batch_window_ms;
}

/* If the commit in flight is done, finishes it. Returns 1 when none is in
 * flight any more. With wait, blocks until it is done. */
static int commit_reap(kj_ipc_server *s, int wait)
{
    if (!s->flight)
        return 1;
    char buf[16];
    for (;;) {
        pthread_mutex_lock(&s->cmu);
        int busy = s->job != NULL;
        pthread_mutex_unlock(&s->cmu);
        if (!busy)
            break;
        if (!wait)
            return 0;
        struct pollfd pd = {s->done[0], POLLIN, 0};
        poll(&pd, 1, 100);
    }
    /* One byte per commit, and one commit at a time: one read empties it. */
    ssize_t r = read(s->done[0], buf, sizeof buf);
    (void)r;
    batch *b = s->flight;
    s->flight = NULL;
    /* The batch gathered meanwhile goes to the committer before this one's
     * acks go out: the next fsync need not wait for a few hundred replies.
     * b becomes the batch in hand once commit_finish emptied it. Not after a
     * failed commit: that may stop the server (journal_lost) first. */
    if (b->rc == 0 && s->committer_up && commit_due(s, kj_mono_ms()))
        commit_start(s);
    commit_finish(s, b);
    return 1;
}

/* After a flood, once idle: hand freed memory back to the system. */
static void trim_memory(kj_ipc_server *s)
{
    if (s->since_trim < TRIM_AFTER_BYTES)
        return;
    s->since_trim = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* How long the worker may sleep in poll: not at all while it has staged
 * requests it can take, until the batch window ends while one is pending,
 * else up to a second (idle checks). */
static long poll_timeout(kj_ipc_server *s, int64_t now)
{
    if (s->recheck || (s->turn_head && !batch_full(s)))
        return 0;
    if (!s->flight && s->fill->npend > 0) {
        int64_t left = s->fill->started_ms + s->o.batch_window_ms - now;
        return left > 0 ? (long)left : 0;
    }
    return 1000;
}

int kj_ipc_server_run(kj_ipc_server *s, kj_err *err)
{
    /* The sockets' ZMQ_FDs, then the wake-up pipe and the committer's. A
     * plain poll: zmq_poll asks each socket for ZMQ_EVENTS before and after
     * (two more syscalls and getpid()s a socket, every time). A ZMQ_FD
     * signals only what arrived since libzmq last looked: the sockets are
     * read until EAGAIN after each wake-up, and checked again (recheck)
     * after anything libzmq may have looked during. */
    size_t n = s->nsocks;
    struct pollfd *pi = calloc(n + 2, sizeof *pi);
    if (!pi)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        size_t sz = sizeof pi[i].fd;
        if (zmq_getsockopt(s->socks[i], ZMQ_FD, &pi[i].fd, &sz) < 0) {
            free(pi);
            return kj_err_set(err, KJ_EIO, "cannot poll a socket: %s", zmq_strerror(errno));
        }
        pi[i].events = POLLIN;
    }
    pi[n] = (struct pollfd){s->wake[0], POLLIN, 0};
    pi[n + 1] = (struct pollfd){s->done[0], POLLIN, 0};
    s->recheck = 1;
    s->committer_up = pthread_create(&s->committer, NULL, committer_main, s) == 0;
    pthread_mutex_lock(&s->mu);
    s->st.running = 1;
    pthread_mutex_unlock(&s->mu);
    while (!atomic_load(&s->stop)) {
        int64_t now = kj_mono_ms();
        long wait = poll_timeout(s, now);
        int rc = poll(pi, (nfds_t)n + 2, (int)wait);
        if (rc < 0 && errno != EINTR) {
            kj_log(KJ_LOG_ERROR, "poll failed", "error=\"%s\"", strerror(errno));
            break;
        }
        int readable = s->recheck;
        for (size_t i = 0; rc > 0 && i < n; i++)
            readable |= (pi[i].revents & POLLIN) != 0;
        if (readable)
            take_all(s);
        commit_reap(s, 0);
        if (rc == 0 && wait > 0 && !s->flight && !s->fill->npend && !s->turn_head) {
            trim_memory(s);
            kj_err e = {0};
            if (!s->lost.code && kj_journal_check_path(s->j, &e))
                journal_lost(s, &e); /* noticed while idle too */
        }
        if (atomic_load(&s->stop))
            break;
        /* Gather what arrived while the last commit ran, then hand it over
         * as soon as nothing is in flight. */
        drain(s, kj_mono_ms() + s->o.drain_budget_ms);
        if (commit_due(s, kj_mono_ms()))
            commit_start(s);
    }
    commit_reap(s, 1);
    commit_start(s);
    commit_reap(s, 1);
    if (s->committer_up) {
        pthread_mutex_lock(&s->cmu);
        s->cquit = 1;
        pthread_cond_signal(&s->cwake);
        pthread_mutex_unlock(&s->cmu);
        pthread_join(s->committer, NULL);
        s->committer_up = 0;
    }
    free(pi);
    pthread_mutex_lock(&s->mu);
    s->st.running = 0;
    pthread_mutex_unlock(&s->mu);
    return s->lost.code ? kj_err_set(err, s->lost.code, "%s", s->lost.msg) : 0;
}

void kj_ipc_server_destroy(kj_ipc_server *s)
{
    if (!s)
        return;
    for (int k = 0; k < 2; k++) {
        batch *b = &s->b[k];
        for (size_t i = 0; i < b->npend; i++)
            pending_free(s, b->pend[i]);
        free(b->pend);
        free(b->evs);
        free(b->res);
        free(b->slots);
    }
    staged *m;
    while ((m = pick(s)))
        staged_free(s, m);
    for (size_t i = 0; i < s->nsocks; i++)
        zmq_close(s->socks[i]);
    free(s->socks);
    kj_zap_stop(s->zap);
    if (s->ctx)
        zmq_ctx_term(s->ctx);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    if (s->done[0] >= 0)
        close(s->done[0]);
    if (s->done[1] >= 0)
        close(s->done[1]);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->cwake);
    free(s);
}
