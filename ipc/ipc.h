/*
 * ipc.h - event ingest over ZeroMQ: the wire decoder, the server that
 * kjournald runs, CURVE keys, and the publisher API.
 *
 * The wire protocol is written down in schema/PROTOCOL.md; this header is its
 * C face. Three parts:
 *
 * 1. The decoder turns one request frame into normalized events:
 *
 *        kj_wire_request *req;
 *        kj_wire_error werr;
 *        if (kj_wire_decode(buf, len, NULL, &req, &werr) < 0)
 *            ... werr.code, werr.message: the frame as a whole is unusable
 *        else
 *            for (size_t i = 0; i < kj_wire_count(req); i++) {
 *                kj_wire_item *it = kj_wire_item_at(req, i);
 *                if (it->res.status != KJ_APPEND_REJECTED) ... it->ev ...
 *            }
 *
 *    Every event either decodes into it->ev (strings borrowed from req) or is
 *    marked rejected in it->res with a code and a message naming the field.
 *
 * 2. The server binds a ROUTER per endpoint, group-commits what it drains
 *    into the journal, then acks. kj_ipc_server_run() blocks until
 *    kj_ipc_server_stop() (async-signal-safe) is called:
 *
 *        kj_ipc_server_opts o = kj_ipc_server_defaults();
 *        o.endpoints = eps; o.n_endpoints = 1;
 *        o.on_committed = fn; o.ud = state;   // e.g. tell the reconciler
 *        kj_ipc_server_new(journal, &o, &srv, &err);
 *        kj_ipc_server_run(srv, &err);
 *        kj_ipc_server_destroy(srv);
 *
 * 3. The publisher connects a DEALER, keeps a window of requests in flight,
 *    correlates replies by a request-id envelope frame, and retries timed-out
 *    requests with the same bytes (same event_id) on a fresh socket (Lazy
 *    Pirate) until acked or out of retries.
 *
 * Threads: a server or a publisher is used from one thread at a time, except
 * kj_ipc_server_stop() and kj_ipc_server_stats(), which any thread (or a
 * signal handler, for stop) may call.
 */
#ifndef KJ_IPC_H
#define KJ_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "journal/journal.h"

/* Defaults; PROTOCOL.md documents the same numbers. */
#define KJ_IPC_DEFAULT_ENDPOINT "tcp://127.0.0.1:5680"
#define KJ_IPC_MAX_MESSAGE 1048576    /* bytes in a request frame */
#define KJ_IPC_MAX_EVENTS 1000        /* events in one request */
#define KJ_IPC_MAX_DEPTH 32           /* JSON nesting depth of a request */
#define KJ_IPC_BATCH_MAX 2000         /* events in one commit */
#define KJ_IPC_HWM 1000               /* messages queued per peer, each way */
#define KJ_IPC_MAX_QUEUED (64u << 20) /* bytes of requests held, all peers together */
#define KJ_IPC_HARD_CAP (16u << 20)   /* frames up to this get an answer (see PROTOCOL.md) */
#define KJ_IPC_ENVELOPE_MAX 4         /* envelope frames before the delimiter */
#define KJ_IPC_ENVELOPE_FRAME_MAX 255

/* --- the decoder ------------------------------------------------------------ */

typedef struct kj_wire_limits {
    size_t max_message; /* 0: KJ_IPC_MAX_MESSAGE */
    size_t max_events;  /* 0: KJ_IPC_MAX_EVENTS */
    int max_depth;      /* 0: KJ_IPC_MAX_DEPTH */
} kj_wire_limits;

/* A request-level error: code is static ("bad_json", "too_large", ...). */
typedef struct kj_wire_error {
    const char *code;
    char message[192];
} kj_wire_error;

typedef enum { KJ_WIRE_NATIVE = 1, KJ_WIRE_KYUUBI = 2 } kj_wire_form;

typedef struct kj_wire_item {
    kj_event ev;          /* valid unless res.status == KJ_APPEND_REJECTED */
    kj_append_result res; /* status 0 until the journal answers; REJECTED by the decoder */
    kj_wire_form form;
    const char *event_id; /* for the reply; may be NULL when the event had none */
} kj_wire_item;

typedef struct kj_wire_request kj_wire_request;

/*
 * Decodes one request frame (data need not be NUL-terminated). Returns 0 and
 * a request in *out (free with kj_wire_request_free), or KJ_EPROTO with *werr
 * filled when the frame as a whole is unusable. lim may be NULL.
 */
int kj_wire_decode(const void *data, size_t len, const kj_wire_limits *lim, kj_wire_request **out,
                   kj_wire_error *werr);
void kj_wire_request_free(kj_wire_request *r);
size_t kj_wire_count(const kj_wire_request *r);
kj_wire_item *kj_wire_item_at(kj_wire_request *r, size_t i);

/* --- CURVE keys --------------------------------------------------------------- */

/* Key files hold one Z85 key (40 characters) and optional whitespace. */
int kj_ipc_read_key(const char *path, char z85[41], kj_err *err);
/* Writes prefix.key (secret, mode 0600) and prefix.pub (public, 0644); never
 * overwrites unless force. public_out (may be NULL) receives the public key. */
int kj_ipc_keygen(const char *prefix, int force, char public_out[41], kj_err *err);

/* --- --check-config (check.c): parse and read, never bind, connect or create --- */

/* tcp://HOST:PORT (a listening one may end ":*") or ipc://PATH, whose
 * directory, when it exists, would be accepted. */
int kj_ipc_check_endpoint(const char *ep, int listening, kj_err *err);
/* The server's CURVE files: both or neither; the secret key and every
 * allow_dir/ *.pub hold keys; *n_allowed counts them. */
int kj_ipc_check_server_keys(const char *secret_key, const char *allow_dir, size_t *n_allowed,
                             kj_err *err);
/* A publisher's CURVE files: both or neither, each holding a key. */
int kj_ipc_check_publisher_keys(const char *server_key, const char *secret_key, kj_err *err);

/* --- the server --------------------------------------------------------------- */

/*
 * Called on the server thread after each successful commit, after the acks
 * are sent: events[i] was answered res[i] (stored, duplicate or rejected).
 * Strings are valid only during the call. The reconciler hooks in here; keep
 * it short (hand work to another thread): the next batch waits for it.
 */
typedef void (*kj_ipc_committed_cb)(const kj_event *events, const kj_append_result *res, size_t n,
                                    void *ud);

typedef struct kj_ipc_server_opts {
    const char *const *endpoints; /* tcp://HOST:PORT or ipc://PATH */
    size_t n_endpoints;
    size_t batch_max;             /* events per commit */
    int batch_window_ms;          /* wait this long for more when the queue runs dry; 0: never */
    int drain_budget_ms;          /* stop draining after this long even if more is queued */
    size_t max_message;           /* request frames above this get "too_large" (up to
                                     the transport limit: max(KJ_IPC_HARD_CAP,
                                     max_message + 64 KiB); beyond it libzmq drops the
                                     connection) */
    size_t max_queued_bytes;      /* requests held (read, not yet answered), all peers
                                     together; more are answered "overloaded", retry.
                                     0: KJ_IPC_MAX_QUEUED */
    size_t max_events;            /* events per request */
    int hwm;                      /* ZMQ_SNDHWM / ZMQ_RCVHWM */
    const char *curve_secret_key; /* file; NULL: no CURVE */
    const char *curve_allow_dir;  /* directory of *.pub files; required with CURVE */
    kj_ipc_committed_cb on_committed;
    void *ud;
} kj_ipc_server_opts;

kj_ipc_server_opts kj_ipc_server_defaults(void);

/* Histogram bounds: batch sizes (events) and commit latency (microseconds). */
#define KJ_IPC_BUCKETS 12
extern const double kj_ipc_batch_bounds[KJ_IPC_BUCKETS - 1];
extern const double kj_ipc_commit_bounds_s[KJ_IPC_BUCKETS - 1];

typedef struct kj_ipc_stats {
    uint64_t requests, bad_requests, replies_dropped;
    uint64_t overloaded;   /* requests answered "overloaded" (max_queued_bytes) */
    uint64_t queued_bytes; /* requests held now, in bytes (a gauge) */
    uint64_t events_stored, events_duplicate, events_rejected;
    uint64_t commits, commit_failures;
    uint64_t batch_hist[KJ_IPC_BUCKETS]; /* non-cumulative counts per bucket */
    uint64_t batch_sum;
    uint64_t commit_hist[KJ_IPC_BUCKETS];
    double commit_sum_s;
    int running;     /* the loop is serving */
    int last_commit; /* 0: ok or none yet; <0: the last commit failed */
} kj_ipc_stats;

typedef struct kj_ipc_server kj_ipc_server;

/* Binds every endpoint (and the ZAP handler with CURVE). The journal stays
 * the caller's and must outlive the server. */
int kj_ipc_server_new(kj_journal *j, const kj_ipc_server_opts *opts, kj_ipc_server **out,
                      kj_err *err);
/* Serves until stopped: then finishes and acks the batch in hand, returns 0. */
int kj_ipc_server_run(kj_ipc_server *s, kj_err *err);
/* Asks run() to return; async-signal-safe. */
void kj_ipc_server_stop(kj_ipc_server *s);
void kj_ipc_server_stats(kj_ipc_server *s, kj_ipc_stats *out);
void kj_ipc_server_destroy(kj_ipc_server *s);

/* --- the publisher ------------------------------------------------------------ */

typedef struct kj_publisher_opts {
    int timeout_ms;               /* per attempt; default 2500 */
    int retries;                  /* attempts after the first; default 3 */
    int window;                   /* requests in flight; default 16 */
    size_t batch;                 /* events per request; default 1 */
    size_t max_request;           /* bytes per batched request; default 512 KiB */
    const char *curve_server_key; /* file with the server's public key; NULL: plaintext */
    const char *curve_secret_key; /* file with our secret key (public derived) */
} kj_publisher_opts;

kj_publisher_opts kj_publisher_defaults(void);

typedef struct kj_publish_result {
    kj_append_status status; /* 0: never acknowledged */
    char event_id[KJ_EVENT_ID_MAX + 1];
    char code[48];
    char message[192];
    double latency_ms; /* first send to ack */
} kj_publish_result;

typedef struct kj_publisher kj_publisher;

int kj_publisher_new(const char *endpoint, const kj_publisher_opts *opts, kj_publisher **out,
                     kj_err *err);
void kj_publisher_destroy(kj_publisher *p);

/*
 * Publishes n events, each one JSON object as text (native or Kyuubi form),
 * and fills results[0..n). Events are packed opts.batch per request; a line
 * that is not a JSON object travels alone so its error is its own. Returns 0
 * when every event got an answer (stored, duplicate or rejected: look at
 * results), KJ_ETIMEDOUT when some never did (status 0), another negative
 * code on a local failure.
 */
int kj_publisher_publish(kj_publisher *p, const char *const *events, size_t n,
                         kj_publish_result *results, kj_err *err);

#endif
