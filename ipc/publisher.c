/*
 * publisher.c - the publisher side of the protocol: a DEALER with a window of
 * requests in flight, replies matched by a request-id envelope frame, and
 * Lazy Pirate retries (on a timeout, drop the socket, open a fresh one and
 * resend what is in flight with the same bytes, so the same event_ids).
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc.h"
#include "ipc_internal.h"

struct kj_publisher {
    void *ctx, *sock;
    char *endpoint;
    kj_publisher_opts o;
    int curve;
    char server_key[41], secret[41], public_[41];
    uint64_t next_id;
};

typedef struct req {
    char id[24];
    size_t idlen;
    char *body;
    size_t len;
    size_t first, count; /* events[first .. first+count) */
    int attempts;
    int64_t deadline; /* mono ms */
    double t_first;   /* mono seconds of the first send */
    int live;
} req;

kj_publisher_opts kj_publisher_defaults(void)
{
    kj_publisher_opts o = {0};
    o.timeout_ms = 2500;
    o.retries = 3;
    o.window = 16;
    o.batch = 1;
    o.max_request = 512 * 1024;
    return o;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int open_sock(kj_publisher *p, kj_err *err)
{
    if (p->sock)
        zmq_close(p->sock);
    p->sock = zmq_socket(p->ctx, ZMQ_DEALER);
    if (!p->sock)
        return kj_err_set(err, KJ_EIO, "cannot create a socket: %s", zmq_strerror(errno));
    int linger = 0, hwm = p->o.window * 2 + 16;
    int one = 1;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->sock, ZMQ_IPV6, &one, sizeof one);
    zmq_setsockopt(p->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(p->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    int64_t maxmsg = 16 << 20;
    zmq_setsockopt(p->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (p->curve && (zmq_setsockopt(p->sock, ZMQ_CURVE_SERVERKEY, p->server_key, 40) < 0 ||
                     zmq_setsockopt(p->sock, ZMQ_CURVE_PUBLICKEY, p->public_, 40) < 0 ||
                     zmq_setsockopt(p->sock, ZMQ_CURVE_SECRETKEY, p->secret, 40) < 0))
        return kj_err_set(err, KJ_EIO, "cannot set CURVE keys: %s", zmq_strerror(errno));
    if (zmq_connect(p->sock, p->endpoint) < 0)
        return kj_err_set(err, KJ_EINVAL, "cannot connect to '%s': %s", p->endpoint,
                          zmq_strerror(errno));
    return 0;
}

int kj_publisher_new(const char *endpoint, const kj_publisher_opts *opts, kj_publisher **out,
                     kj_err *err)
{
    *out = NULL;
    kj_publisher *p = calloc(1, sizeof *p);
    if (!p)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    p->o = opts ? *opts : kj_publisher_defaults();
    kj_publisher_opts d = kj_publisher_defaults();
    if (p->o.timeout_ms <= 0)
        p->o.timeout_ms = d.timeout_ms;
    if (p->o.retries < 0)
        p->o.retries = 0;
    if (p->o.window <= 0)
        p->o.window = 1;
    if (!p->o.batch)
        p->o.batch = 1;
    if (p->o.batch > KJ_IPC_MAX_EVENTS)
        p->o.batch = KJ_IPC_MAX_EVENTS;
    if (!p->o.max_request)
        p->o.max_request = d.max_request;
    p->endpoint = strdup(endpoint);
    p->ctx = zmq_ctx_new();
    int rc = 0;
    if (!p->endpoint || !p->ctx) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto fail;
    }
    if (p->o.curve_server_key || p->o.curve_secret_key) {
        if (!p->o.curve_server_key || !p->o.curve_secret_key) {
            rc = kj_err_set(err, KJ_EINVAL, "CURVE needs both the server key and our secret key");
            goto fail;
        }
        if ((rc = kj_ipc_read_key(p->o.curve_server_key, p->server_key, err)) < 0 ||
            (rc = kj_ipc_read_key(p->o.curve_secret_key, p->secret, err)) < 0)
            goto fail;
        zmq_curve_public(p->public_, p->secret);
        p->curve = 1;
    }
    p->o.curve_server_key = p->o.curve_secret_key = NULL;
    if ((rc = open_sock(p, err)) < 0)
        goto fail;
    *out = p;
    return 0;
fail:
    kj_publisher_destroy(p);
    return rc;
}

void kj_publisher_destroy(kj_publisher *p)
{
    if (!p)
        return;
    if (p->sock)
        zmq_close(p->sock);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    memset(p->secret, 0, sizeof p->secret);
    free(p->endpoint);
    free(p);
}

static int is_object_text(const char *s, int strict)
{
    if (strict) {
        cJSON *v = cJSON_Parse(s);
        int ok = cJSON_IsObject(v);
        cJSON_Delete(v);
        return ok;
    }
    while (*s == ' ' || *s == '\t')
        s++;
    return *s == '{';
}

/* Packs events from *next into one request body. */
static int build(kj_publisher *p, const char *const *ev, size_t n, size_t *next, req *r)
{
    memset(r, 0, sizeof *r);
    r->first = *next;
    r->idlen = (size_t)snprintf(r->id, sizeof r->id, "%llx", (unsigned long long)p->next_id++);
    int batch = p->o.batch > 1;
    if (!batch || !is_object_text(ev[*next], 1)) {
        r->count = 1;
        r->len = strlen(ev[*next]);
        r->body = strdup(ev[*next]);
        (*next)++;
        return r->body ? 0 : KJ_ENOMEM;
    }
    kj_buf b = {0};
    kj_buf_str(&b, "{\"events\":[");
    while (*next < n && r->count < p->o.batch) {
        size_t len = strlen(ev[*next]);
        if (r->count && (b.len + len + 2 > p->o.max_request || !is_object_text(ev[*next], 1)))
            break;
        if (r->count)
            kj_buf_add(&b, ",", 1);
        kj_buf_add(&b, ev[*next], len);
        r->count++;
        (*next)++;
    }
    kj_buf_str(&b, "]}");
    if (b.oom) {
        free(b.s);
        return KJ_ENOMEM;
    }
    r->body = b.s;
    r->len = b.len;
    return 0;
}

static void send_req(kj_publisher *p, req *r, int64_t now)
{
    r->attempts++;
    r->deadline = now + p->o.timeout_ms;
    if (zmq_send(p->sock, r->id, r->idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return; /* not queued: it will time out and go again */
    zmq_send(p->sock, "", 0, ZMQ_SNDMORE);
    zmq_send(p->sock, r->body, r->len, 0);
}

static void fill(kj_publish_result *res, const char *eid, kj_append_status st, const char *code,
                 const char *msg, double lat_ms)
{
    res->status = st;
    if (eid)
        snprintf(res->event_id, sizeof res->event_id, "%s", eid);
    snprintf(res->code, sizeof res->code, "%s", code ? code : "");
    snprintf(res->message, sizeof res->message, "%s", msg ? msg : "");
    res->latency_ms = lat_ms;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Applies a reply to r. Returns 1 when r is finished, 0 when it must be
 * sent again (the server asked for a retry). */
static int apply_reply(req *r, const char *body, size_t len, kj_publish_result *results)
{
    double lat = (now_s() - r->t_first) * 1000;
    cJSON *root = cJSON_ParseWithLength(body, len);
    int rc = 1;
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "ok");
    if (cJSON_IsTrue(ok)) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "results");
        if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != r->count) {
            for (size_t i = 0; i < r->count; i++)
                fill(&results[r->first + i], NULL, 0, "bad_reply",
                     "the server's reply does not match the request", lat);
            goto out;
        }
        size_t i = 0;
        for (const cJSON *e = arr->child; e; e = e->next, i++) {
            const char *st = jstr(e, "status");
            const cJSON *er = cJSON_GetObjectItemCaseSensitive(e, "error");
            kj_append_status s = !st                        ? 0
                                 : !strcmp(st, "stored")    ? KJ_APPEND_STORED
                                 : !strcmp(st, "duplicate") ? KJ_APPEND_DUPLICATE
                                                            : KJ_APPEND_REJECTED;
            fill(&results[r->first + i], jstr(e, "event_id"), s, jstr(er, "code"),
                 jstr(er, "message"), lat);
        }
    } else {
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(root, "error");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "retry"))) {
            rc = 0;
            for (size_t i = 0; i < r->count; i++)
                fill(&results[r->first + i], NULL, 0, jstr(er, "code"), jstr(er, "message"), lat);
            goto out;
        }
        for (size_t i = 0; i < r->count; i++)
            fill(&results[r->first + i], NULL, root ? KJ_APPEND_REJECTED : 0,
                 root ? jstr(er, "code") : "bad_reply",
                 root ? jstr(er, "message") : "the server's reply is not JSON", lat);
    }
out:
    cJSON_Delete(root);
    return rc;
}

int kj_publisher_publish(kj_publisher *p, const char *const *events, size_t n,
                         kj_publish_result *results, kj_err *err)
{
    int rc = 0;
    size_t window = (size_t)p->o.window, next = 0, inflight = 0, unacked = 0;
    req *w = calloc(window, sizeof *w);
    if (!w)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    memset(results, 0, n * sizeof *results);
    while (next < n || inflight) {
        int64_t now = kj_mono_ms();
        for (size_t k = 0; k < window && next < n; k++) {
            if (w[k].live)
                continue;
            if ((rc = build(p, events, n, &next, &w[k])) < 0) {
                kj_err_set(err, rc, "out of memory");
                goto out;
            }
            w[k].live = 1;
            w[k].t_first = now_s();
            send_req(p, &w[k], now);
            inflight++;
        }
        int64_t wait = p->o.timeout_ms;
        for (size_t k = 0; k < window; k++)
            if (w[k].live && w[k].deadline - now < wait)
                wait = w[k].deadline - now;
        zmq_pollitem_t pi = {p->sock, 0, ZMQ_POLLIN, 0};
        int prc = zmq_poll(&pi, 1, wait > 0 ? (long)wait : 0);
        if (prc < 0 && zmq_errno() == EINTR) {
            rc = kj_err_set(err, KJ_ECANCELED, "interrupted");
            goto out;
        }
        /* Replies: [request id][""][body]. */
        while (prc > 0) {
            zmq_msg_t f[3];
            int nf = 0, more = 1;
            while (more) {
                zmq_msg_t m;
                zmq_msg_init(&m);
                if (zmq_msg_recv(&m, p->sock, nf ? 0 : ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close(&m);
                    break;
                }
                more = zmq_msg_more(&m);
                if (nf < 3) {
                    zmq_msg_init(&f[nf]);
                    zmq_msg_move(&f[nf++], &m);
                }
                zmq_msg_close(&m);
            }
            if (nf == 0)
                break;
            if (nf == 3) {
                for (size_t k = 0; k < window; k++) {
                    if (!w[k].live || zmq_msg_size(&f[0]) != w[k].idlen ||
                        memcmp(zmq_msg_data(&f[0]), w[k].id, w[k].idlen))
                        continue;
                    if (apply_reply(&w[k], zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), results)) {
                        free(w[k].body);
                        w[k].live = 0;
                        inflight--;
                    } else if (w[k].attempts > p->o.retries) {
                        free(w[k].body);
                        w[k].live = 0;
                        inflight--;
                        unacked += w[k].count;
                    } else {
                        usleep(50 * 1000); /* the journal is busy: give it a moment */
                        send_req(p, &w[k], kj_mono_ms());
                    }
                    break;
                }
            }
            for (int i = 0; i < nf; i++)
                zmq_msg_close(&f[i]);
        }
        now = kj_mono_ms();
        int expired = 0;
        for (size_t k = 0; k < window; k++)
            if (w[k].live && now >= w[k].deadline)
                expired = 1;
        if (!expired)
            continue;
        /* Lazy Pirate: the socket may hold a dead connection; start afresh and
         * resend everything in flight, same bytes, same event ids. */
        if ((rc = open_sock(p, err)) < 0)
            goto out;
        for (size_t k = 0; k < window; k++) {
            if (!w[k].live)
                continue;
            if (now >= w[k].deadline && w[k].attempts > p->o.retries) {
                for (size_t i = 0; i < w[k].count; i++)
                    if (!results[w[k].first + i].code[0])
                        fill(&results[w[k].first + i], NULL, 0, "timeout",
                             "no acknowledgement from kjournald", 0);
                free(w[k].body);
                w[k].live = 0;
                inflight--;
                unacked += w[k].count;
                continue;
            }
            w[k].attempts -= now < w[k].deadline; /* only the expired ones count a try */
            send_req(p, &w[k], now);
        }
    }
    /* Counted from the results: a reply that does not fit its request also
     * leaves its events unanswered. */
    unacked = 0;
    for (size_t i = 0; i < n; i++)
        unacked += results[i].status == 0;
    if (unacked)
        rc = kj_err_set(err, KJ_ETIMEDOUT, "%zu events were not acknowledged", unacked);
out:
    for (size_t k = 0; k < window; k++)
        if (w[k].live)
            free(w[k].body);
    free(w);
    return rc;
}
