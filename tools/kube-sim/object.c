/*
 * Incoming objects: the request body, what the apiserver checks and fills in
 * before it stores a new object (name, namespace, server-owned metadata, pod
 * defaults), and the Status answers the store refuses requests with.
 */
#include "store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Status answers ---- */

void st_res_status(ks_result *out, int code, const char *reason, const char *msg,
                   const ks_details *d)
{
    out->code = code;
    out->body = ks_status_json(code, reason, msg, d);
}

void st_res_not_found(ks_result *out, ks_kind k, const char *name)
{
    char msg[600];
    snprintf(msg, sizeof msg, "%s \"%s\" not found", ks_resources[k].qualified, name);
    ks_details d = {name, ks_resources[k].group, ks_resources[k].plural, NULL};
    st_res_status(out, 404, "NotFound", msg, &d);
}

void st_res_conflict(ks_result *out, ks_kind k, const char *name)
{
    char msg[800];
    snprintf(msg, sizeof msg,
             "Operation cannot be fulfilled on %s \"%s\": the object has been modified; please "
             "apply your changes to the latest version and try again",
             ks_resources[k].qualified, name);
    ks_details d = {name, ks_resources[k].group, ks_resources[k].plural, NULL};
    st_res_status(out, 409, "Conflict", msg, &d);
}

void st_res_bad(ks_result *out, const char *msg)
{
    st_res_status(out, 400, "BadRequest", msg, NULL);
}

void st_res_invalid(ks_result *out, ks_kind k, const char *name, const char *field,
                    const char *reason, const char *detail, int repeat)
{
    ks_buf msg = {0};
    ks_buf_addf(&msg, "%s \"%s\" is invalid: %s: %s",
                k == KS_POD ? "Pod" : "Lease.coordination.k8s.io", name, field, detail);
    cJSON *causes = cJSON_CreateArray();
    for (int i = 0; i < repeat; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "reason", reason);
        cJSON_AddStringToObject(c, "message", detail);
        cJSON_AddStringToObject(c, "field", field);
        cJSON_AddItemToArray(causes, c);
    }
    ks_details d = {name, ks_resources[k].group, ks_resources[k].kind_name, causes};
    if (k == KS_LEASE)
        d.kind = "Lease";
    st_res_status(out, 422, "Invalid", msg.buf, &d);
    ks_buf_free(&msg);
    cJSON_Delete(causes);
}

void st_res_obj(ks_result *out, int code, ks_kind k, const ver *v)
{
    out->code = code;
    out->body = st_full_json(k, v->item, v->item_len);
}

/* ---- new objects ---- */

static int valid_dns_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '.')
            return 0;
        if ((i == 0 || i == n - 1 || s[i - 1] == '.' || s[i + 1] == '.') && !alnum)
            return 0;
    }
    return 1;
}

static void pod_defaults(cJSON *obj)
{
    cJSON *spec = ks_jobj(obj, "spec");
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "containers"))
    {
        if (!cJSON_IsObject(c))
            continue;
        if (!cJSON_GetObjectItemCaseSensitive(c, "resources"))
            cJSON_AddObjectToObject(c, "resources");
        if (!ks_jstr(c, "terminationMessagePath"))
            cJSON_AddStringToObject(c, "terminationMessagePath", "/dev/termination-log");
        if (!ks_jstr(c, "terminationMessagePolicy"))
            cJSON_AddStringToObject(c, "terminationMessagePolicy", "File");
        if (!ks_jstr(c, "imagePullPolicy")) {
            const char *img = ks_jstr(c, "image");
            const char *colon = img ? strrchr(img, ':') : NULL;
            int latest = !colon || strchr(colon, '/') || !strcmp(colon, ":latest");
            cJSON_AddStringToObject(c, "imagePullPolicy", latest ? "Always" : "IfNotPresent");
        }
    }
    if (!ks_jstr(spec, "restartPolicy"))
        cJSON_AddStringToObject(spec, "restartPolicy", "Always");
    if (!cJSON_GetObjectItemCaseSensitive(spec, "terminationGracePeriodSeconds"))
        cJSON_AddNumberToObject(spec, "terminationGracePeriodSeconds", 30);
    if (!ks_jstr(spec, "dnsPolicy"))
        cJSON_AddStringToObject(spec, "dnsPolicy", "ClusterFirst");
    if (!cJSON_GetObjectItemCaseSensitive(spec, "securityContext"))
        cJSON_AddObjectToObject(spec, "securityContext");
    if (!ks_jstr(spec, "schedulerName"))
        cJSON_AddStringToObject(spec, "schedulerName", "default-scheduler");
    if (!cJSON_GetObjectItemCaseSensitive(spec, "priority"))
        cJSON_AddNumberToObject(spec, "priority", 0);
    if (!cJSON_GetObjectItemCaseSensitive(spec, "enableServiceLinks"))
        cJSON_AddBoolToObject(spec, "enableServiceLinks", 1);
    if (!ks_jstr(spec, "preemptionPolicy"))
        cJSON_AddStringToObject(spec, "preemptionPolicy", "PreemptLowerPriority");
}

void st_strip_kind(cJSON *obj)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "kind");
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "apiVersion");
}

cJSON *st_parse_body(const ks_request *r, ks_result *out, const char *prefix)
{
    char *gerr = ks_go_json_error(r->body ? r->body : "", r->body_len);
    if (gerr) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s%s", prefix, gerr);
        st_res_bad(out, msg);
        free(gerr);
        return NULL;
    }
    cJSON *o = cJSON_ParseWithLength(r->body, r->body_len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        char msg[600];
        snprintf(msg, sizeof msg, "%sjson: cannot unmarshal into Go value of type struct", prefix);
        st_res_bad(out, msg);
        return NULL;
    }
    return o;
}

/* metadata.name, made from generateName when absent; NULL with a 422 in
 * out when there is none or it is not a DNS subdomain */
static const char *prepare_name(ks_kind k, cJSON *meta, ks_result *out)
{
    const char *name = ks_jstr(meta, "name");
    const char *gen = ks_jstr(meta, "generateName");
    if ((!name || !*name) && gen && *gen) {
        static const char alpha[] = "bcdfghjklmnpqrstvwxz2456789";
        char nm[300];
        int n = snprintf(nm, sizeof nm, "%s", gen);
        for (int i = 0; i < 5 && n + i < (int)sizeof nm - 1; i++)
            nm[n + i] = alpha[ks_rand() % (sizeof alpha - 1)], nm[n + i + 1] = '\0';
        ks_jset_str(meta, "name", nm);
        name = ks_jstr(meta, "name");
    }
    if (!name || !*name) {
        st_res_invalid(out, k, "", "metadata.name", "FieldValueRequired",
                       "Required value: name or generateName is required", 1);
        return NULL;
    }
    if (!valid_dns_subdomain(name)) {
        char detail[700];
        snprintf(detail, sizeof detail,
                 "Invalid value: \"%s\": a lowercase RFC 1123 subdomain must consist of lower "
                 "case alphanumeric characters, '-' or '.', and must start and end with an "
                 "alphanumeric character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                 name);
        st_res_invalid(out, k, name, "metadata.name", "FieldValueInvalid", detail, 1);
        return NULL;
    }
    return name;
}

int st_prepare_new(ks_kind k, const char *ns, cJSON *obj, int reset_status, ks_result *out)
{
    st_strip_kind(obj);
    cJSON *meta = ks_jobj(obj, "metadata");
    const char *ons = ks_jstr(meta, "namespace");
    if (ons && *ons && strcmp(ons, ns)) {
        st_res_bad(out, "the namespace of the provided object does not match the namespace sent "
                        "on the request");
        return -1;
    }
    const char *orv = ks_jstr(meta, "resourceVersion");
    if (reset_status && orv && *orv) {
        st_res_bad(out, "resourceVersion should not be set on objects to be created");
        return -1;
    }
    ks_jset_str(meta, "namespace", ns);
    const char *name = prepare_name(k, meta, out);
    if (!name)
        return -1;
    if (k == KS_POD) {
        cJSON *ctrs = cJSON_GetObjectItemCaseSensitive(ks_jobj(obj, "spec"), "containers");
        if (!cJSON_IsArray(ctrs) || cJSON_GetArraySize(ctrs) == 0) {
            st_res_invalid(out, k, name, "spec.containers", "FieldValueRequired", "Required value",
                           1);
            return -1;
        }
    }
    char uid[37], ts[40];
    if (!ks_jstr(meta, "uid") || reset_status) {
        ks_uuid(uid);
        ks_jset_str(meta, "uid", uid);
    }
    if (!ks_jstr(meta, "creationTimestamp") || reset_status) {
        ks_fmt_time(ks_now_ms(), ts, sizeof ts);
        ks_jset_str(meta, "creationTimestamp", ts);
    }
    if (reset_status) {
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "deletionTimestamp");
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "deletionGracePeriodSeconds");
    }
    cJSON_DeleteItemFromObjectCaseSensitive(meta, "selfLink");
    if (k == KS_POD) {
        pod_defaults(obj);
        if (reset_status || !cJSON_GetObjectItemCaseSensitive(obj, "status")) {
            cJSON *st = cJSON_CreateObject();
            cJSON_AddStringToObject(st, "phase", "Pending");
            cJSON_AddStringToObject(st, "qosClass", "BestEffort");
            ks_jset(obj, "status", st);
        }
    }
    return 0;
}
