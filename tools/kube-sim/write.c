/*
 * The writes: create (POST), update (PUT) and patch (JSON Patch, merge patch,
 * strategic merge patch), with the apiserver's rules for them: optimistic
 * concurrency on resourceVersion, server-owned metadata, the status
 * subresource, no new finalizers once deletion started, no-op updates that
 * write nothing, dry runs.
 */
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ks_store_create(ks_store *s, const ks_request *r, ks_result *out)
{
    cJSON *obj = st_parse_body(r, out, "");
    if (!obj)
        return;
    pthread_rwlock_wrlock(&s->lock);
    if (st_prepare_new(r->kind, r->ns, obj, 1, out))
        goto out;
    const char *name = ks_jstr(ks_jobj(obj, "metadata"), "name");
    if (st_current(st_find(s, r->kind, r->ns, name))) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s \"%s\" already exists", ks_resources[r->kind].qualified,
                 name);
        ks_details d = {name, ks_resources[r->kind].group, ks_resources[r->kind].plural, NULL};
        st_res_status(out, 409, "AlreadyExists", msg, &d);
        goto out;
    }
    if (r->dry_run) {
        st_set_rv(obj, s->rv);
        char *item = cJSON_PrintUnformatted(obj);
        out->code = 201;
        out->body = st_full_json(r->kind, item, strlen(item));
        free(item);
        goto out;
    }
    char *nm = ks_xstrdup(name);
    const ver *v = st_put(s, r->kind, r->ns, nm, obj);
    free(nm);
    st_res_obj(out, 201, r->kind, v);
    out->effect = KS_EFFECT_MUTATED;
out:
    pthread_rwlock_unlock(&s->lock);
    cJSON_Delete(obj);
}

/* what an update may not change or must carry: the resourceVersion it read
 * (crv, required for a conditional lease update), the name, the namespace;
 * 0, or -1 with the error in out */
static int check_update(const ks_request *r, const entry *e, const char *name, cJSON *nmeta,
                        const char *crv, int conditional, ks_result *out)
{
    const char *nrv = ks_jstr(nmeta, "resourceVersion");
    if (nrv && *nrv && strcmp(nrv, crv)) {
        st_res_conflict(out, r->kind, name);
        return -1;
    }
    if ((!nrv || !*nrv) && conditional && r->kind == KS_LEASE) {
        st_res_invalid(out, r->kind, name, "metadata.resourceVersion", "FieldValueInvalid",
                       "Invalid value: 0x0: must be specified for an update", 1);
        return -1;
    }
    const char *nname = ks_jstr(nmeta, "name");
    if (nname && strcmp(nname, name)) {
        char msg[700];
        snprintf(msg, sizeof msg,
                 "the name of the object (%s) does not match the name on the URL (%s)", nname,
                 name);
        st_res_bad(out, msg);
        return -1;
    }
    const char *nns = ks_jstr(nmeta, "namespace");
    if (nns && *nns && strncmp(nns, e->key, e->ns_len)) {
        st_res_bad(out, "the namespace of the provided object does not match the namespace sent "
                        "on the request");
        return -1;
    }
    return 0;
}

/* the object an update stores: for the status subresource, cur with next's
 * status; otherwise next (taken: *next becomes NULL) with cur's server-owned
 * metadata, and a pod's status kept */
static cJSON *updated_object(const ks_request *r, cJSON *cur, cJSON **next)
{
    if (r->status_sub) {
        cJSON *res = cJSON_Duplicate(cur, 1);
        cJSON *st = cJSON_GetObjectItemCaseSensitive(*next, "status");
        if (st)
            ks_jset(res, "status", cJSON_DetachItemViaPointer(*next, st));
        return res;
    }
    cJSON *res = *next;
    *next = NULL;
    cJSON *rmeta = ks_jobj(res, "metadata");
    cJSON *cmeta = ks_jobj(cur, "metadata");
    static const char *const owned[] = {"name",
                                        "namespace",
                                        "uid",
                                        "creationTimestamp",
                                        "deletionTimestamp",
                                        "deletionGracePeriodSeconds",
                                        NULL};
    for (int i = 0; owned[i]; i++) {
        cJSON *cv = cJSON_GetObjectItemCaseSensitive(cmeta, owned[i]);
        cJSON_DeleteItemFromObjectCaseSensitive(rmeta, owned[i]);
        if (cv)
            cJSON_AddItemToObject(rmeta, owned[i], cJSON_Duplicate(cv, 1));
    }
    if (r->kind == KS_POD) {
        cJSON *cst = cJSON_GetObjectItemCaseSensitive(cur, "status");
        cJSON_DeleteItemFromObjectCaseSensitive(res, "status");
        if (cst)
            cJSON_AddItemToObject(res, "status", cJSON_Duplicate(cst, 1));
    }
    return res;
}

/* once deletion started, res may not add finalizers cur does not have; 0, or
 * -1 with the 422 in out */
static int check_finalizers(const ks_request *r, const char *name, cJSON *res, cJSON *cur,
                            ks_result *out)
{
    cJSON *nf = cJSON_GetObjectItemCaseSensitive(ks_jobj(res, "metadata"), "finalizers");
    cJSON *of = cJSON_GetObjectItemCaseSensitive(ks_jobj(cur, "metadata"), "finalizers");
    ks_buf added = {0};
    cJSON *f;
    int nadded = 0;
    cJSON_ArrayForEach(f, nf)
    {
        int found = 0;
        cJSON *o;
        cJSON_ArrayForEach(o, of) found |= cJSON_Compare(o, f, 1);
        if (!found && cJSON_IsString(f)) {
            ks_buf_addf(&added, "%s\"%s\"", nadded ? ", " : "", f->valuestring);
            nadded++;
        }
    }
    if (nadded) {
        char detail[1200];
        snprintf(detail, sizeof detail,
                 "Forbidden: no new finalizers can be added if the object is being deleted, "
                 "found new finalizers []string{%s}",
                 added.buf);
        ks_buf_free(&added);
        st_res_invalid(out, r->kind, name, "metadata.finalizers", "FieldValueForbidden", detail, 2);
        return -1;
    }
    ks_buf_free(&added);
    return 0;
}

/* the shared tail of PUT and PATCH: e is current; next is the object the
 * client wants (item or full form); consumed */
static void apply_update(ks_store *s, const ks_request *r, entry *e, cJSON *next, int conditional,
                         ks_result *out)
{
    const ver *curv = st_current(e);
    cJSON *cur = st_ver_obj(curv);
    cJSON *res = NULL;
    const char *name = e->key + e->ns_len + 1;
    st_strip_kind(next);
    const char *crv = ks_jstr(ks_jobj(cur, "metadata"), "resourceVersion");
    if (check_update(r, e, name, ks_jobj(next, "metadata"), crv, conditional, out))
        goto out;
    res = updated_object(r, cur, &next);
    ks_jset_str(ks_jobj(res, "metadata"), "resourceVersion", crv);
    if (st_has_deletion(cur) && check_finalizers(r, name, res, cur, out))
        goto out;
    st_normalize(res);
    if (cJSON_Compare(res, cur, 1)) {
        /* a no-op update writes nothing and keeps the resourceVersion */
        st_res_obj(out, 200, r->kind, curv);
        goto out;
    }
    if (r->dry_run) {
        char *item = cJSON_PrintUnformatted(res);
        out->code = 200;
        out->body = st_full_json(r->kind, item, strlen(item));
        free(item);
        goto out;
    }
    if (r->kind == KS_POD && st_has_deletion(res) && st_grace_of(res) == 0 &&
        st_finalizer_count(res) == 0) {
        st_remove_now(s, r->kind, e, res, strtoull(crv, NULL, 10), out);
        goto out;
    }
    char *ns = ks_xstrndup(e->key, e->ns_len);
    char *nm = ks_xstrdup(name);
    const ver *v = st_put(s, r->kind, ns, nm, res);
    free(ns);
    free(nm);
    st_res_obj(out, 200, r->kind, v);
    out->effect = KS_EFFECT_MUTATED;
out:
    cJSON_Delete(cur);
    cJSON_Delete(res);
    cJSON_Delete(next);
}

void ks_store_update(ks_store *s, const ks_request *r, ks_result *out)
{
    cJSON *obj = st_parse_body(r, out, "");
    if (!obj)
        return;
    pthread_rwlock_wrlock(&s->lock);
    entry *e = st_find(s, r->kind, r->ns, r->name);
    if (!st_current(e)) {
        st_res_not_found(out, r->kind, r->name);
        cJSON_Delete(obj);
    } else {
        apply_update(s, r, e, obj, 1, out);
    }
    pthread_rwlock_unlock(&s->lock);
}

typedef int (*patch_fn)(cJSON **doc, const char *patch, size_t n, char **err);

/* the patch function for a Content-Type (parameters ignored), NULL if none */
static patch_fn patch_of(const char *content_type)
{
    char ct[128] = "";
    snprintf(ct, sizeof ct, "%s", content_type ? content_type : "");
    char *semi = strchr(ct, ';');
    if (semi)
        *semi = '\0';
    for (char *p = ct + strlen(ct); p > ct && (p[-1] == ' ' || p[-1] == '\t'); p--)
        p[-1] = '\0';
    if (!strcmp(ct, "application/json-patch+json"))
        return ks_json_patch;
    if (!strcmp(ct, "application/merge-patch+json"))
        return ks_merge_patch;
    if (!strcmp(ct, "application/strategic-merge-patch+json"))
        return ks_strategic_patch;
    return NULL;
}

void ks_store_patch(ks_store *s, const ks_request *r, ks_result *out)
{
    char *err = NULL;
    patch_fn patch = patch_of(r->content_type);
    if (!patch) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "the body of the request was in an unknown format - accepted media types "
                 "include: application/json-patch+json, application/merge-patch+json, "
                 "application/apply-patch+yaml, application/strategic-merge-patch+json");
        st_res_status(out, 415, "UnsupportedMediaType", msg, NULL);
        return;
    }
    pthread_rwlock_wrlock(&s->lock);
    entry *e = st_find(s, r->kind, r->ns, r->name);
    const ver *cv = st_current(e);
    if (!cv) {
        st_res_not_found(out, r->kind, r->name);
        goto out;
    }
    cJSON *doc = st_full_obj(r->kind, cv);
    int rc = patch(&doc, r->body ? r->body : "", r->body_len, &err);
    if (rc == KS_PATCH_BAD) {
        st_res_bad(out, err);
        cJSON_Delete(doc);
        goto out;
    }
    if (rc == KS_PATCH_FAILED) {
        ks_details d = {0};
        st_res_status(out, 422, "Invalid",
                      "the server rejected our request due to an error in our request", &d);
        cJSON_Delete(doc);
        goto out;
    }
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        st_res_bad(out, "json: cannot unmarshal into Go value of type struct");
        goto out;
    }
    apply_update(s, r, e, doc, 0, out);
out:
    pthread_rwlock_unlock(&s->lock);
    free(err);
}
