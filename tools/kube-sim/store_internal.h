/*
 * store_internal.h - what the pieces of kube-sim's object store share. sim.h
 * stays the module's header (ks_store_* and ks_watch_* are its API); this one
 * is for the store's own files:
 *
 *   store.c   versions (MVCC), the sorted index, the two writes every verb ends
 *             in (st_put, st_remove), lifecycle
 *   token.c   continue tokens, and the compaction they hold back
 *   watch.c   the watch event ring and watch streams
 *   object.c  incoming objects (body, validation, defaults) and Status answers
 *   read.c    get and list (selectors, pages)
 *   write.c   create, update, patch
 *   delete.c  DELETE, graceful deletion and finalizers, the kubelet's part
 *   table.c   server-side printing (meta.k8s.io/v1 Table, for kubectl get)
 *   seed.c    seed and dump
 *
 * Layout: per kind, an array of entries sorted by "namespace/name" (the order
 * etcd lists keys in). Each entry holds a chain of immutable versions, newest
 * first; a version is visible at resourceVersion R when rv_from <= R < rv_to
 * (rv_to 0: still current). A deleted object keeps its last version with rv_to
 * set. That is enough MVCC for continue tokens: every page of a list is read at
 * the first page's resourceVersion, like etcd.
 *
 * Each version keeps its JSON serialized (as a list item: no kind/apiVersion)
 * plus the labels and selectable fields unpacked, so a list of 100,000 pods with
 * a selector is a scan of small structs and a copy of ready-made strings.
 *
 * Locking: one rwlock for the store (lists and gets share it; writes take it
 * exclusively); the token table and the watch event ring have their own
 * mutexes, always taken after the store lock. Functions below that touch the
 * index expect the store lock held (exclusively when they write).
 *
 * Names: st_ for what the store's files share; everything else is static.
 */
#ifndef KUBE_SIM_STORE_INTERNAL_H
#define KUBE_SIM_STORE_INTERNAL_H

#include "sim.h"

/* the selectable fields of a pod (a lease has the first two) */
enum {
    F_NAME,
    F_NAMESPACE,
    F_NODENAME,
    F_RESTARTPOLICY,
    F_SCHEDULERNAME,
    F_SERVICEACCOUNT,
    F_PHASE,
    F_PODIP,
    F_NOMINATED,
    F_COUNT
};

/* their names, NULL-terminated, for ks_fieldsel_parse */
extern const char *const st_pod_fields[];
extern const char *const st_lease_fields[];

/* superseded versions kept for live tokens before a full compaction */
#define MAX_HISTORY 300000
/* watch events kept; a watcher further behind gets 410 Expired */
#define EVENT_RING 8192

typedef struct ver {
    struct ver *older;
    uint64_t rv_from, rv_to;
    char *item;
    size_t item_len;
    ks_labels labels;
    char *fv[F_COUNT];
} ver;

typedef struct {
    char *key; /* namespace/name */
    size_t ns_len;
    ver *head;
} entry;

typedef struct {
    entry **v;
    size_t n, cap;
} kindex;

typedef struct {
    uint64_t rv;
    int64_t ms;
} live_token;

/* a pod whose graceful deletion period ends at deadline_ms */
typedef struct {
    ks_kind kind;
    char *key;
    int64_t deadline_ms;
} pending;

typedef struct {
    uint64_t rv;
    ks_kind kind;
    char *ns;
    char *line;              /* {"type":...,"object":...}\n */
    size_t obj_off, obj_len; /* the object inside line */
    const char *type;
    ks_labels labels;
    char *fv[F_COUNT];
} event;

struct ks_store {
    pthread_rwlock_t lock;
    uint64_t rv;
    kindex idx[KS_NKINDS];
    size_t history;

    pthread_mutex_t tok_mu;
    live_token *toks;
    size_t ntoks, captoks;
    int ttl_s;
    uint64_t floor;
    uint64_t last_w; /* watermark of the last full compaction */

    pending *pend;
    size_t npend, cappend;

    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cond;
    event ring[EVENT_RING];
    uint64_t ev_head; /* number of events ever appended */
    int stopping;
};

/* ---- store.c: versions ---- */

/* ks_jstr of o.a.b */
const char *st_path_str(const cJSON *o, const char *a, const char *b);
/* a JSON number as a long, clamped (a cast of an out-of-range double is UB) */
long st_jlong(const cJSON *v, long lo, long hi, long dflt);
void st_ver_free(ver *v);
void st_set_rv(cJSON *obj, uint64_t rv);
/* the apiserver's field order, no empty lists or maps in metadata */
void st_normalize(cJSON *obj);
/* a version's object, parsed (item form); the caller deletes it */
cJSON *st_ver_obj(const ver *v);
/* pre + the item with kind and apiVersion first + post, in one allocation of
 * its exact size; *obj_off and *obj_len (either may be NULL) locate the object */
char *st_wrap_item(ks_kind k, const char *pre, const char *item, size_t len, const char *post,
                   size_t *obj_off, size_t *obj_len);
/* the object as a single resource: kind and apiVersion first */
char *st_full_json(ks_kind k, const char *item, size_t len);
/* the tree st_full_json() would parse to; the caller deletes it */
cJSON *st_full_obj(ks_kind k, const ver *v);

static inline const ver *st_ver_at(const entry *e, uint64_t at)
{
    for (const ver *v = e->head; v; v = v->older)
        if (v->rv_from <= at && (v->rv_to == 0 || v->rv_to > at))
            return v;
    return NULL;
}

/* e's current version, NULL when e is NULL or deleted */
static inline const ver *st_current(const entry *e)
{
    return (e && e->head && e->head->rv_to == 0) ? e->head : NULL;
}

/* what a field selector reads: the entry for the name, the version for the rest */
typedef struct {
    const entry *e;
    const ver *v;
} st_fctx;
const char *st_field_get(const void *p, const char *field);

/* ---- store.c: index ---- */

size_t st_lower_bound(const kindex *ix, const char *key);
entry *st_find(ks_store *s, ks_kind k, const char *ns, const char *name);
void st_entry_free(entry *e);

/* ---- store.c: writes (store lock held exclusively) ---- */

/* stores obj (item form, not consumed) as the new current version; returns it */
const ver *st_put(ks_store *s, ks_kind k, const char *ns, const char *name, cJSON *obj);
/* removes e's current version; returns the final object (full JSON). A
 * nonzero body_rv is the resourceVersion the answer carries. e may be freed. */
char *st_remove(ks_store *s, ks_kind k, entry *e, cJSON *final, uint64_t body_rv);

/* ---- token.c ---- */

/* after a write to e: frees versions nobody needs; e may be freed */
void st_after_write(ks_store *s, ks_kind k, entry *e);
/* frees history that tokens expired since the last call let go */
void st_compact_expired(ks_store *s);
/* a list handed out a token at rv: keep what it reads for the TTL */
void st_register_token(ks_store *s, uint64_t rv);
int st_token_live(ks_store *s, uint64_t rv);
char *st_encode_token(int64_t rv, const char *start);
/* 0 ok; else *err is the message after "invalid continue token: " */
int st_decode_token(const char *tok, int64_t *rv, char **start, char **err);
/* 410 Expired for a token that is no longer live, with a fresh "rv":-1 token */
void st_res_token_expired(ks_result *out, const char *start);

/* ---- watch.c ---- */

/* appends an event to the ring; v's labels and fields are copied, or taken
 * over when steal is set (v is a throwaway then) */
void st_emit(ks_store *s, ks_kind k, const entry *e, const char *type, const char *item, size_t len,
             ver *v, int steal);
void st_ring_free(ks_store *s);

/* ---- object.c ---- */

void st_res_status(ks_result *out, int code, const char *reason, const char *msg,
                   const ks_details *d);
void st_res_not_found(ks_result *out, ks_kind k, const char *name);
void st_res_conflict(ks_result *out, ks_kind k, const char *name);
void st_res_bad(ks_result *out, const char *msg);
/* 422 Invalid with repeat causes for field (the apiserver's field.ErrorList) */
void st_res_invalid(ks_result *out, ks_kind k, const char *name, const char *field,
                    const char *reason, const char *detail, int repeat);
void st_res_obj(ks_result *out, int code, ks_kind k, const ver *v);
void st_strip_kind(cJSON *obj);
/* the request body as a JSON object; NULL with a 400 in out, its message
 * after prefix */
cJSON *st_parse_body(const ks_request *r, ks_result *out, const char *prefix);
/* fills server-owned metadata of a new object (reset_status: as a create
 * does; a seed keeps status, uid and timestamps); 0 or an error in out */
int st_prepare_new(ks_kind k, const char *ns, cJSON *obj, int reset_status, ks_result *out);

/* ---- delete.c ---- */

int st_has_deletion(const cJSON *obj);
/* metadata.deletionGracePeriodSeconds, -1 when absent */
long st_grace_of(const cJSON *obj);
int st_finalizer_count(const cJSON *obj);
/* removes e's current version now and answers 200 with the final object */
void st_remove_now(ks_store *s, ks_kind k, entry *e, cJSON *final, uint64_t body_rv,
                   ks_result *out);

/* ---- table.c ---- */

/* the columnDefinitions of kind k, a JSON array */
const char *st_table_columns(ks_kind k);
/* one row (cells + PartialObjectMetadata) of the object json, ages at now */
void st_table_row(ks_buf *b, ks_kind k, const char *json, size_t len, int64_t now);
/* a whole one-row Table at resourceVersion rv */
void st_table_add(ks_buf *b, ks_kind k, const char *json, size_t len, uint64_t rv);

#endif
