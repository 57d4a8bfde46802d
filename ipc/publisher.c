/*
 * publisher.c - the publisher side of the protocol: a DEALER with a window of
 * requests in flight, replies matched by a request-id envelope frame, and
 * Lazy Pirate retries (on a timeout, drop the socket, open a fresh one and
 * resend what is in flight with the same bytes, so the same event_ids).
 *
 * A reply counts only for the events it names: each event is decoded here
 * with the server's own decoder, and a result whose event_id is not the one
 * sent is a protocol error, not an acknowledgement (something else may be
 * listening on the endpoint). Answers that say "do not retry" are final; a
 * batch refused for its size is sent again one event per request.
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
    int max_attempts; /* 1 + retries; 1 when the server would drop it for its size */
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
            (rc = kj_ipc_read_secret_key(p->o.curve_secret_key, p->secret, err)) < 0)
            goto fail;
        zmq_curve_public(p->public_, p->secret);
        p->curve = 1;
    }
    p->o.curve_server_key = p->o.curve_secret_key = NULL;
    if (!strncmp(endpoint, "ipc://", 6) && (rc = kj_ipc_check_endpoint_dir(endpoint, 0, err)) < 0)
        goto fail;
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

/* What the publisher knows of each event before it sends it, from the
 * server's own decoder: whether it is one object, and its event_id. */
typedef struct known {
    char **id;    /* event_id the server will name (NULL: none) */
    char *object; /* 1: one JSON object, may share a batch */
    size_t *solo; /* events to send again one per request */
    size_t nsolo, solo_at;
} known;

static int know(const char *const *ev, size_t n, known *k)
{
    k->id = calloc(n, sizeof *k->id);
    k->object = calloc(n, 1);
    k->solo = malloc(n * sizeof *k->solo);
    if (!k->id || !k->object || !k->solo)
        return KJ_ENOMEM;
    kj_wire_limits lim = {.max_message = (size_t)-1};
    for (size_t i = 0; i < n; i++) {
        kj_wire_request *r = NULL;
        kj_wire_error we;
        if (kj_wire_decode(ev[i], strlen(ev[i]), &lim, &r, &we) < 0)
            continue;
        if (kj_wire_count(r) == 1 && !kj_wire_request_id(r)) {
            const kj_wire_item *it = kj_wire_item_at(r, 0);
            k->object[i] = 1;
            if (it->event_id && !(k->id[i] = strdup(it->event_id))) {
                kj_wire_request_free(r);
                return KJ_ENOMEM;
            }
        }
        kj_wire_request_free(r);
    }
    return 0;
}

static void unknow(known *k, size_t n)
{
    for (size_t i = 0; k->id && i < n; i++)
        free(k->id[i]);
    free(k->id);
    free(k->object);
    free(k->solo);
}

/* Packs events from *next into one request body; events to resend alone
 * come first. */
static int build(kj_publisher *p, const char *const *ev, size_t n, size_t *next, known *k, req *r)
{
    memset(r, 0, sizeof *r);
    r->idlen = (size_t)snprintf(r->id, sizeof r->id, "%llx", (unsigned long long)p->next_id++);
    int batch = p->o.batch > 1;
    int solo = k->solo_at < k->nsolo;
    size_t at = solo ? k->solo[k->solo_at++] : (*next)++;
    r->first = at;
    r->count = 1;
    if (solo || !batch || !k->object[at]) {
        r->len = strlen(ev[at]);
        r->body = strdup(ev[at]);
        goto sized;
    }
    kj_buf b = {0};
    kj_buf_str(&b, "{\"events\":[");
    kj_buf_add(&b, ev[at], strlen(ev[at]));
    while (*next < n && r->count < p->o.batch) {
        size_t len = strlen(ev[*next]);
        if (b.len + len + 2 > p->o.max_request || !k->object[*next])
            break;
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
sized:
    if (!r->body)
        return KJ_ENOMEM;
    /* kjournald drops a frame over the hard cap without a word (unless its
     * --max-message is larger): waiting again for it would only look like an
     * outage. */
    r->max_attempts = r->len > KJ_IPC_HARD_CAP ? 1 : 1 + p->o.retries;
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

enum { DONE, AGAIN, SPLIT };

/* A result that names another event than the one sent is no acknowledgement
 * of it. A rejection may name none (the event had no usable id). */
static int names_other(const char *sent, const char *named, kj_append_status st)
{
    if (st == KJ_APPEND_REJECTED)
        return sent && named && strcmp(sent, named);
    return !sent || !named || strcmp(sent, named);
}

/* Applies a reply to r: DONE when r is finished, AGAIN when it must be sent
 * again (the server asked for a retry), SPLIT when its events must go one
 * per request (the batch was too large for the server). *mismatch counts
 * results that named an event other than the one sent. */
static int apply_reply(req *r, const char *body, size_t len, const known *k,
                       kj_publish_result *results, size_t *mismatch)
{
    double lat = (now_s() - r->t_first) * 1000;
    cJSON *root = cJSON_ParseWithLength(body, len);
    int rc = DONE;
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(root, "ok");
    if (cJSON_IsTrue(ok)) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "results");
        if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != r->count) {
            for (size_t i = 0; i < r->count; i++)
                fill(&results[r->first + i], k->id[r->first + i], 0, "bad_reply",
                     "the server's reply does not match the request", lat);
            goto out;
        }
        size_t i = 0;
        const cJSON *e;
        for (e = arr->child; e; e = e->next, i++) {
            const char *st = jstr(e, "status");
            kj_append_status s = !st                        ? 0
                                 : !strcmp(st, "stored")    ? KJ_APPEND_STORED
                                 : !strcmp(st, "duplicate") ? KJ_APPEND_DUPLICATE
                                                            : KJ_APPEND_REJECTED;
            if (names_other(k->id[r->first + i], jstr(e, "event_id"), s))
                break;
        }
        if (e) {
            /* One wrong name makes the whole reply worthless. */
            char msg[192];
            const char *named = jstr(e, "event_id");
            snprintf(msg, sizeof msg, "the reply names event '%.64s' where '%.64s' was sent",
                     named ? named : "(none)",
                     k->id[r->first + i] ? k->id[r->first + i] : "(none)");
            for (i = 0; i < r->count; i++)
                fill(&results[r->first + i], k->id[r->first + i], 0, "bad_reply", msg, lat);
            (*mismatch)++;
            goto out;
        }
        i = 0;
        for (e = arr->child; e; e = e->next, i++) {
            const char *st = jstr(e, "status");
            const cJSON *er = cJSON_GetObjectItemCaseSensitive(e, "error");
            kj_append_status s = !st                        ? 0
                                 : !strcmp(st, "stored")    ? KJ_APPEND_STORED
                                 : !strcmp(st, "duplicate") ? KJ_APPEND_DUPLICATE
                                                            : KJ_APPEND_REJECTED;
            fill(&results[r->first + i], k->id[r->first + i], s, jstr(er, "code"),
                 jstr(er, "message"), lat);
        }
    } else {
        const cJSON *er = cJSON_GetObjectItemCaseSensitive(root, "error");
        const char *code = jstr(er, "code");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "retry"))) {
            rc = AGAIN;
            for (size_t i = 0; i < r->count; i++)
                fill(&results[r->first + i], k->id[r->first + i], 0, code, jstr(er, "message"),
                     lat);
            goto out;
        }
        /* The batch, not its events, was too much for this server. */
        if (r->count > 1 && code &&
            (!strcmp(code, "too_large") || !strcmp(code, "too_many_events"))) {
            rc = SPLIT;
            goto out;
        }
        for (size_t i = 0; i < r->count; i++)
            fill(&results[r->first + i], k->id[r->first + i], root ? KJ_APPEND_REJECTED : 0,
                 root ? code : "bad_reply",
                 root ? jstr(er, "message") : "the server's reply is not JSON", lat);
    }
out:
    cJSON_Delete(root);
    return rc;
}

static void retire(req *r, size_t *inflight)
{
    free(r->body);
    r->body = NULL;
    r->live = 0;
    (*inflight)--;
}

/* One kj_publisher_publish() call: the events, what is known of them, the
 * window of requests and the counts the loop keeps. */
typedef struct run {
    kj_publisher *p;
    const char *const *ev;
    size_t n, next; /* events; the next one not yet packed */
    kj_publish_result *results;
    known k;
    req *w;
    req **order; /* the live requests, sorted for a resend */
    size_t window, inflight, mismatch;
} run;

static int more_to_send(const run *u)
{
    return u->next < u->n || u->k.solo_at < u->k.nsolo;
}

/* Fills the free places of the window with new requests and sends them. */
static int fill_window(run *u, int64_t now)
{
    for (size_t i = 0; i < u->window && more_to_send(u); i++) {
        if (u->w[i].live)
            continue;
        int rc = build(u->p, u->ev, u->n, &u->next, &u->k, &u->w[i]);
        if (rc < 0)
            return rc;
        u->w[i].live = 1;
        u->w[i].t_first = now_s();
        send_req(u->p, &u->w[i], now);
        u->inflight++;
    }
    return 0;
}

/* Reads one reply's frames ([request id][""][body]) into f; returns how many
 * (at most 3, the rest dropped), 0 when nothing was waiting. */
static int recv_reply(void *sock, zmq_msg_t f[3])
{
    int nf = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, nf ? 0 : ZMQ_DONTWAIT) < 0) {
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
    return nf;
}

/* Applies the reply in f to the request it names, if any is in the window. */
static void take_reply(run *u, zmq_msg_t f[3])
{
    for (size_t i = 0; i < u->window; i++) {
        req *r = &u->w[i];
        if (!r->live || zmq_msg_size(&f[0]) != r->idlen ||
            memcmp(zmq_msg_data(&f[0]), r->id, r->idlen))
            continue;
        int a = apply_reply(r, zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), &u->k, u->results,
                            &u->mismatch);
        if (a == SPLIT) {
            for (size_t e = 0; e < r->count; e++)
                u->k.solo[u->k.nsolo++] = r->first + e;
            retire(r, &u->inflight);
        } else if (a == DONE || r->attempts >= r->max_attempts) {
            retire(r, &u->inflight);
        } else {
            usleep(50 * 1000); /* the journal is busy: give it a moment */
            send_req(u->p, r, kj_mono_ms());
        }
        return;
    }
}

/* r ran out of attempts: its events that have no answer yet get one that
 * says why. */
static void give_up(run *u, req *r)
{
    for (size_t e = 0; e < r->count; e++) {
        kj_publish_result *res = &u->results[r->first + e];
        if (res->code[0])
            continue;
        if (r->len > KJ_IPC_HARD_CAP) {
            char msg[192];
            snprintf(msg, sizeof msg,
                     "no answer to a request of %zu bytes: kjournald drops requests "
                     "over %u MiB unless its --max-message is larger",
                     r->len, KJ_IPC_HARD_CAP >> 20);
            fill(res, u->k.id[r->first + e], 0, "too_large", msg, 0);
        } else {
            fill(res, u->k.id[r->first + e], 0, "timeout", "no acknowledgement from kjournald", 0);
        }
    }
    retire(r, &u->inflight);
}

static int by_first(const void *a, const void *b)
{
    const req *x = *(const req *const *)a, *y = *(const req *const *)b;
    return (x->first > y->first) - (x->first < y->first);
}

/* Lazy Pirate: when a request timed out the socket may hold a dead
 * connection; start afresh and resend everything in flight, same bytes, same
 * event ids. */
static int resend_expired(run *u, kj_err *err)
{
    int64_t now = kj_mono_ms();
    int expired = 0;
    for (size_t i = 0; i < u->window; i++)
        if (u->w[i].live && now >= u->w[i].deadline)
            expired = 1;
    if (!expired)
        return 0;
    int rc = open_sock(u->p, err);
    if (rc < 0)
        return rc;
    /* Resend in the events' order, not the window's (its places are reused):
     * on the fresh connection a session's close must not overtake its open. */
    size_t n = 0;
    for (size_t i = 0; i < u->window; i++)
        if (u->w[i].live)
            u->order[n++] = &u->w[i];
    qsort(u->order, n, sizeof *u->order, by_first);
    for (size_t i = 0; i < n; i++) {
        req *r = u->order[i];
        if (now >= r->deadline && r->attempts >= r->max_attempts) {
            give_up(u, r);
            continue;
        }
        r->attempts -= now < r->deadline; /* only the expired ones count a try */
        send_req(u->p, r, now);
    }
    return 0;
}

/* Counted from the results: a reply that does not fit its request also
 * leaves its events unanswered. */
static int outcome(const run *u, kj_err *err)
{
    size_t unacked = 0;
    for (size_t i = 0; i < u->n; i++)
        unacked += u->results[i].status == 0;
    if (u->mismatch)
        return kj_err_set(err, KJ_EPROTO,
                          "%zu replies named other events than the ones sent: is kjournald "
                          "really what listens there? %zu events were not acknowledged",
                          u->mismatch, unacked);
    if (unacked)
        return kj_err_set(err, KJ_ETIMEDOUT, "%zu events were not acknowledged", unacked);
    return 0;
}

int kj_publisher_publish(kj_publisher *p, const char *const *events, size_t n,
                         kj_publish_result *results, kj_err *err)
{
    int rc = 0;
    run u = {.p = p, .ev = events, .n = n, .results = results, .window = (size_t)p->o.window};
    u.w = calloc(u.window, sizeof *u.w);
    u.order = calloc(u.window, sizeof *u.order);
    if (!u.w || !u.order || know(events, n, &u.k) < 0) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    memset(results, 0, n * sizeof *results);
    while (more_to_send(&u) || u.inflight) {
        int64_t now = kj_mono_ms();
        if ((rc = fill_window(&u, now)) < 0) {
            kj_err_set(err, rc, "out of memory");
            goto out;
        }
        int64_t wait = p->o.timeout_ms;
        for (size_t i = 0; i < u.window; i++)
            if (u.w[i].live && u.w[i].deadline - now < wait)
                wait = u.w[i].deadline - now;
        zmq_pollitem_t pi = {p->sock, 0, ZMQ_POLLIN, 0};
        int prc = zmq_poll(&pi, 1, wait > 0 ? (long)wait : 0);
        if (prc < 0 && zmq_errno() == EINTR) {
            rc = kj_err_set(err, KJ_ECANCELED, "interrupted");
            goto out;
        }
        while (prc > 0) {
            zmq_msg_t f[3];
            int nf = recv_reply(p->sock, f);
            if (nf == 0)
                break;
            if (nf == 3)
                take_reply(&u, f);
            for (int i = 0; i < nf; i++)
                zmq_msg_close(&f[i]);
        }
        if ((rc = resend_expired(&u, err)) < 0)
            goto out;
    }
    rc = outcome(&u, err);
out:
    for (size_t i = 0; u.w && i < u.window; i++)
        if (u.w[i].live)
            free(u.w[i].body);
    free(u.w);
    free(u.order);
    unknow(&u.k, n);
    return rc;
}
