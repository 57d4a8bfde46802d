/*
 * The core of kube-sim's object store: versions (the MVCC chain of each
 * object), the sorted index, the two writes every verb ends in, and the
 * store's lifecycle. store_internal.h describes the layout and the locking,
 * and which file holds the rest.
 */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const ks_resource ks_resources[KS_NKINDS] = {
    {KS_POD, "pods", "", "Pod", "v1", "pods"},
    {KS_LEASE, "leases", "coordination.k8s.io", "Lease", "coordination.k8s.io/v1",
     "leases.coordination.k8s.io"},
};

const char *const st_pod_fields[] = {
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
    NULL,
};
const char *const st_lease_fields[] = {"metadata.name", "metadata.namespace", NULL};

/* ---- versions ---- */

static void labels_pack(const cJSON *labels, ks_labels *out)
{
    ks_buf b = {0};
    int n = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, labels)
    {
        if (!cJSON_IsString(l))
            continue;
        ks_buf_add(&b, l->string, strlen(l->string) + 1);
        ks_buf_add(&b, l->valuestring, strlen(l->valuestring) + 1);
        n++;
    }
    out->n = n;
    out->packed = n ? ks_buf_take(&b) : NULL;
    ks_buf_free(&b);
}

const char *st_path_str(const cJSON *o, const char *a, const char *b)
{
    return ks_jstr(cJSON_GetObjectItemCaseSensitive(o, a), b);
}

long st_jlong(const cJSON *v, long lo, long hi, long dflt)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != v->valuedouble)
        return dflt;
    if (v->valuedouble < (double)lo)
        return lo;
    if (v->valuedouble > (double)hi)
        return hi;
    return (long)v->valuedouble;
}

static void fields_extract(const cJSON *obj, char **fv)
{
    static const char *paths[F_COUNT][2] = {
        {"metadata", "name"},      {"metadata", "namespace"}, {"spec", "nodeName"},
        {"spec", "restartPolicy"}, {"spec", "schedulerName"}, {"spec", "serviceAccountName"},
        {"status", "phase"},       {"status", "podIP"},       {"status", "nominatedNodeName"},
    };
    for (int i = 0; i < F_COUNT; i++) {
        const char *v = st_path_str(obj, paths[i][0], paths[i][1]);
        fv[i] = v ? ks_xstrdup(v) : NULL;
    }
}

const char *st_field_get(const void *p, const char *field)
{
    const st_fctx *c = p;
    for (int i = 0; st_pod_fields[i]; i++) {
        if (strcmp(st_pod_fields[i], field))
            continue;
        if (i == F_NAME)
            return c->e->key + c->e->ns_len + 1;
        if (i == F_NAMESPACE)
            return c->v->fv[F_NAMESPACE];
        return c->v->fv[i];
    }
    return NULL;
}

void st_ver_free(ver *v)
{
    if (!v)
        return;
    free(v->item);
    free((char *)v->labels.packed);
    for (int i = 0; i < F_COUNT; i++)
        free(v->fv[i]);
    free(v);
}

static const char *const top_order[] = {"kind", "apiVersion", "metadata", "spec", "status", NULL};
static const char *const meta_order[] = {"name",
                                         "generateName",
                                         "namespace",
                                         "selfLink",
                                         "uid",
                                         "resourceVersion",
                                         "generation",
                                         "creationTimestamp",
                                         "deletionTimestamp",
                                         "deletionGracePeriodSeconds",
                                         "labels",
                                         "annotations",
                                         "ownerReferences",
                                         "finalizers",
                                         "managedFields",
                                         NULL};

void st_set_rv(cJSON *obj, uint64_t rv)
{
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, rv);
    ks_jset_str(ks_jobj(obj, "metadata"), "resourceVersion", b);
}

/* Go omits empty lists and maps in metadata (omitempty), so an emptied
 * finalizer list reads as absent */
void st_normalize(cJSON *obj)
{
    static const char *const omit_empty[] = {"finalizers", "labels", "annotations",
                                             "ownerReferences", NULL};
    cJSON *meta = ks_jobj(obj, "metadata");
    for (int i = 0; omit_empty[i]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, omit_empty[i]);
        if (v && ((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child))
            cJSON_DeleteItemFromObjectCaseSensitive(meta, omit_empty[i]);
        else if (cJSON_IsNull(v))
            cJSON_DeleteItemFromObjectCaseSensitive(meta, omit_empty[i]);
    }
    ks_reorder(obj, top_order);
    ks_reorder(meta, meta_order);
}

/* obj at rv, normalized; v's labels and fields from it, v->item left alone */
static void ver_prepare(ver *v, cJSON *obj, uint64_t rv)
{
    st_set_rv(obj, rv);
    st_normalize(obj);
    v->rv_from = rv;
    labels_pack(cJSON_GetObjectItemCaseSensitive(ks_jobj(obj, "metadata"), "labels"), &v->labels);
    fields_extract(obj, v->fv);
}

/* obj: item form (no kind/apiVersion); not consumed */
static ver *ver_new(cJSON *obj, uint64_t rv)
{
    ver *v = calloc(1, sizeof *v);
    if (!v)
        abort();
    ver_prepare(v, obj, rv);
    size_t n;
    const char *item = ks_print_scratch(obj, &n);
    v->item = ks_xstrndup(item, n);
    v->item_len = n;
    return v;
}

cJSON *st_ver_obj(const ver *v)
{
    cJSON *o = cJSON_ParseWithLength(v->item, v->item_len);
    if (!o)
        abort();
    return o;
}

/* no doubling: objects are a few KB, and a request allocates several */
char *st_wrap_item(ks_kind k, const char *pre, const char *item, size_t len, const char *post,
                   size_t *obj_off, size_t *obj_len)
{
    char head[160];
    size_t plen = strlen(pre), tlen = strlen(post);
    int h = snprintf(head, sizeof head, "{\"kind\":\"%s\",\"apiVersion\":\"%s\",",
                     ks_resources[k].kind_name, ks_resources[k].api_version);
    size_t hlen = (size_t)h;
    char *out = ks_xmalloc(plen + hlen + len - 1 + tlen + 1);
    char *p = out;
    memcpy(p, pre, plen);
    p += plen;
    memcpy(p, head, hlen);
    p += hlen;
    memcpy(p, item + 1, len - 1);
    p += len - 1;
    memcpy(p, post, tlen + 1);
    if (obj_off)
        *obj_off = plen;
    if (obj_len)
        *obj_len = hlen + len - 1;
    return out;
}

char *st_full_json(ks_kind k, const char *item, size_t len)
{
    return st_wrap_item(k, "", item, len, "", NULL, NULL);
}

static void prepend_str(cJSON *o, const char *key, const char *val)
{
    cJSON *it = cJSON_CreateString(val);
    if (!it)
        abort();
    cJSON_AddItemToObject(o, key, it);
    cJSON_DetachItemViaPointer(o, it);
    cJSON_InsertItemInArray(o, 0, it);
}

/* without printing and parsing the JSON */
cJSON *st_full_obj(ks_kind k, const ver *v)
{
    cJSON *o = st_ver_obj(v);
    prepend_str(o, "apiVersion", ks_resources[k].api_version);
    prepend_str(o, "kind", ks_resources[k].kind_name);
    return o;
}

/* ---- index ---- */

size_t st_lower_bound(const kindex *ix, const char *key)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(ix->v[mid]->key, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

entry *st_find(ks_store *s, ks_kind k, const char *ns, const char *name)
{
    char key[1024];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    kindex *ix = &s->idx[k];
    size_t i = st_lower_bound(ix, key);
    return (i < ix->n && !strcmp(ix->v[i]->key, key)) ? ix->v[i] : NULL;
}

static entry *find_or_add(ks_store *s, ks_kind k, const char *ns, const char *name)
{
    char key[1024];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    kindex *ix = &s->idx[k];
    size_t i = st_lower_bound(ix, key);
    if (i < ix->n && !strcmp(ix->v[i]->key, key))
        return ix->v[i];
    if (ix->n == ix->cap) {
        ix->cap = ix->cap ? ix->cap * 2 : 1024;
        ix->v = ks_xrealloc(ix->v, sizeof(entry *) * ix->cap);
    }
    memmove(ix->v + i + 1, ix->v + i, sizeof(entry *) * (ix->n - i));
    entry *e = calloc(1, sizeof *e);
    if (!e)
        abort();
    e->key = ks_xstrdup(key);
    e->ns_len = strlen(ns);
    ix->v[i] = e;
    ix->n++;
    return e;
}

void st_entry_free(entry *e)
{
    ver *v = e->head;
    while (v) {
        ver *o = v->older;
        st_ver_free(v);
        v = o;
    }
    free(e->key);
    free(e);
}

/* ---- writes (store lock held exclusively) ---- */

const ver *st_put(ks_store *s, ks_kind k, const char *ns, const char *name, cJSON *obj)
{
    entry *e = find_or_add(s, k, ns, name);
    int was_live = st_current(e) != NULL;
    ver *v = ver_new(obj, ++s->rv);
    if (e->head && e->head->rv_to == 0) {
        e->head->rv_to = v->rv_from;
        s->history++;
    }
    v->older = e->head;
    e->head = v;
    st_emit(s, k, e, was_live ? "MODIFIED" : "ADDED", v->item, v->item_len, v, 0);
    st_after_write(s, k, e);
    return v;
}

char *st_remove(ks_store *s, ks_kind k, entry *e, cJSON *final, uint64_t body_rv)
{
    /* the last version only feeds the DELETED event: printed in the scratch
     * buffer, its labels and fields handed to the event */
    ver last = {0};
    ver_prepare(&last, final, ++s->rv);
    size_t len;
    const char *item = ks_print_scratch(final, &len);
    st_emit(s, k, e, "DELETED", item, len, &last, 1);
    char *body;
    if (body_rv) {
        /* an update that empties the finalizers deletes instead of writing:
         * the answer carries the last stored resourceVersion */
        st_set_rv(final, body_rv);
        item = ks_print_scratch(final, &len);
    }
    body = st_full_json(k, item, len);
    e->head->rv_to = s->rv;
    s->history++;
    st_after_write(s, k, e);
    return body;
}

/* ---- lifecycle ---- */

ks_store *ks_store_new(void)
{
    ks_store *s = calloc(1, sizeof *s);
    if (!s)
        abort();
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&s->tok_mu, NULL);
    pthread_mutex_init(&s->ev_mu, NULL);
    pthread_cond_init(&s->ev_cond, NULL);
    s->ttl_s = 300;
    s->rv = 1;
    return s;
}

static void clear(ks_store *s)
{
    for (int k = 0; k < KS_NKINDS; k++) {
        for (size_t i = 0; i < s->idx[k].n; i++)
            st_entry_free(s->idx[k].v[i]);
        s->idx[k].n = 0;
    }
    for (size_t i = 0; i < s->npend; i++)
        free(s->pend[i].key);
    s->npend = 0;
    s->history = 0;
    pthread_mutex_lock(&s->tok_mu);
    s->ntoks = 0;
    pthread_mutex_unlock(&s->tok_mu);
    s->floor = s->rv;
}

void ks_store_reset(ks_store *s)
{
    pthread_rwlock_wrlock(&s->lock);
    clear(s);
    s->rv++;
    s->floor = s->rv;
    pthread_rwlock_unlock(&s->lock);
}

void ks_store_free(ks_store *s)
{
    if (!s)
        return;
    clear(s);
    for (int k = 0; k < KS_NKINDS; k++)
        free(s->idx[k].v);
    st_ring_free(s);
    free(s->toks);
    free(s->pend);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->tok_mu);
    pthread_mutex_destroy(&s->ev_mu);
    pthread_cond_destroy(&s->ev_cond);
    free(s);
}

uint64_t ks_store_rv(ks_store *s)
{
    pthread_rwlock_rdlock(&s->lock);
    uint64_t rv = s->rv;
    pthread_rwlock_unlock(&s->lock);
    return rv;
}

size_t ks_store_count(ks_store *s, ks_kind k)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = 0; i < s->idx[k].n; i++)
        n += st_current(s->idx[k].v[i]) != NULL;
    pthread_rwlock_unlock(&s->lock);
    return n;
}
