/*
 * server.c - the ingest loop kjournald runs: ROUTER sockets, group commit,
 * acks after the commit.
 *
 * One thread does everything in a cycle: wait for a request, drain what is
 * queued (up to batch_max events or drain_budget_ms), append it all in one
 * journal transaction, then send every reply. Requests that need no journal
 * (a request-level error, every event rejected by the decoder) are answered
 * at once. A reply never blocks: ROUTER_MANDATORY plus DONTWAIT turn a
 * vanished or slow peer into a dropped reply, and the peer retries.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
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

typedef struct pending {
    int sock;
    zmq_msg_t env[MAX_ENV];
    int nenv;
    kj_wire_request *req;
} pending;

typedef struct slot {
    kj_wire_item *item;
} slot;

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
    /* the batch in hand */
    pending **pend;
    size_t npend, pend_cap;
    kj_event *evs;
    kj_append_result *res;
    slot *slots;
    size_t nev, ev_cap;
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
    return o;
}

static int bucket(const double *bounds, double v)
{
    int i = 0;
    while (i < KJ_IPC_BUCKETS - 1 && v > bounds[i])
        i++;
    return i;
}

/* ipc:// files live in a directory only the service user can enter; the
 * socket itself is created under umask 077. */
static int prepare_ipc_dir(const char *ep, kj_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", ep + 6);
    char *dir = dirname(path);
    struct stat sb;
    if (stat(dir, &sb) < 0) {
        if (errno != ENOENT || mkdir(dir, 0700) < 0)
            return kj_err_set(err, KJ_EIO, "cannot create socket directory '%s': %s", dir,
                              strerror(errno));
        return 0;
    }
    if (sb.st_mode & 077) {
        char q[512];
        kj_log(KJ_LOG_WARN, "socket directory is open to other users", "dir=%s mode=%04o",
               kj_logq(q, sizeof q, dir), (unsigned)(sb.st_mode & 07777));
    }
    return 0;
}

static int open_socket(kj_ipc_server *s, const char *ep, const char *secret, kj_err *err)
{
    void *sock = zmq_socket(s->ctx, ZMQ_ROUTER);
    if (!sock)
        return kj_err_set(err, KJ_EIO, "cannot create a socket: %s", zmq_strerror(errno));
    s->socks[s->nsocks++] = sock;
    int one = 1, linger = 2000, hwm = s->o.hwm;
    /* The transport limit sits above the protocol limit so that a request a
     * little too large still gets a "too_large" answer; beyond it libzmq drops
     * the connection. */
    int64_t maxmsg = (int64_t)s->o.max_message + 65536;
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
    if (is_ipc && prepare_ipc_dir(ep, err) < 0)
        return err ? err->code : KJ_EIO;
    mode_t old = 0;
    if (is_ipc)
        old = umask(077);
    int rc = zmq_bind(sock, ep);
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
    s->lim.max_message = s->o.max_message;
    s->lim.max_events = s->o.max_events;
    s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->mu, NULL);
    int rc = 0;
    char secret[41] = "";
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        rc = kj_err_set(err, KJ_EIO, "cannot create a pipe: %s", strerror(errno));
        goto fail;
    }
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
        if ((rc = kj_ipc_read_key(opts->curve_secret_key, secret, err)) < 0)
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
}

static void pending_free(pending *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nenv; i++)
        zmq_msg_close(&p->env[i]);
    kj_wire_request_free(p->req);
    free(p);
}

/* Sends the envelope, then body; consumes the envelope frames. */
static void send_reply(kj_ipc_server *s, pending *p, const char *body)
{
    int ok = body != NULL;
    for (int i = 0; i < p->nenv; i++) {
        /* A frame that was not sent stays ours to close. */
        if (!ok || zmq_msg_send(&p->env[i], s->socks[p->sock], ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
            ok = 0;
            zmq_msg_close(&p->env[i]);
        }
    }
    p->nenv = 0;
    if (ok && zmq_send(s->socks[p->sock], body, strlen(body), ZMQ_DONTWAIT) < 0)
        ok = 0;
    if (!ok) {
        pthread_mutex_lock(&s->mu);
        s->st.replies_dropped++;
        pthread_mutex_unlock(&s->mu);
        kj_log(KJ_LOG_DEBUG, "reply dropped", "reason=\"%s\"",
               body ? zmq_strerror(errno) : "out of memory");
    }
}

static void reply_error(kj_ipc_server *s, pending *p, const kj_wire_error *we, int retry)
{
    char *body = kj_wire_error_reply(we, p->req ? kj_wire_request_id(p->req) : NULL, retry);
    send_reply(s, p, body);
    free(body);
}

static int grow_events(kj_ipc_server *s, size_t more)
{
    if (s->nev + more <= s->ev_cap)
        return 0;
    size_t cap = s->ev_cap ? s->ev_cap : 256;
    while (cap < s->nev + more)
        cap *= 2;
    kj_event *e = realloc(s->evs, cap * sizeof *e);
    if (e)
        s->evs = e;
    kj_append_result *r = realloc(s->res, cap * sizeof *r);
    if (r)
        s->res = r;
    slot *sl = realloc(s->slots, cap * sizeof *sl);
    if (sl)
        s->slots = sl;
    if (!e || !r || !sl)
        return -1;
    s->ev_cap = cap;
    return 0;
}

/* Takes one request off socket k (1), none is queued (0). */
static int take_one(kj_ipc_server *s, int k)
{
    zmq_msg_t f[MAX_ENV + 2];
    int nf = 0, extra = 0, more = 1;
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
        if (nf < MAX_ENV + 2) {
            zmq_msg_init(&f[nf]);
            zmq_msg_move(&f[nf++], &m);
            zmq_msg_close(&m);
        } else {
            zmq_msg_close(&m);
            extra++;
        }
    }
    pending *p = calloc(1, sizeof *p);
    if (!p) {
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
        return 1;
    }
    p->sock = k;
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
    p->nenv = body_at;
    for (int i = 0; i < body_at; i++) {
        zmq_msg_init(&p->env[i]);
        zmq_msg_move(&p->env[i], &f[i]);
        zmq_msg_close(&f[i]);
    }
    kj_wire_error we = {0};
    pthread_mutex_lock(&s->mu);
    s->st.requests++;
    pthread_mutex_unlock(&s->mu);
    int rc;
    if (nbody == 0) {
        rc = KJ_EPROTO;
        we.code = "empty_request";
        snprintf(we.message, sizeof we.message, "request has no body frame");
    } else if (nbody > 1) {
        rc = KJ_EPROTO;
        we.code = "extra_frames";
        snprintf(we.message, sizeof we.message,
                 "request has %d frames after the envelope, expected one", nbody);
    } else {
        rc = kj_wire_decode(zmq_msg_data(&f[body_at]), zmq_msg_size(&f[body_at]), &s->lim, &p->req,
                            &we);
    }
    for (int i = body_at; i < nf; i++)
        zmq_msg_close(&f[i]);
    if (rc < 0) {
        pthread_mutex_lock(&s->mu);
        s->st.bad_requests++;
        pthread_mutex_unlock(&s->mu);
        char q[256];
        kj_log(KJ_LOG_DEBUG, "request refused", "code=%s error=%s", we.code,
               kj_logq(q, sizeof q, we.message));
        reply_error(s, p, &we, 0);
        pending_free(p);
        return 1;
    }
    size_t n = kj_wire_count(p->req), want = 0;
    for (size_t i = 0; i < n; i++)
        if (kj_wire_item_at(p->req, i)->res.status != KJ_APPEND_REJECTED)
            want++;
    if (want == 0 || grow_events(s, want) < 0 ||
        (s->npend == s->pend_cap &&
         !(s->pend = realloc(s->pend, (s->pend_cap = s->pend_cap ? s->pend_cap * 2 : 64) *
                                          sizeof *s->pend)))) {
        if (want) {
            we.code = "internal";
            snprintf(we.message, sizeof we.message, "out of memory");
            reply_error(s, p, &we, 1);
        } else {
            pthread_mutex_lock(&s->mu);
            s->st.events_rejected += n;
            pthread_mutex_unlock(&s->mu);
            char *body = kj_wire_reply(p->req);
            send_reply(s, p, body);
            free(body);
        }
        pending_free(p);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        kj_wire_item *it = kj_wire_item_at(p->req, i);
        if (it->res.status == KJ_APPEND_REJECTED)
            continue;
        s->evs[s->nev] = it->ev;
        s->slots[s->nev].item = it;
        s->nev++;
    }
    s->pend[s->npend++] = p;
    return 1;
}

/* Drains queued requests into the batch in hand. */
static void drain(kj_ipc_server *s, int64_t deadline)
{
    int progress = 1;
    while (progress && s->nev < s->o.batch_max && kj_mono_ms() <= deadline) {
        progress = 0;
        for (size_t k = 0; k < s->nsocks && s->nev < s->o.batch_max; k++)
            if (take_one(s, (int)k) > 0)
                progress = 1;
    }
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

static void commit(kj_ipc_server *s)
{
    if (s->npend == 0)
        return;
    kj_err e = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    /* The journal's path is checked before the append (nothing goes into a
     * file that is no longer the journal) and after it, before any ack (the
     * file went during the commit: the retry may then be a duplicate). */
    int rc = s->lost.code ? s->lost.code : kj_journal_check_path(s->j, &e);
    if (rc == 0)
        rc = kj_journal_append(s->j, s->evs, s->nev, s->res, &e);
    if (rc == 0)
        rc = kj_journal_check_path(s->j, &e);
    if (rc == KJ_ESTALE && !s->lost.code)
        journal_lost(s, &e);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    uint64_t stored = 0, dup = 0, rej = 0;
    if (rc == 0) {
        for (size_t i = 0; i < s->nev; i++)
            s->slots[i].item->res = s->res[i];
        for (size_t i = 0; i < s->npend; i++) {
            kj_wire_request *r = s->pend[i]->req;
            for (size_t k = 0; k < kj_wire_count(r); k++) {
                kj_append_status st = kj_wire_item_at(r, k)->res.status;
                stored += st == KJ_APPEND_STORED;
                dup += st == KJ_APPEND_DUPLICATE;
                rej += st == KJ_APPEND_REJECTED;
            }
        }
    } else {
        char q[600];
        kj_log(KJ_LOG_ERROR, "commit failed", "events=%zu error=%s", s->nev,
               kj_logq(q, sizeof q, e.msg[0] ? e.msg : s->lost.msg));
    }
    pthread_mutex_lock(&s->mu);
    if (rc == 0) {
        s->st.commits++;
        s->st.events_stored += stored;
        s->st.events_duplicate += dup;
        s->st.events_rejected += rej;
        s->st.batch_hist[bucket(kj_ipc_batch_bounds, (double)s->nev)]++;
        s->st.batch_sum += s->nev;
        s->st.commit_hist[bucket(kj_ipc_commit_bounds_s, secs)]++;
        s->st.commit_sum_s += secs;
        s->st.last_commit = 0;
    } else {
        s->st.commit_failures++;
        s->st.last_commit = rc;
    }
    pthread_mutex_unlock(&s->mu);
    kj_log(KJ_LOG_DEBUG, "batch committed", "requests=%zu events=%zu ms=%.3f rc=%d", s->npend,
           s->nev, secs * 1000, rc);
    for (size_t i = 0; i < s->npend; i++) {
        pending *p = s->pend[i];
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
        s->o.on_committed(s->evs, s->res, s->nev, s->o.ud);
    for (size_t i = 0; i < s->npend; i++)
        pending_free(s->pend[i]);
    s->npend = 0;
    s->nev = 0;
}

int kj_ipc_server_run(kj_ipc_server *s, kj_err *err)
{
    (void)err;
    size_t n = s->nsocks;
    zmq_pollitem_t *pi = calloc(n + 1, sizeof *pi);
    if (!pi)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        pi[i].socket = s->socks[i];
        pi[i].events = ZMQ_POLLIN;
    }
    pi[n].fd = s->wake[0];
    pi[n].events = ZMQ_POLLIN;
    pthread_mutex_lock(&s->mu);
    s->st.running = 1;
    pthread_mutex_unlock(&s->mu);
    while (!atomic_load(&s->stop)) {
        int rc = zmq_poll(pi, (int)n + 1, 1000);
        if (rc < 0 && zmq_errno() != EINTR) {
            kj_log(KJ_LOG_ERROR, "poll failed", "error=\"%s\"", zmq_strerror(zmq_errno()));
            break;
        }
        if (rc == 0 && !s->lost.code) {
            kj_err e = {0};
            if (kj_journal_check_path(s->j, &e))
                journal_lost(s, &e); /* noticed while idle too */
        }
        if (rc <= 0 || atomic_load(&s->stop))
            continue;
        int64_t start = kj_mono_ms();
        drain(s, start + s->o.drain_budget_ms);
        /* With a batch window, a short wait for more turns many small commits
         * into one when publishers trickle. */
        while (s->o.batch_window_ms > 0 && s->nev > 0 && s->nev < s->o.batch_max &&
               !atomic_load(&s->stop)) {
            int64_t left = start + s->o.batch_window_ms - kj_mono_ms();
            if (left <= 0 || zmq_poll(pi, (int)n, (long)left) <= 0)
                break;
            drain(s, kj_mono_ms() + s->o.drain_budget_ms);
        }
        commit(s);
    }
    commit(s);
    pthread_mutex_lock(&s->mu);
    s->st.running = 0;
    pthread_mutex_unlock(&s->mu);
    free(pi);
    return s->lost.code ? kj_err_set(err, s->lost.code, "%s", s->lost.msg) : 0;
}

void kj_ipc_server_destroy(kj_ipc_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->npend; i++)
        pending_free(s->pend[i]);
    free(s->pend);
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
    free(s->evs);
    free(s->res);
    free(s->slots);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
