/*
 * kube-sim internals: a local Kubernetes API server (pods, leases) that keeps
 * the real kube-apiserver's semantics for what kjournal touches.
 *
 * Modules (all private to this program, nothing from journal/, ipc/ or
 * reconciler/ is used, so one misunderstanding of the API cannot sit on both
 * sides of a test):
 *   util.c    growable buffers, time, uids, base64url, Status objects, Go-like
 *             JSON error messages
 *   select.c  label and field selectors (parser errors worded like apimachinery)
 *   patch.c   JSON Patch, JSON merge patch, strategic merge patch
 *   store.c   the object store: sorted index, a version chain per object (so
 *             continue tokens read a consistent snapshot, like etcd's MVCC),
 *             global resourceVersion; its other files (continue tokens, the
 *             watch ring, the verbs, pod deletion / finalizer rules, Table
 *             printing, seeding) are listed in store_internal.h
 *   faults.c  the fault settings: one validator for flags and /_sim/faults
 *   http.c    libmicrohttpd handler: routing, auth, faults, stats, discovery
 *   main.c    flags, logging, signals
 *
 * Memory: allocation failures abort (this is a test tool); every function that
 * returns a char * hands ownership to the caller.
 */
#ifndef KUBE_SIM_H
#define KUBE_SIM_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- util.c ---- */

typedef struct {
    char *buf;
    size_t len, cap;
} ks_buf;

void ks_buf_add(ks_buf *b, const char *s, size_t n);
void ks_buf_adds(ks_buf *b, const char *s);
void ks_buf_addf(ks_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ks_buf_free(ks_buf *b);
void ks_buf_reserve(ks_buf *b, size_t extra);
/* once, before any thread uses cJSON: its small blocks cached per thread */
void ks_json_init(void);
/* compact JSON of o, malloc'ed to its exact size */
char *ks_print(const cJSON *o);
/* the same in a per-thread buffer, valid until the thread's next ks_print or
 * ks_print_scratch; *len receives the length. Not to be freed. */
const char *ks_print_scratch(const cJSON *o, size_t *len);
/* NUL-terminated contents; the buffer is left empty */
char *ks_buf_take(ks_buf *b);

void *ks_xmalloc(size_t n);
void *ks_xrealloc(void *p, size_t n);
char *ks_xstrdup(const char *s);
char *ks_xstrndup(const char *s, size_t n);

int64_t ks_now_ms(void);
/* RFC 3339 in UTC, seconds precision, as the apiserver writes timestamps */
void ks_fmt_time(int64_t ms, char *out, size_t outlen);
/* parses what ks_fmt_time writes (fractions allowed); -1 on error */
int64_t ks_parse_time(const char *s);
void ks_uuid(char *out37);
uint64_t ks_rand(void);

char *ks_b64url_encode(const char *s, size_t n);
/* NULL when s is not base64url; *outlen receives the length */
char *ks_b64url_decode(const char *s, size_t *outlen, size_t *bad_at);

/* Go encoding/json's message for the first error in s, or NULL if s parses */
char *ks_go_json_error(const char *s, size_t n);

typedef struct {
    const char *name;
    const char *group;
    const char *kind;
    cJSON *causes; /* owned by the caller */
} ks_details;

/* a metav1.Status with failure; details NULL for none, or empty for "{}" */
char *ks_status_json(int code, const char *reason, const char *message, const ks_details *d);

void ks_log(const char *level, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* cJSON helpers */
const char *ks_jstr(const cJSON *o, const char *key);
cJSON *ks_jobj(cJSON *parent, const char *key); /* get or create an object member */
void ks_jset(cJSON *o, const char *key, cJSON *v);
void ks_jset_str(cJSON *o, const char *key, const char *v);
void ks_reorder(cJSON *o, const char *const *keys);

/* ---- select.c ---- */

typedef struct ks_labelsel ks_labelsel;
typedef struct ks_fieldsel ks_fieldsel;

/* labels: packed "k\0v\0k\0v\0..." with n pairs */
typedef struct {
    const char *packed;
    int n;
} ks_labels;

/* NULL selector string or "" matches everything; *err receives a message */
int ks_labelsel_parse(const char *s, ks_labelsel **out, char **err);
int ks_labelsel_match(const ks_labelsel *sel, const ks_labels *labels);
void ks_labelsel_free(ks_labelsel *sel);

/* supported: NULL-terminated list of field names; value of a field via get() */
int ks_fieldsel_parse(const char *s, const char *const *supported, ks_fieldsel **out, char **err);
int ks_fieldsel_match(const ks_fieldsel *sel,
                      const char *(*get)(const void *obj, const char *field), const void *obj);
int ks_fieldsel_empty(const ks_fieldsel *sel);
void ks_fieldsel_free(ks_fieldsel *sel);

/* ---- patch.c ---- */

enum { KS_PATCH_OK = 0, KS_PATCH_BAD = 400, KS_PATCH_FAILED = 422 };
/* each returns KS_PATCH_*; *doc may be replaced; *err gets a message */
int ks_json_patch(cJSON **doc, const char *patch, size_t n, char **err);
int ks_merge_patch(cJSON **doc, const char *patch, size_t n, char **err);
int ks_strategic_patch(cJSON **doc, const char *patch, size_t n, char **err);

/* ---- store.c and the files of store_internal.h ---- */

typedef enum { KS_POD = 0, KS_LEASE = 1, KS_NKINDS } ks_kind;

typedef struct {
    ks_kind kind;
    const char *plural;      /* pods */
    const char *group;       /* "" or coordination.k8s.io */
    const char *kind_name;   /* Pod */
    const char *api_version; /* v1 */
    const char *qualified;   /* pods, leases.coordination.k8s.io */
} ks_resource;

extern const ks_resource ks_resources[KS_NKINDS];

typedef struct ks_store ks_store;

/* what a request did to the store, for /_sim/stats */
typedef enum {
    KS_EFFECT_NONE = 0,
    KS_EFFECT_MUTATED, /* bumped the resourceVersion */
    KS_EFFECT_REMOVED, /* a DELETE (or update) removed the object */
    KS_EFFECT_MARKED,  /* a DELETE set deletionTimestamp, object stays */
} ks_effect;

typedef struct {
    int code;
    char *body; /* JSON */
    ks_effect effect;
    int removed; /* object left the store */
} ks_result;

typedef struct {
    ks_kind kind;
    const char *ns;   /* NULL: all namespaces */
    const char *name; /* NULL for collections */
    int status_sub;
    const char *body;
    size_t body_len;
    const char *content_type;
    const char *label_selector;
    const char *field_selector;
    const char *limit;
    const char *cont;
    const char *grace_param;      /* ?gracePeriodSeconds= */
    const char *resource_version; /* ?resourceVersion= (lists, watch) */
    int bookmarks;                /* watch: ?allowWatchBookmarks=true */
    int dry_run;
    int table; /* Accept: ...;as=Table (kubectl get) */
} ks_request;

ks_store *ks_store_new(void);
void ks_store_free(ks_store *s);
void ks_store_set_continue_ttl(ks_store *s, int seconds);
int ks_store_continue_ttl(ks_store *s);
/* loads a PodList or a JSON array of pods; returns the count or -1 with *err */
int ks_store_seed(ks_store *s, const char *json, size_t n, char **err);
void ks_store_reset(ks_store *s);

void ks_store_get(ks_store *s, const ks_request *r, ks_result *out);
void ks_store_list(ks_store *s, const ks_request *r, ks_result *out);
void ks_store_create(ks_store *s, const ks_request *r, ks_result *out);
void ks_store_update(ks_store *s, const ks_request *r, ks_result *out);
void ks_store_patch(ks_store *s, const ks_request *r, ks_result *out);
void ks_store_delete(ks_store *s, const ks_request *r, ks_result *out);
/* removes pods whose graceful deletion period ran out (a kubelet's part) */
int ks_store_tick(ks_store *s);
char *ks_store_dump(ks_store *s);
uint64_t ks_store_rv(ks_store *s);
size_t ks_store_count(ks_store *s, ks_kind k);

/* watch: events after rv, for one kind and namespace (NULL: all) */
typedef struct ks_watch ks_watch;
int ks_watch_open(ks_store *s, const ks_request *r, ks_watch **out, ks_result *err);
/* appends whole event lines to b; waits up to wait_ms for one; -1 when the
 * watch must end (too old), 0 otherwise */
int ks_watch_next(ks_watch *w, ks_buf *b, int wait_ms);
void ks_watch_close(ks_watch *w);
/* appends a BOOKMARK (only metadata.resourceVersion, where the watch has got
 * to) when the watch asked for bookmarks and is caught up; 1 if it did */
int ks_watch_bookmark(ks_watch *w, ks_buf *b);
/* wakes every watcher (shutdown) */
void ks_store_wake_watchers(ks_store *s);

/* ---- faults.c ---- */

typedef struct {
    int latency_ms;
    int jitter_ms;
    double error_rate;
    double drop_rate;
    double drop_after_rate; /* applied, then the connection closed unanswered */
    double watch_drop_rate; /* per second of a watch stream: cut it (no end chunk) */
    int watch_end_after;    /* seconds; end every watch stream this early (0: off) */
    int retry_after;
    int error_codes[8];
    int n_error_codes;
} ks_faults;

#define KS_MAX_FAILNTH 32
typedef struct {
    char verb[16];
    long n;
    int code;  /* 0: drop the connection */
    int after; /* with code 0: do the request first, then drop (the answer is lost) */
    long seen;
    int fired;
} ks_failnth;

/*
 * One validator for the fault settings, whether they come from a flag or
 * from POST /_sim/faults: same names (latency-ms or latency_ms), same ranges,
 * same messages. *err receives what was wanted ("want seconds from 0 to
 * 3600"); the caller names the setting in front of it.
 */

/* no faults; retry_after 1, error_codes 429,500,503 */
void ks_faults_default(ks_faults *f);
/* what DELETE /_sim/faults turns off: latency, jitter and the rates */
void ks_faults_clear(ks_faults *f);
/* sets one setting from a flag's text (name: "latency-ms", "error-codes",
 * ...); continue-ttl goes to *ttl. 0, or -1 with *err */
int ks_faults_set_text(ks_faults *f, int *ttl, const char *name, const char *value, char **err);
/* applies a POST /_sim/faults body: only the settings it names change, all
 * or none; fail_nth replaces fn[0..*nfn), continue_ttl goes to *ttl (left
 * alone when absent). 0, or -1 with *err, the setting named in it */
int ks_faults_apply_json(const char *body, size_t n, ks_faults *f, ks_failnth *fn, int *nfn,
                         int *ttl, char **err);
/* GET /_sim/faults: the settings, the rules with seen and fired, ttl */
cJSON *ks_faults_json(const ks_faults *f, const ks_failnth *fn, int nfn, int ttl);

/* ---- http.c ---- */

typedef struct ks_server ks_server;

typedef struct {
    const char *host;
    int port;
    const char *token;
    const char *tls_cert; /* PEM contents, not paths */
    const char *tls_key;
    const char *client_ca; /* PEM CA bundle: client certificates it signed authenticate */
    int verbose;
    ks_faults faults;
    ks_failnth failnth[KS_MAX_FAILNTH];
    int n_failnth;
} ks_config;

int ks_failnth_parse(const char *spec, ks_failnth *out, char **err);
ks_server *ks_server_start(const ks_config *cfg, ks_store *store, char **err);
int ks_server_port(ks_server *srv);
void ks_server_stop(ks_server *srv);

#endif
