/*
 * kube.h - the reconciler's Kubernetes API client: configuration like
 * client-go, the few calls kjournal makes (pods, leases), and an async engine
 * over libcurl's multi interface with bounded concurrency, a client-side rate
 * limit and retries.
 *
 * Configuration. Fill a kj_kube_flags (the programs do it from their command
 * line, tools/common/kube_opts.h; this library never sees argv), then resolve it:
 *
 *     kj_kube_flags fl;
 *     kj_kube_flags_init(&fl);
 *     fl.server = ...;
 *     kj_kube_config *cfg;
 *     int rc = kj_kube_config_load(&fl, &cfg, &err);
 *     if (rc == KJ_ENOENT) ... no configuration at all: run without reconciling
 *     else if (rc < 0)     ... configuration broken: err.msg says what
 *
 * Sources, like client-go: explicit flags win field by field; under them the
 * kubeconfig (--kubeconfig, else $KUBECONFIG, a ':'-separated list merged
 * first-wins, else ~/.kube/config); without a kubeconfig, in-cluster config
 * (KUBERNETES_SERVICE_HOST/_PORT and the service-account directory). With none
 * of these, and no --server, kj_kube_config_load() returns KJ_ENOENT; every
 * other failure (a named file missing, bad YAML, unknown context, ...) is
 * KJ_EINVAL: "configuration broken".
 *
 * Calls. A kj_kube client runs requests: submit them and drive the engine:
 *
 *     kj_kube *k;
 *     kj_kube_new(cfg, &k, &err);
 *     for (...) {
 *         kj_kube_req r = KJ_KUBE_REQ_INIT;
 *         r.op = KJ_KUBE_DELETE_POD; r.name = ...; r.precondition_uid = ...;
 *         kj_kube_submit(k, &r, done_cb, ud);   // copies r
 *     }
 *     kj_kube_run(k, 120000);                    // until all done or 120 s
 *     kj_kube_free(k);
 *
 * Connections are kept alive and reused; over TLS HTTP/2 is negotiated when
 * the server offers it (CURL_HTTP_VERSION_2TLS), and once a server has
 * answered in HTTP/2 new requests wait for a stream on the open connection
 * (CURLOPT_PIPEWAIT) rather than opening another; over HTTP/1.1 each request
 * in flight has its own connection.
 *
 * At most max_in_flight requests are on the wire, and requests start no faster
 * than the token bucket (qps, burst) allows; the rest wait in a FIFO queue.
 * done_cb is called exactly once per submitted request, from inside
 * kj_kube_run(); it may submit follow-up requests (re-read and re-plan after
 * a 409/422). It must not call kj_kube_free().
 *
 * Retries (all within the request's deadline, counted from its first attempt):
 *   - 429 always, and 503 with a Retry-After header: wait Retry-After (capped
 *     at KJ_KUBE_RETRY_AFTER_MAX_MS; garbage or absurd values are clamped; 0
 *     backs off like a 5xx so that it cannot spin), for every call: the
 *     server did not execute the request.
 *   - other 5xx and connection errors: exponential backoff with jitter, only
 *     for calls that are safe to repeat: GET, list, DELETE with a uid or
 *     resourceVersion precondition (a repeat hits the same object or answers
 *     404/409), JSON Patch that contains a `test` op, lease update (it carries
 *     a resourceVersion) and lease create (a repeat answers 409 AlreadyExists).
 *     Why a JSON Patch with `test` is safe: if the first attempt never reached
 *     the server, the repeat is the first application; if it was applied and
 *     only the answer was lost, the object changed under the test (the
 *     removed finalizer is no longer at that index, the resourceVersion
 *     moved), so the repeat fails with 422 and the caller re-reads, which it
 *     must do for a 422 anyway. This holds when the tests guard what the
 *     patch changes, or when applying the patch twice is harmless: the
 *     caller's promise in putting a `test` op in (kjournal's finalizer
 *     patches keep both). A patch without `test` is not repeated, not even
 *     by libcurl's own resend on a reused connection: such calls go on a new
 *     connection (one TLS handshake each; kjournal sends few). (A DELETE
 *     with a uid precondition repeated after it was applied answers 404, or
 *     200 again for a pod kept by a finalizer: harmless either way.)
 *   - 401: the token file is read again; if the token changed the request is
 *     repeated once (it was not executed), otherwise KJ_EAUTH.
 *   - 409 and 422 are never repeated: they go back to the caller.
 * When the deadline leaves no room for the next attempt the request fails at
 * once with KJ_ETIMEDOUT (its message names the last error).
 *
 * Errors: HTTP failures are parsed from the Status object into kj_kube_status
 * and mapped: 404 KJ_ENOENT, 409/422 KJ_ECONFLICT, 401/403 KJ_EAUTH,
 * 410 KJ_EHTTP (reason Expired; list handles it), 429/502/503/504 and
 * connection errors KJ_EUNAVAIL, TLS verification failures KJ_EAUTH, deadline
 * KJ_ETIMEDOUT, unparseable bodies KJ_EPROTO, other HTTP codes KJ_EHTTP.
 *
 * Secrets: tokens, keys and certificates never reach a log line or an error
 * message; inline -data is handed to libcurl as in-memory blobs, never written
 * to temporary files.
 *
 * Threads: a kj_kube is driven by one thread at a time. Configs are immutable
 * after loading and may be shared.
 *
 * This header holds what the programs use. The parsers, the synchronous
 * wrappers (one request run to completion), kj_kube_poll() and the counters
 * are in kube_internal.h, for the library and its tests.
 */
#ifndef KJ_KUBE_H
#define KJ_KUBE_H

#include <stddef.h>
#include <stdint.h>

#include "journal/kj.h"

/* ---- flags and configuration ------------------------------------------ */

/* High enough never to be what a reconcile pass waits for (the bound on
 * requests in flight is what protects the API server), bounded all the same. */
#define KJ_KUBE_DEFAULT_QPS 5000
#define KJ_KUBE_DEFAULT_BURST 1000
#define KJ_KUBE_DEFAULT_IN_FLIGHT 32
#define KJ_KUBE_DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KJ_KUBE_RETRY_AFTER_MAX_MS 10000

/*
 * What the command line said. Strings are borrowed (argv or literals) and must
 * outlive kj_kube_config_load(); NULL means "not given".
 */
typedef struct kj_kube_flags {
    const char *server;      /* --server URL */
    const char *token_file;  /* --token-file */
    const char *ca_file;     /* --certificate-authority */
    const char *client_cert; /* --client-certificate */
    const char *client_key;  /* --client-key */
    int insecure;            /* --insecure-skip-tls-verify: 1 only when asked */
    const char *kubeconfig;  /* --kubeconfig */
    const char *context;     /* --context */
    const char *namespace_;  /* overrides the context's namespace (no flag; callers may set) */
    double qps;              /* --qps; <= 0 means no rate limit */
    int burst;               /* --burst */
    int max_in_flight;       /* requests on the wire at once */
    /* Service-account directory for in-cluster config; NULL means
     * $KJ_KUBE_SA_DIR, else KJ_KUBE_DEFAULT_SA_DIR. For tests. */
    const char *sa_dir;
} kj_kube_flags;

/* Sets the defaults: all NULL, qps/burst/in-flight defaults. */
void kj_kube_flags_init(kj_kube_flags *f);

typedef struct kj_kube_config kj_kube_config;

/*
 * Resolves flags (NULL = defaults) into a config. KJ_ENOENT: no configuration
 * found at all. KJ_EINVAL: configuration found but broken (err says what and
 * where; never a secret). KJ_ENOMEM.
 * Files named by the config (token, CA, client cert and key) are read here, so
 * a missing or unreadable file is reported at load time; the token file is
 * read again later by the client.
 */
int kj_kube_config_load(const kj_kube_flags *f, kj_kube_config **out, kj_err *err);
void kj_kube_config_free(kj_kube_config *c);

/* Accessors; strings belong to the config. */
/* The server URL for messages and logs: credentials written into it
 * (https://user:password@host) are masked as https://xxxxx@host. */
const char *kj_kube_config_server(const kj_kube_config *c);
const char *kj_kube_config_namespace(const kj_kube_config *c); /* "default" if none */
/* "flags", "kubeconfig <path>" or "in-cluster": for log lines. */
const char *kj_kube_config_source(const kj_kube_config *c);

/* ---- objects ----------------------------------------------------------- */

/*
 * A pod, reduced to what the reconciler needs. Every string is owned by the
 * pod and freed by kj_pod_free()/kj_pod_clear(); a missing field is NULL
 * (labels, node_name, phase) and a missing time is 0.
 */
typedef struct kj_pod {
    char *namespace_;
    char *name;
    char *uid;
    char *resource_version;
    char *unique_tag;   /* label kyuubi-unique-tag */
    char *app_selector; /* label spark-app-selector */
    char *spark_role;   /* label spark-role */
    char **finalizers;  /* n_finalizers strings */
    size_t n_finalizers;
    char *phase;     /* Pending, Running, Succeeded, Failed, Unknown; NULL if none */
    char *node_name; /* spec.nodeName */
    int64_t created_ms;
    int64_t deletion_ms;      /* metadata.deletionTimestamp; 0 = not being deleted */
    int64_t deletion_grace_s; /* metadata.deletionGracePeriodSeconds; -1 if unset */
    int64_t finished_ms; /* latest containerStatuses[*].state.terminated.finishedAt; 0 if none */
} kj_pod;

/* Frees the pod's strings and the pod; accepts NULL. */
void kj_pod_free(kj_pod *p);
/* A deep copy of src in *out (the caller's, kj_pod_free()). 0 or KJ_ENOMEM
 * (then *out is NULL). */
int kj_pod_dup(const kj_pod *src, kj_pod **out);
/* 1 if name is in p's finalizers; its index in *index if not NULL. */
int kj_pod_has_finalizer(const kj_pod *p, const char *name, size_t *index);

/* A coordination.k8s.io/v1 Lease. Fixed-size fields: no ownership to track. */
typedef struct kj_lease {
    char namespace_[64];
    char name[254];
    char uid[64];
    char resource_version[64]; /* required by update, ignored by create */
    char holder[254];          /* spec.holderIdentity; "" = nobody */
    int duration_s;            /* spec.leaseDurationSeconds */
    int64_t acquire_ms;        /* spec.acquireTime; 0 = unset */
    int64_t renew_ms;          /* spec.renewTime; 0 = unset */
    int transitions;           /* spec.leaseTransitions */
} kj_lease;

/* An API error, from a Status object (or what could be made of the body). */
typedef struct kj_kube_status {
    int http;                  /* HTTP status code; 0 if no answer */
    char reason[64];           /* Status.reason: NotFound, Conflict, Invalid, Expired, ... */
    char message[512];         /* Status.message, or a sanitized snippet of a non-JSON body */
    char continue_token[1024]; /* Status.metadata.continue (410 Expired); "" if none */
} kj_kube_status;

/* ---- the client -------------------------------------------------------- */

typedef struct kj_kube kj_kube;

/* Creates a client; cfg is copied (the caller may free it afterwards). */
int kj_kube_new(const kj_kube_config *cfg, kj_kube **out, kj_err *err);
/* Cancels what is still pending (callbacks run with KJ_ECANCELED), frees; accepts NULL. */
void kj_kube_free(kj_kube *k);

typedef enum kj_kube_op {
    KJ_KUBE_GET_POD = 1,
    KJ_KUBE_PATCH_POD,  /* body: a JSON Patch array */
    KJ_KUBE_DELETE_POD, /* DeleteOptions from the req fields */
    KJ_KUBE_LIST_PODS,  /* pages go to on_page */
    KJ_KUBE_GET_LEASE,
    KJ_KUBE_CREATE_LEASE, /* lease */
    KJ_KUBE_UPDATE_LEASE, /* lease, with resource_version */
    KJ_KUBE_RAW, /* method + path + body as given; never retried except 429 (for tests, tools) */
    KJ_KUBE_WATCH_PODS, /* a watch stream (RBAC verb watch): events go to on_event */
} kj_kube_op;

/*
 * A watch event (see watch.c), valid during the callback. pod is set for
 * ADDED, MODIFIED and DELETED; resource_version is the object's (a BOOKMARK
 * carries nothing else); status is set for ERROR (a 410 Expired means: list
 * again).
 */
typedef enum kj_watch_type {
    KJ_WATCH_ADDED = 1,
    KJ_WATCH_MODIFIED,
    KJ_WATCH_DELETED,
    KJ_WATCH_BOOKMARK,
    KJ_WATCH_ERROR,
} kj_watch_type;
#define KJ_WATCH_TYPES 6 /* for arrays indexed by kj_watch_type */

typedef struct kj_watch_event {
    kj_watch_type type;
    const kj_pod *pod;
    const char *resource_version; /* "" when the object has none */
    const kj_kube_status *status;
} kj_watch_event;

/* Called for each event of a watch stream; return 0 to go on, anything else
 * to end the stream (the request then completes with KJ_ECANCELED). */
typedef int (*kj_kube_watch_fn)(const kj_watch_event *ev, void *ud);
const char *kj_watch_type_name(kj_watch_type t); /* "ADDED", ... */

/*
 * One page of a list, valid during the callback. restarted is 1 on the first
 * page of a list started again from scratch (a 410 without a continue token):
 * pods delivered before may come again. Return 0 to go on, anything else to
 * stop the list (it then completes with rc KJ_ECANCELED).
 */
typedef int (*kj_kube_page_fn)(const kj_pod *pods, size_t n, int restarted, void *ud);

typedef struct kj_kube_req {
    kj_kube_op op;
    const char *namespace_; /* NULL: the config's namespace */
    const char *name;       /* pod or lease name */
    const char *body;       /* PATCH_POD: the JSON Patch; RAW: the body (or NULL) */
    /* DELETE_POD */
    const char *precondition_uid;
    const char *precondition_rv;
    int64_t grace_period_s;  /* -1: not sent */
    const char *propagation; /* "Background", "Foreground", "Orphan" or NULL */
    /* LIST_PODS */
    const char *label_selector;
    const char *field_selector;
    int limit; /* page size; 0: 500 */
    kj_kube_page_fn on_page;
    /* CREATE_LEASE / UPDATE_LEASE */
    const kj_lease *lease;
    /* WATCH_PODS (label_selector, field_selector as for lists): from
     * resource_version (NULL: now, with synthetic ADDED events), the server
     * ends the stream after timeout_s (0: 300); allowWatchBookmarks is always
     * asked. Never repeated by the engine: the stream completes with 0 when
     * the server ended it, or an error (410 Expired as an HTTP status: list
     * again), and the caller resumes from the last version it saw. */
    const char *resource_version;
    int timeout_s;
    kj_kube_watch_fn on_event;
    /* Start no earlier than this many ms after submit (backoff by the caller). */
    int64_t delay_ms;
    /* RAW */
    const char *method;
    const char *path; /* starting with '/', with the query string */
    /* Deadline for the whole operation (all pages, all retries), counted from
     * its first attempt; 0: 30 s (list: 120 s). */
    int64_t timeout_ms;
    /* No attempt (first or repeat) starts at or after this monotonic time
     * (kj_mono_ms()): the request fails with KJ_ECANCELED instead; 0: none.
     * A leader's fence: a request queued before the lease was lost is never
     * sent after it. An attempt already on the wire goes on to its answer
     * (the requests that use it are idempotent). */
    int64_t not_after_ms;
} kj_kube_req;

#define KJ_KUBE_REQ_INIT                                                                           \
    {                                                                                              \
        .grace_period_s = -1                                                                       \
    }

/*
 * What a request came to, valid during the done callback. rc is 0 or a KJ_E
 * code; status holds the parsed Status of the last HTTP failure (status.http 0
 * if none); body/body_len the last response body (the object for GET, PATCH,
 * DELETE, lease calls; NULL for lists); pod is parsed for pod calls that
 * answered 2xx with a pod (else NULL), lease for lease calls that succeeded.
 * err.msg explains a failure and never carries a secret.
 */
typedef struct kj_kube_result {
    int rc;
    int attempts; /* HTTP attempts made, all pages together */
    int pages;    /* list pages delivered */
    kj_kube_status status;
    const char *body;
    size_t body_len;
    const kj_pod *pod;
    const kj_lease *lease;
    const char *resource_version; /* LIST_PODS: the list's metadata.resourceVersion ("" if none) */
    kj_err err;
} kj_kube_result;

typedef void (*kj_kube_done_fn)(kj_kube *k, const kj_kube_result *res, void *ud);

/* Queues a request (strings are copied). done may be NULL. 0 or KJ_EINVAL/KJ_ENOMEM. */
int kj_kube_submit(kj_kube *k, const kj_kube_req *req, kj_kube_done_fn done, void *ud);
/*
 * Drives the engine for at most timeout_ms (< 0: no limit) or until nothing is
 * pending. Returns 0 when nothing is pending, KJ_ETIMEDOUT when time ran out
 * first (requests stay queued; call again or kj_kube_cancel()).
 */
int kj_kube_run(kj_kube *k, int64_t timeout_ms);
int kj_kube_pending(const kj_kube *k);
/* Fails every pending request with KJ_ECANCELED (callbacks run). */
void kj_kube_cancel(kj_kube *k);
/* One step: waits up to timeout_ms for progress (a transfer moved, a retry
 * came due, kj_kube_wakeup()); returns the number pending. For a client that
 * always has a request pending (a watch), where kj_kube_run() would not
 * return before its timeout. */
int kj_kube_poll(kj_kube *k, int timeout_ms);
/* Makes a kj_kube_run() or kj_kube_poll() waiting on k return at once
 * (run: to its loop); any thread. */
void kj_kube_wakeup(kj_kube *k);

/* ---- the reflector (watch.c) ---------------------------------------------
 *
 * A list then a watch of the pods of one namespace, like client-go's
 * reflector: a paged list, a watch from the list's resourceVersion, resumed
 * from the last version seen when the server ends the stream or the
 * connection drops, a fresh list after a 410 Expired (an HTTP status or an
 * ERROR event in the stream), backoff with jitter after failures. It runs
 * on a kj_kube client of its own (a watch is always pending: kj_kube_run()
 * would never return); the caller drives it with kj_kube_poll() and stops it
 * with kj_kube_free() (or kj_kube_cancel()) before kj_reflector_free().
 */
typedef struct kj_reflector kj_reflector;
typedef struct kj_reflector_opts {
    const char *namespace_; /* NULL: the config's */
    const char *label_selector;
    int watch_timeout_s; /* timeoutSeconds; each watch asks a random one in [t, 2t); 0: 300 */
    /* Each page of each list (relist: 0 for the first list, 1 after). */
    void (*on_list)(const kj_pod *pods, size_t n, int relist, void *ud);
    /* Each event: ADDED, MODIFIED, DELETED, BOOKMARK (ERROR is handled). */
    void (*on_event)(const kj_watch_event *ev, void *ud);
    void *ud;
} kj_reflector_opts;
typedef struct kj_reflector_stats {
    uint64_t lists;    /* lists completed (the first and every relist) */
    uint64_t relists;  /* lists after a 410 or a failed list */
    uint64_t watches;  /* watch requests started */
    uint64_t restarts; /* watches resumed after the stream ended or broke */
    uint64_t expired;  /* 410 Expired answers (HTTP or in-stream) */
    uint64_t errors;   /* failed lists and broken streams */
    uint64_t events[KJ_WATCH_TYPES];
} kj_reflector_stats;
/* Starts listing at once. opts' strings are copied. */
int kj_reflector_start(kj_kube *k, const kj_reflector_opts *o, kj_reflector **out, kj_err *err);
void kj_reflector_get_stats(const kj_reflector *r, kj_reflector_stats *out);
/* 1 once a list has completed and a watch is open or being resumed. */
int kj_reflector_synced(const kj_reflector *r);
/* Frees; the client must have been freed or cancelled first. Accepts NULL. */
void kj_reflector_free(kj_reflector *r);
/* The User-Agent header of every request from now on (copied); NULL: the
 * default, "kjournal/<version>". 0 or KJ_ENOMEM. kjournald sends
 * "kjournald/<version> (<identity>)", so the API server's audit log says
 * which instance did what. */
int kj_kube_set_user_agent(kj_kube *k, const char *ua);

#endif
