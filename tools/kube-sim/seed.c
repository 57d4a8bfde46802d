/*
 * Seed and dump: loading objects at start (--seed) or by POST /_sim/seed,
 * and GET /_sim/state's view of every current object.
 */
#include "store_internal.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ks_store_seed(ks_store *s, const char *json, size_t n, char **err)
{
    int count = 0;
    char *gerr = ks_go_json_error(json, n);
    if (gerr) {
        *err = gerr;
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(json, n);
    cJSON *items = cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "items");
    if (!cJSON_IsArray(items)) {
        *err = ks_xstrdup("seed: want a PodList or a JSON array of pods");
        cJSON_Delete(root);
        return -1;
    }
    pthread_rwlock_wrlock(&s->lock);
    cJSON *it;
    while ((it = items->child) != NULL) {
        ks_result res = {0};
        cJSON *obj = cJSON_DetachItemViaPointer(items, it);
        const char *kind = ks_jstr(obj, "kind");
        ks_kind k = (kind && !strcmp(kind, "Lease")) ? KS_LEASE : KS_POD;
        const char *ns = ks_jstr(ks_jobj(obj, "metadata"), "namespace");
        char *nsd = ks_xstrdup(ns && *ns ? ns : "default");
        if (st_prepare_new(k, nsd, obj, 0, &res)) {
            char msg[800];
            snprintf(msg, sizeof msg, "seed: item %d: %s", count, res.body);
            *err = ks_xstrdup(msg);
            free(res.body);
            free(nsd);
            cJSON_Delete(obj);
            count = -1;
            break;
        }
        char *nm = ks_xstrdup(ks_jstr(ks_jobj(obj, "metadata"), "name"));
        st_put(s, k, nsd, nm, obj);
        free(nm);
        free(nsd);
        cJSON_Delete(obj);
        count++;
    }
    pthread_rwlock_unlock(&s->lock);
    cJSON_Delete(root);
    /* the parsed seed is garbage now, and main() turned automatic trimming
     * off: give it back once */
    malloc_trim(0);
    return count;
}

char *ks_store_dump(ks_store *s)
{
    ks_buf b = {0};
    pthread_rwlock_rdlock(&s->lock);
    ks_buf_addf(&b, "{\"resourceVersion\":\"%" PRIu64 "\"", s->rv);
    for (int k = 0; k < KS_NKINDS; k++) {
        ks_buf_addf(&b, ",\"%s\":[", ks_resources[k].plural);
        int first = 1;
        for (size_t i = 0; i < s->idx[k].n; i++) {
            const ver *v = st_current(s->idx[k].v[i]);
            if (!v)
                continue;
            if (!first)
                ks_buf_adds(&b, ",");
            char *f = st_full_json((ks_kind)k, v->item, v->item_len);
            ks_buf_adds(&b, f);
            free(f);
            first = 0;
        }
        ks_buf_adds(&b, "]");
    }
    pthread_rwlock_unlock(&s->lock);
    ks_buf_adds(&b, "}");
    return ks_buf_take(&b);
}
