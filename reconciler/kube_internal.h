/*
 * kube_internal.h - what kube.c, kubeconfig.c and kube_json.c share. Not
 * installed; the tests may use it.
 */
#ifndef KJ_KUBE_INTERNAL_H
#define KJ_KUBE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "reconciler/kube.h"

/*
 * A resolved configuration. Secrets (token, *_data) are zeroed before they are
 * freed. For each of CA, client cert and key either the file or the data is
 * set (or neither). token is a literal token; token_file, when set, wins and
 * is re-read by the client.
 */
struct kj_kube_config {
    char *server;       /* without a trailing '/' */
    char *server_shown; /* server for messages: credentials in it masked */
    char *namespace_;
    char *source;
    char *context;
    int insecure;
    char *ca_file;
    unsigned char *ca_data;
    size_t ca_len;
    char *cert_file;
    unsigned char *cert_data;
    size_t cert_len;
    char *key_file;
    unsigned char *key_data;
    size_t key_len;
    char *token;
    char *token_file;
    double qps;
    int burst;
    int max_in_flight;
};

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer. 0,
 * KJ_ENOENT, KJ_EIO, KJ_EINVAL (too large), KJ_ENOMEM. errno-style message in err
 * naming path only. */
int kj_kube_read_file(const char *path, size_t max, char **out, size_t *len, kj_err *err);
/* 1 when t may go into an Authorization header: non-empty, printable ASCII
 * (0x21-0x7e) only, so no CR, LF, NUL or space can add or split a header. */
int kj_kube_token_valid(const char *t);
/* Reads a token file: whitespace trimmed; an empty token or one that is not
 * kj_kube_token_valid() is KJ_EINVAL. */
int kj_kube_read_token(const char *path, char **out, kj_err *err);
/* Decodes standard base64 (whitespace ignored, padding optional). */
int kj_kube_b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len);
int kj_kube_config_dup(const kj_kube_config *c, kj_kube_config **out);
/* A copy of url (malloc'd; NULL when out of memory) with the userinfo of its
 * authority masked: "https://u:p@h:6443/x" -> "https://xxxxx@h:6443/x". */
char *kj_kube_redact_url(const char *url);
/* Frees s after overwriting it with zeros; accepts NULL. */
void kj_kube_free_secret(void *s, size_t len);

/* Parses the Kubernetes-side of a list page: its items go to pods (an array
 * the caller frees with kj_pod_clear each + free), its continue token to cont
 * (malloc'd, NULL if none). */
int kj_kube_parse_pod_list(const char *json, size_t len, kj_pod **pods, size_t *n, char **cont,
                           kj_err *err);
/* Builds the DeleteOptions JSON body; caller frees. */
char *kj_kube_delete_body(const char *uid, const char *rv, int64_t grace_s,
                          const char *propagation);
/* Builds a Lease JSON body (with metadata.resourceVersion when with_rv). */
char *kj_kube_lease_body(const kj_lease *l, const char *ns, int with_rv);
/* 1 if the JSON Patch text contains an op "test". */
int kj_kube_patch_has_test(const char *patch);

/* ---- for the library and its tests (kube.h holds what programs use) ---- */

/* The context used from the kubeconfig, or NULL. */
const char *kj_kube_config_context(const kj_kube_config *c);
int kj_kube_config_insecure(const kj_kube_config *c);
/* A logfmt summary without secrets, for a startup log line:
 * server=https://10.0.0.1:6443 source="kubeconfig /root/.kube/config" context=prod
 * namespace=kyuubi auth=token-file ca=inline insecure=0. Returns buf. */
const char *kj_kube_config_describe(const kj_kube_config *c, char *buf, size_t size);
/* 1 when the client authenticates with a token, a certificate or both (bit 0 token, bit 1 cert). */
int kj_kube_config_auth(const kj_kube_config *c);

/* Parses a Pod JSON object (a GET/PATCH/DELETE answer, or a list item). */
int kj_pod_parse(const char *json, size_t len, kj_pod **out, kj_err *err);

/* Frees the pod's strings, leaves *p zeroed (for pods in an array). */
void kj_pod_clear(kj_pod *p);

int kj_lease_parse(const char *json, size_t len, kj_lease *out, kj_err *err);

/*
 * Parses an error body into st; st->http = http. Never fails: a body that is
 * not a Status leaves reason "" and a printable snippet in message. Returns
 * the KJ_E code http maps to (0 for 2xx).
 */
int kj_kube_status_parse(int http, const char *body, size_t len, kj_kube_status *st);
/* KJ_E code for an HTTP status (see the table at the top of kube.h); 0 for 2xx. */
int kj_kube_http_error(int http);
/*
 * Milliseconds to wait for a Retry-After header value (delta-seconds or an
 * HTTP-date); clamped to [0, KJ_KUBE_RETRY_AFTER_MAX_MS]; garbage or a
 * negative number gives 1000.
 */
int64_t kj_kube_retry_after_ms(const char *value, int64_t now_ms);
/* RFC 3339 ("2026-11-29T05:40:39Z", fractions and offsets allowed) to epoch ms; -1 if malformed. */
int64_t kj_kube_parse_time(const char *s);

/* Changes the rate limit and the bound on requests in flight (qps <= 0: unlimited). */
void kj_kube_set_limits(kj_kube *k, double qps, int burst, int max_in_flight);
/* How often the token file is read again before a request (default 60 s, as
 * client-go; <= 0 restores it). It is also read again after every 401. */
void kj_kube_set_token_reread(kj_kube *k, int64_t ms);

/* Counters since kj_kube_new(). */
typedef struct kj_kube_stats {
    uint64_t requests; /* HTTP attempts started */
    uint64_t retries;
    uint64_t completed; /* operations finished (ok or not) */
    uint64_t failed;
    uint64_t token_reloads;
    uint64_t connects; /* new connections opened (keep-alive keeps this low) */
    int max_in_flight_seen;
} kj_kube_stats;
void kj_kube_get_stats(const kj_kube *k, kj_kube_stats *out);

/*
 * Synchronous wrappers: run one request to completion (other queued requests
 * progress meanwhile). Not from inside a done callback (KJ_EINVAL). st (may be NULL) receives the
 * Status of a failure. Pods returned through out belong to the caller (kj_pod_free()). ns NULL: the
 * config's namespace.
 */
int kj_kube_get_pod(kj_kube *k, const char *ns, const char *name, kj_pod **out, kj_kube_status *st,
                    kj_err *err);
int kj_kube_patch_pod(kj_kube *k, const char *ns, const char *name, const char *json_patch,
                      kj_pod **out, kj_kube_status *st, kj_err *err);
typedef struct kj_kube_delete_opts {
    const char *uid;              /* preconditions.uid, or NULL */
    const char *resource_version; /* preconditions.resourceVersion, or NULL */
    int64_t grace_period_s;       /* -1: not sent */
    const char *propagation;      /* or NULL */
} kj_kube_delete_opts;
int kj_kube_delete_pod(kj_kube *k, const char *ns, const char *name, const kj_kube_delete_opts *o,
                       kj_pod **out, kj_kube_status *st, kj_err *err);
/* Lists pods page by page (limit 0: 500); on_page sees one page at a time. */
int kj_kube_list_pods(kj_kube *k, const char *ns, const char *label_selector,
                      const char *field_selector, int limit, kj_kube_page_fn on_page, void *ud,
                      kj_kube_status *st, kj_err *err);
int kj_kube_get_lease(kj_kube *k, const char *ns, const char *name, kj_lease *out,
                      kj_kube_status *st, kj_err *err);
int kj_kube_create_lease(kj_kube *k, const kj_lease *in, kj_lease *out, kj_kube_status *st,
                         kj_err *err);
int kj_kube_update_lease(kj_kube *k, const kj_lease *in, kj_lease *out, kj_kube_status *st,
                         kj_err *err);

/* ---- the watch stream parser (watch.c) ---------------------------------
 *
 * Splits a watch stream into lines, however the bytes arrive (a line in
 * pieces, several lines in one chunk), and decodes each into a
 * kj_watch_event. Bounded: at most max_line bytes of an unfinished line are
 * held; a longer line is an error (KJ_EPROTO), as is a line that is not a
 * watch event. Blank lines are skipped.
 */
#define KJ_WATCH_MAX_LINE (4u << 20)
typedef struct kj_watch_parser {
    char *buf; /* the unfinished line */
    size_t len, cap, max;
    uint64_t lines; /* events decoded */
} kj_watch_parser;
void kj_watch_parser_init(kj_watch_parser *p, size_t max_line); /* 0: KJ_WATCH_MAX_LINE */
/* Feeds bytes; fn sees each complete event. 0, KJ_EPROTO (err says why),
 * KJ_ENOMEM, or KJ_ECANCELED when fn asked to stop. After an error the
 * parser must not be fed again. */
int kj_watch_parser_feed(kj_watch_parser *p, const char *data, size_t len, kj_kube_watch_fn fn,
                         void *ud, kj_err *err);
/* The stream ended: KJ_EPROTO if it ended inside a line (truncated). */
int kj_watch_parser_finish(kj_watch_parser *p, kj_err *err);
void kj_watch_parser_free(kj_watch_parser *p);
/* Decodes one line (without its newline) and calls fn. */
int kj_watch_decode_line(const char *line, size_t len, kj_kube_watch_fn fn, void *ud, kj_err *err);

/* A pod from a cJSON object (cJSON *); *p is filled (kj_pod_clear()). */
int kj_pod_from_cjson(const void *json, kj_pod *p, kj_err *err);
/* kj_kube_parse_pod_list() that also copies the list's resourceVersion into rv. */
int kj_kube_parse_pod_list_rv(const char *json, size_t len, kj_pod **pods, size_t *n, char **cont,
                              char *rv, size_t rv_size, kj_err *err);

#endif
