/*
 * The three patch types the apiserver accepts for pods and leases:
 * JSON Patch (RFC 6902), JSON merge patch (RFC 7386), and strategic merge
 * patch (merge patch plus per-field list strategies and the $patch /
 * $deleteFromPrimitiveList / $setElementOrder directives). Error classes follow
 * the apiserver: an undecodable patch is 400, a patch that does not apply
 * (failed test, missing path) is 422.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *parse_patch(const char *patch, size_t n, char **err)
{
    char *gerr = ks_go_json_error(patch, n);
    if (gerr) {
        *err = gerr;
        return NULL;
    }
    cJSON *p = cJSON_ParseWithLength(patch, n);
    if (!p)
        *err = ks_xstrdup("unexpected end of JSON input");
    return p;
}

/* ---- JSON Patch ---- */

static char *unescape_token(const char *s, size_t n)
{
    ks_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~' && i + 1 < n && (s[i + 1] == '0' || s[i + 1] == '1')) {
            ks_buf_add(&b, s[i + 1] == '0' ? "~" : "/", 1);
            i++;
        } else {
            ks_buf_add(&b, s + i, 1);
        }
    }
    return ks_buf_take(&b);
}

static int parse_index(const char *tok, int max, int *out)
{
    if (!*tok || (tok[0] == '0' && tok[1]))
        return -1;
    long v = 0;
    for (const char *p = tok; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
        if (v > 100000000)
            return -1;
    }
    if (v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* finds the parent container of path and the last (unescaped) token */
static int resolve(cJSON *doc, const char *path, cJSON **parent, char **last)
{
    *parent = NULL;
    *last = NULL;
    if (!path || path[0] != '/')
        return -1;
    cJSON *cur = doc;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char *tok = unescape_token(p, len);
        if (!slash) {
            *parent = cur;
            *last = tok;
            return 0;
        }
        cJSON *next = NULL;
        if (cJSON_IsObject(cur)) {
            next = cJSON_GetObjectItemCaseSensitive(cur, tok);
        } else if (cJSON_IsArray(cur)) {
            int idx;
            if (!parse_index(tok, cJSON_GetArraySize(cur) - 1, &idx))
                next = cJSON_GetArrayItem(cur, idx);
        }
        free(tok);
        if (!next)
            return -1;
        cur = next;
        p = slash + 1;
    }
}

static cJSON *get_path(cJSON *doc, const char *path)
{
    if (path && !*path)
        return doc;
    cJSON *parent;
    char *last;
    cJSON *v = NULL;
    if (resolve(doc, path, &parent, &last))
        return NULL;
    if (cJSON_IsObject(parent)) {
        v = cJSON_GetObjectItemCaseSensitive(parent, last);
    } else if (cJSON_IsArray(parent)) {
        int idx;
        if (!parse_index(last, cJSON_GetArraySize(parent) - 1, &idx))
            v = cJSON_GetArrayItem(parent, idx);
    }
    free(last);
    return v;
}

static int op_add(cJSON **doc, const char *path, cJSON *value)
{
    if (!*path) {
        cJSON_Delete(*doc);
        *doc = value;
        return 0;
    }
    cJSON *parent;
    char *last;
    int rc = -1;
    if (resolve(*doc, path, &parent, &last))
        goto out;
    if (cJSON_IsObject(parent)) {
        ks_jset(parent, last, value);
        value = NULL;
        rc = 0;
    } else if (cJSON_IsArray(parent)) {
        int n = cJSON_GetArraySize(parent), idx;
        if (!strcmp(last, "-")) {
            cJSON_AddItemToArray(parent, value);
            value = NULL;
            rc = 0;
        } else if (!parse_index(last, n, &idx)) {
            cJSON_InsertItemInArray(parent, idx, value);
            value = NULL;
            rc = 0;
        }
    }
out:
    free(last);
    cJSON_Delete(value);
    return rc;
}

static cJSON *op_detach(cJSON *doc, const char *path)
{
    cJSON *parent, *v = NULL;
    char *last;
    if (resolve(doc, path, &parent, &last))
        return NULL;
    if (cJSON_IsObject(parent)) {
        v = cJSON_DetachItemFromObjectCaseSensitive(parent, last);
    } else if (cJSON_IsArray(parent)) {
        int idx;
        if (!parse_index(last, cJSON_GetArraySize(parent) - 1, &idx))
            v = cJSON_DetachItemFromArray(parent, idx);
    }
    free(last);
    return v;
}

/* one operation of a JSON Patch: KS_PATCH_OK, or KS_PATCH_FAILED with *err */
static int apply_op(cJSON **doc, const cJSON *op, char **err)
{
    const char *kind = ks_jstr(op, "op");
    const char *path = ks_jstr(op, "path");
    const char *from = ks_jstr(op, "from");
    cJSON *value = cJSON_GetObjectItemCaseSensitive(op, "value");
    char msg[256];
    if (!kind) {
        *err = ks_xstrdup("Unexpected kind: unknown");
        return KS_PATCH_FAILED;
    }
    if (!path) {
        snprintf(msg, sizeof msg, "%s operation missing path", kind);
        *err = ks_xstrdup(msg);
        return KS_PATCH_FAILED;
    }
    if (!strcmp(kind, "add")) {
        if (!value || op_add(doc, path, cJSON_Duplicate(value, 1))) {
            snprintf(msg, sizeof msg, "add operation does not apply: doc is missing path: \"%s\"",
                     path);
            *err = ks_xstrdup(msg);
            return KS_PATCH_FAILED;
        }
    } else if (!strcmp(kind, "remove")) {
        cJSON *v = op_detach(*doc, path);
        if (!v) {
            snprintf(msg, sizeof msg,
                     "remove operation does not apply: doc is missing path: \"%s\"", path);
            *err = ks_xstrdup(msg);
            return KS_PATCH_FAILED;
        }
        cJSON_Delete(v);
    } else if (!strcmp(kind, "replace")) {
        cJSON *v = value ? op_detach(*doc, path) : NULL;
        if (!v && !(value && !*path)) {
            snprintf(msg, sizeof msg, "replace operation does not apply: doc is missing key: %s",
                     path);
            *err = ks_xstrdup(msg);
            return KS_PATCH_FAILED;
        }
        cJSON_Delete(v);
        op_add(doc, path, cJSON_Duplicate(value, 1));
    } else if (!strcmp(kind, "test")) {
        cJSON *v = get_path(*doc, path);
        int same = (!v && cJSON_IsNull(value)) || (v && value && cJSON_Compare(v, value, 1));
        if (!same) {
            snprintf(msg, sizeof msg, "testing value %s failed: test failed", path);
            *err = ks_xstrdup(msg);
            return KS_PATCH_FAILED;
        }
    } else if (!strcmp(kind, "move") || !strcmp(kind, "copy")) {
        cJSON *v = NULL;
        if (from)
            v = !strcmp(kind, "move") ? op_detach(*doc, from)
                                      : cJSON_Duplicate(get_path(*doc, from), 1);
        if (!v || op_add(doc, path, v)) {
            snprintf(msg, sizeof msg, "%s operation does not apply: doc is missing from path: %s",
                     kind, from ? from : "");
            *err = ks_xstrdup(msg);
            return KS_PATCH_FAILED;
        }
    } else {
        snprintf(msg, sizeof msg, "Unexpected kind: %s", kind);
        *err = ks_xstrdup(msg);
        return KS_PATCH_FAILED;
    }
    return KS_PATCH_OK;
}

int ks_json_patch(cJSON **doc, const char *patch, size_t n, char **err)
{
    int rc = KS_PATCH_OK;
    cJSON *ops = parse_patch(patch, n, err);
    if (!ops)
        return KS_PATCH_BAD;
    if (!cJSON_IsArray(ops)) {
        *err = ks_xstrdup("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
        rc = KS_PATCH_BAD;
        goto out;
    }
    cJSON *op;
    cJSON_ArrayForEach(op, ops)
    {
        if (!cJSON_IsObject(op)) {
            *err = ks_xstrdup("json: cannot unmarshal into Go value of type jsonpatch.Operation");
            rc = KS_PATCH_BAD;
            goto out;
        }
    }
    cJSON_ArrayForEach(op, ops)
    {
        rc = apply_op(doc, op, err);
        if (rc != KS_PATCH_OK)
            break;
    }
out:
    cJSON_Delete(ops);
    return rc;
}

/* ---- merge patch ---- */

static void merge(cJSON *target, const cJSON *patch)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, patch)
    {
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
        } else if (cJSON_IsObject(p)) {
            cJSON *t = ks_jobj(target, p->string);
            merge(t, p);
        } else {
            ks_jset(target, p->string, cJSON_Duplicate(p, 1));
        }
    }
}

static int patch_object(const char *patch, size_t n, cJSON **out, char **err)
{
    *out = parse_patch(patch, n, err);
    if (!*out)
        return KS_PATCH_BAD;
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        *err = ks_xstrdup(
            "json: cannot unmarshal array into Go value of type map[string]interface {}");
        return KS_PATCH_BAD;
    }
    return KS_PATCH_OK;
}

int ks_merge_patch(cJSON **doc, const char *patch, size_t n, char **err)
{
    cJSON *p;
    int rc = patch_object(patch, n, &p, err);
    if (rc)
        return rc;
    merge(*doc, p);
    cJSON_Delete(p);
    return KS_PATCH_OK;
}

/* ---- strategic merge patch ---- */

typedef struct {
    const char *path;      /* dotted path of the list field, [] for list items */
    const char *merge_key; /* NULL: list of primitives merged as a set */
} list_rule;

/* the fields of Pod and Lease whose patchStrategy is "merge" */
static const list_rule rules[] = {
    {"metadata.finalizers", NULL},
    {"metadata.ownerReferences", "uid"},
    {"spec.containers", "name"},
    {"spec.initContainers", "name"},
    {"spec.ephemeralContainers", "name"},
    {"spec.volumes", "name"},
    {"spec.imagePullSecrets", "name"},
    {"spec.containers[].env", "name"},
    {"spec.containers[].ports", "containerPort"},
    {"spec.containers[].volumeMounts", "mountPath"},
    {"spec.initContainers[].env", "name"},
    {"spec.initContainers[].volumeMounts", "mountPath"},
    {"status.conditions", "type"},
    {"status.podIPs", "ip"},
    {NULL, NULL},
};

static const list_rule *find_rule(const char *path)
{
    for (int i = 0; rules[i].path; i++)
        if (!strcmp(rules[i].path, path))
            return &rules[i];
    return NULL;
}

static int smp(cJSON *target, const cJSON *patch, const char *path, char **err);

static cJSON *find_by_key(cJSON *list, const char *key, const cJSON *val)
{
    cJSON *it;
    cJSON_ArrayForEach(it, list)
    {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(it, key);
        if (v && cJSON_Compare(v, val, 1))
            return it;
    }
    return NULL;
}

static int merge_list(cJSON *parent, const char *field, const cJSON *plist, const list_rule *rule,
                      const char *path, char **err)
{
    cJSON *tlist = cJSON_GetObjectItemCaseSensitive(parent, field);
    if (!cJSON_IsArray(tlist)) {
        tlist = cJSON_CreateArray();
        ks_jset(parent, field, tlist);
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, plist)
    {
        if (!rule->merge_key) {
            int have = 0;
            cJSON *t;
            cJSON_ArrayForEach(t, tlist) have |= cJSON_Compare(t, p, 1);
            if (!have)
                cJSON_AddItemToArray(tlist, cJSON_Duplicate(p, 1));
            continue;
        }
        if (!cJSON_IsObject(p))
            continue;
        const char *directive = ks_jstr(p, "$patch");
        const cJSON *kv = cJSON_GetObjectItemCaseSensitive(p, rule->merge_key);
        if (!kv) {
            ks_buf msg = {0};
            ks_buf_addf(&msg, "map: %s does not contain declared merge key: %s", path,
                        rule->merge_key);
            *err = ks_buf_take(&msg);
            return KS_PATCH_FAILED;
        }
        cJSON *t = find_by_key(tlist, rule->merge_key, kv);
        if (directive && !strcmp(directive, "delete")) {
            if (t) {
                cJSON *d = tlist->child;
                int i = 0;
                for (; d && d != t; d = d->next)
                    i++;
                cJSON_DeleteItemFromArray(tlist, i);
            }
            continue;
        }
        if (!t) {
            t = cJSON_CreateObject();
            cJSON_AddItemToArray(tlist, t);
        }
        char sub[512];
        if (snprintf(sub, sizeof sub, "%s[]", path) >= (int)sizeof sub)
            sub[0] = '\0';
        int rc = smp(t, p, sub, err);
        if (rc)
            return rc;
    }
    return KS_PATCH_OK;
}

static int smp(cJSON *target, const cJSON *patch, const char *path, char **err)
{
    const char *directive = ks_jstr(patch, "$patch");
    if (directive && !strcmp(directive, "replace")) {
        while (target->child)
            cJSON_Delete(cJSON_DetachItemViaPointer(target, target->child));
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, patch)
    {
        const char *k = p->string;
        char sub[512];
        if (!strncmp(k, "$deleteFromPrimitiveList/", 25)) {
            cJSON *list = cJSON_GetObjectItemCaseSensitive(target, k + 25);
            const cJSON *del;
            if (!cJSON_IsArray(list))
                continue;
            cJSON_ArrayForEach(del, p)
            {
                for (int i = cJSON_GetArraySize(list) - 1; i >= 0; i--)
                    if (cJSON_Compare(cJSON_GetArrayItem(list, i), del, 1))
                        cJSON_DeleteItemFromArray(list, i);
            }
            continue;
        }
        if (k[0] == '$')
            continue; /* $patch, $setElementOrder/..., $retainKeys */
        if (snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k) >= (int)sizeof sub)
            sub[0] = '\0';
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, k);
        } else if (cJSON_IsObject(p)) {
            const char *d = ks_jstr(p, "$patch");
            if (d && !strcmp(d, "delete")) {
                cJSON_DeleteItemFromObjectCaseSensitive(target, k);
                continue;
            }
            int rc = smp(ks_jobj(target, k), p, sub, err);
            if (rc)
                return rc;
        } else if (cJSON_IsArray(p) && find_rule(sub)) {
            int rc = merge_list(target, k, p, find_rule(sub), sub, err);
            if (rc)
                return rc;
        } else {
            ks_jset(target, k, cJSON_Duplicate(p, 1));
        }
    }
    return KS_PATCH_OK;
}

int ks_strategic_patch(cJSON **doc, const char *patch, size_t n, char **err)
{
    cJSON *p;
    int rc = patch_object(patch, n, &p, err);
    if (rc)
        return rc;
    rc = smp(*doc, p, "", err);
    cJSON_Delete(p);
    return rc;
}
