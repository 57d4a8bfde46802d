/*
 * Server-side printing: the meta.k8s.io/v1 Table that kubectl get asks for
 * (Accept: ...;as=Table), with the columns and cells the apiserver's printers
 * give pods and leases.
 */
#include "store_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static const char pod_columns[] =
    "[{\"name\":\"Name\",\"type\":\"string\",\"format\":\"name\",\"description\":\"Name must be "
    "unique within a namespace.\",\"priority\":0},"
    "{\"name\":\"Ready\",\"type\":\"string\",\"format\":\"\",\"description\":\"The aggregate "
    "readiness state of this pod for accepting traffic.\",\"priority\":0},"
    "{\"name\":\"Status\",\"type\":\"string\",\"format\":\"\",\"description\":\"The aggregate "
    "status of the containers in this pod.\",\"priority\":0},"
    "{\"name\":\"Restarts\",\"type\":\"integer\",\"format\":\"\",\"description\":\"The number of "
    "times the containers in this pod have been restarted.\",\"priority\":0},"
    "{\"name\":\"Age\",\"type\":\"string\",\"format\":\"\",\"description\":\"CreationTimestamp is "
    "a timestamp representing the server time when this object was created.\",\"priority\":0},"
    "{\"name\":\"IP\",\"type\":\"string\",\"format\":\"\",\"description\":\"IP address allocated "
    "to the pod.\",\"priority\":1},"
    "{\"name\":\"Node\",\"type\":\"string\",\"format\":\"\",\"description\":\"Name of the node "
    "the pod is scheduled on.\",\"priority\":1}]";
static const char lease_columns[] =
    "[{\"name\":\"Name\",\"type\":\"string\",\"format\":\"name\",\"description\":\"Name must be "
    "unique within a namespace.\",\"priority\":0},"
    "{\"name\":\"Holder\",\"type\":\"string\",\"format\":\"\",\"description\":\"The holder of "
    "the lease.\",\"priority\":0},"
    "{\"name\":\"Age\",\"type\":\"string\",\"format\":\"\",\"description\":\"CreationTimestamp is "
    "a timestamp representing the server time when this object was created.\",\"priority\":0}]";

const char *st_table_columns(ks_kind k)
{
    return k == KS_POD ? pod_columns : lease_columns;
}

/* k8s.io/apimachinery/pkg/util/duration.HumanDuration */
static void human_age(int64_t ms, char *out, size_t n)
{
    long long s = ms / 1000;
    if (s < 0)
        s = 0;
    long long m = s / 60, h = s / 3600, d = h / 24, y = d / 365;
    if (s < 120)
        snprintf(out, n, "%llds", s);
    else if (m < 10)
        snprintf(out, n, "%lldm%llds", m, s % 60);
    else if (m < 180)
        snprintf(out, n, "%lldm", m);
    else if (h < 8)
        snprintf(out, n, "%lldh%lldm", h, m % 60);
    else if (h < 48)
        snprintf(out, n, "%lldh", h);
    else if (h < 24 * 8)
        snprintf(out, n, "%lldd%lldh", d, h % 24);
    else if (d < 365 * 2)
        snprintf(out, n, "%lldd", d);
    else if (d < 365 * 8)
        snprintf(out, n, "%lldy%lldd", y, d % 365);
    else
        snprintf(out, n, "%lldy", y);
}

/* Name is already in cells: Ready, Status, Restarts, Age, IP, Node */
static void pod_cells(cJSON *cells, const cJSON *o, const cJSON *meta, const char *age)
{
    cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "status");
    int total = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(o, "spec"), "containers"));
    int ready = 0, restarts = 0;
    cJSON *cs;
    cJSON_ArrayForEach(cs, cJSON_GetObjectItemCaseSensitive(st, "containerStatuses"))
    {
        ready += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cs, "ready"));
        cJSON *rc = cJSON_GetObjectItemCaseSensitive(cs, "restartCount");
        restarts += (int)st_jlong(rc, 0, 1000000, 0);
    }
    char rd[32];
    snprintf(rd, sizeof rd, "%d/%d", ready, total);
    const char *status = ks_jstr(st, "reason") ? ks_jstr(st, "reason") : ks_jstr(st, "phase");
    if (ks_jstr(meta, "deletionTimestamp"))
        status = "Terminating";
    cJSON_AddItemToArray(cells, cJSON_CreateString(rd));
    cJSON_AddItemToArray(cells, cJSON_CreateString(status ? status : ""));
    cJSON_AddItemToArray(cells, cJSON_CreateNumber(restarts));
    cJSON_AddItemToArray(cells, cJSON_CreateString(age));
    const char *ip = ks_jstr(st, "podIP");
    const char *node = st_path_str(o, "spec", "nodeName");
    cJSON_AddItemToArray(cells, cJSON_CreateString(ip ? ip : "<none>"));
    cJSON_AddItemToArray(cells, cJSON_CreateString(node ? node : "<none>"));
}

void st_table_row(ks_buf *b, ks_kind k, const char *json, size_t len, int64_t now)
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    if (!o)
        abort();
    cJSON *meta = ks_jobj(o, "metadata");
    cJSON *cells = cJSON_CreateArray();
    char age[32];
    human_age(now - ks_parse_time(ks_jstr(meta, "creationTimestamp")), age, sizeof age);
    cJSON_AddItemToArray(cells, cJSON_CreateString(ks_jstr(meta, "name")));
    if (k == KS_POD) {
        pod_cells(cells, o, meta, age);
    } else {
        const char *holder = st_path_str(o, "spec", "holderIdentity");
        cJSON_AddItemToArray(cells, cJSON_CreateString(holder ? holder : ""));
        cJSON_AddItemToArray(cells, cJSON_CreateString(age));
    }
    cJSON *row = cJSON_CreateObject();
    cJSON_AddItemToObject(row, "cells", cells);
    cJSON *obj = cJSON_AddObjectToObject(row, "object");
    cJSON_AddStringToObject(obj, "kind", "PartialObjectMetadata");
    cJSON_AddStringToObject(obj, "apiVersion", "meta.k8s.io/v1");
    cJSON_AddItemToObject(obj, "metadata", cJSON_DetachItemFromObjectCaseSensitive(o, "metadata"));
    char *s = cJSON_PrintUnformatted(row);
    ks_buf_adds(b, s);
    free(s);
    cJSON_Delete(row);
    cJSON_Delete(o);
}

void st_table_add(ks_buf *b, ks_kind k, const char *json, size_t len, uint64_t rv)
{
    ks_buf_addf(b,
                "{\"kind\":\"Table\",\"apiVersion\":\"meta.k8s.io/v1\",\"metadata\":{"
                "\"resourceVersion\":\"%" PRIu64 "\"},\"columnDefinitions\":%s,\"rows\":[",
                rv, st_table_columns(k));
    st_table_row(b, k, json, len, ks_now_ms());
    ks_buf_adds(b, "]}");
}
