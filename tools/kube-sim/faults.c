/*
 * The fault settings, validated in one place for both ways of setting them:
 * the flags (--latency-ms 50, --error-codes 429,503) and the body of POST
 * /_sim/faults ({"latency_ms": 50, "error_codes": [429, 503]}). The names are
 * the same but for '-' and '_'; so are the ranges and the messages. A message
 * says what was wanted ("want a percentage from 0 to 100"); the caller puts
 * the setting in front, as its user wrote it.
 */
#include "sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the numeric settings; continue_ttl is the store's, the others ks_faults' */
enum {
    LATENCY,
    JITTER,
    ERROR_RATE,
    DROP_RATE,
    DROP_AFTER_RATE,
    RETRY_AFTER,
    CONTINUE_TTL,
    WATCH_DROP_RATE,
    WATCH_END_AFTER,
    NNUMS
};

static const struct {
    const char *name;
    double lo, hi;
    const char *unit;
} nums[NNUMS] = {
    [LATENCY] = {"latency_ms", 0, 600000, "milliseconds"},
    [JITTER] = {"jitter_ms", 0, 600000, "milliseconds"},
    [ERROR_RATE] = {"error_rate", 0, 100, "a percentage"},
    [DROP_RATE] = {"drop_rate", 0, 100, "a percentage"},
    [DROP_AFTER_RATE] = {"drop_after_rate", 0, 100, "a percentage"},
    [RETRY_AFTER] = {"retry_after", 0, 3600, "seconds"},
    [CONTINUE_TTL] = {"continue_ttl", 0, 86400, "seconds"},
    [WATCH_DROP_RATE] = {"watch_drop_rate", 0, 100, "a percentage"},
    [WATCH_END_AFTER] = {"watch_end_after", 0, 86400, "seconds"},
};

#define CODES_WANTED "want 1 to 8 codes from 400 to 599"

void ks_faults_default(ks_faults *f)
{
    memset(f, 0, sizeof *f);
    f->retry_after = 1;
    f->error_codes[0] = 429;
    f->error_codes[1] = 500;
    f->error_codes[2] = 503;
    f->n_error_codes = 3;
}

void ks_faults_clear(ks_faults *f)
{
    f->latency_ms = f->jitter_ms = 0;
    f->error_rate = f->drop_rate = 0;
    f->drop_after_rate = 0;
    f->watch_drop_rate = 0;
    f->watch_end_after = 0;
}

/* "latency-ms" or "latency_ms" is "latency_ms" */
static int same_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (*a != *b && !(*a == '-' && *b == '_') && !(*a == '_' && *b == '-'))
            return 0;
    return *a == *b;
}

static int num_index(const char *name)
{
    for (int i = 0; i < NNUMS; i++)
        if (same_name(name, nums[i].name))
            return i;
    return -1;
}

/* checks v against setting i and stores it; 0, or -1 with *err */
static int set_num(ks_faults *f, int *ttl, int i, double v, int valid, char **err)
{
    if (!valid || !(v >= nums[i].lo && v <= nums[i].hi)) {
        char msg[200];
        snprintf(msg, sizeof msg, "want %s from %g to %g", nums[i].unit, nums[i].lo, nums[i].hi);
        *err = ks_xstrdup(msg);
        return -1;
    }
    switch (i) {
    case LATENCY:
        f->latency_ms = (int)v;
        break;
    case JITTER:
        f->jitter_ms = (int)v;
        break;
    case ERROR_RATE:
        f->error_rate = v;
        break;
    case DROP_RATE:
        f->drop_rate = v;
        break;
    case DROP_AFTER_RATE:
        f->drop_after_rate = v;
        break;
    case RETRY_AFTER:
        f->retry_after = (int)v;
        break;
    case CONTINUE_TTL:
        *ttl = (int)v;
        break;
    case WATCH_DROP_RATE:
        f->watch_drop_rate = v;
        break;
    case WATCH_END_AFTER:
        f->watch_end_after = (int)v;
        break;
    }
    return 0;
}

/* checks the codes (n of them) and stores them; 0, or -1 with *err */
static int set_codes(ks_faults *f, const double *codes, int n, char **err)
{
    if (n < 1 || n > 8) {
        *err = ks_xstrdup(CODES_WANTED);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (!(codes[i] >= 400 && codes[i] <= 599)) {
            *err = ks_xstrdup(CODES_WANTED);
            return -1;
        }
    }
    f->n_error_codes = n;
    for (int i = 0; i < n; i++)
        f->error_codes[i] = (int)codes[i];
    return 0;
}

/* ---- flags ---- */

int ks_faults_set_text(ks_faults *f, int *ttl, const char *name, const char *value, char **err)
{
    if (same_name(name, "error_codes")) {
        double codes[9];
        int n = 0;
        const char *p = value;
        while (*p) {
            char *end;
            long c = strtol(p, &end, 10);
            if (end == p || n == 9 || (*end && *end != ',')) {
                *err = ks_xstrdup(CODES_WANTED);
                return -1;
            }
            codes[n++] = (double)c;
            p = *end ? end + 1 : end;
        }
        return set_codes(f, codes, n, err);
    }
    int i = num_index(name);
    if (i < 0) {
        *err = ks_xstrdup("no such fault");
        return -1;
    }
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    return set_num(f, ttl, i, v, *value && !*end && !errno, err);
}

/* ---- JSON ---- */

static int known(const char *name)
{
    return num_index(name) >= 0 || !strcmp(name, "error_codes") || !strcmp(name, "fail_nth");
}

static int json_codes(ks_faults *f, const cJSON *codes, char **err)
{
    double v[8];
    int n = 0;
    const cJSON *it;
    if (!cJSON_IsArray(codes) || cJSON_GetArraySize(codes) > 8) {
        *err = ks_xstrdup(CODES_WANTED);
        return -1;
    }
    cJSON_ArrayForEach(it, codes)
    {
        if (!cJSON_IsNumber(it)) {
            *err = ks_xstrdup(CODES_WANTED);
            return -1;
        }
        v[n++] = it->valuedouble;
    }
    return set_codes(f, v, n, err);
}

/* a fail_nth rule, "VERB:N:CODE" or {"verb","n","code"}, as the text
 * ks_failnth_parse reads (what it cannot be turned into fails there); -1 for
 * neither form */
static int rule_spec(const cJSON *it, char *spec, size_t size)
{
    if (cJSON_IsString(it)) {
        snprintf(spec, size, "%s", it->valuestring);
        return 0;
    }
    if (!cJSON_IsObject(it))
        return -1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "code");
    const cJSON *nn = cJSON_GetObjectItemCaseSensitive(it, "n");
    char cs[16];
    if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 1000)
        snprintf(cs, sizeof cs, "%d", (int)c->valuedouble);
    else if (cJSON_IsNumber(c))
        snprintf(cs, sizeof cs, "bad");
    else
        snprintf(cs, sizeof cs, "%s", cJSON_IsString(c) ? c->valuestring : "?");
    snprintf(spec, size, "%s:%ld:%s", ks_jstr(it, "verb") ? ks_jstr(it, "verb") : "?",
             (cJSON_IsNumber(nn) && nn->valuedouble >= 1 && nn->valuedouble <= 1e9)
                 ? (long)nn->valuedouble
                 : 0L,
             cs);
    return 0;
}

static int json_rules(ks_failnth *fn, int *nfn, const cJSON *rules, char **err)
{
    const cJSON *it;
    if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) > KS_MAX_FAILNTH) {
        *err = ks_xstrdup("fail_nth: want an array of rules");
        return -1;
    }
    *nfn = 0;
    cJSON_ArrayForEach(it, rules)
    {
        char spec[64];
        if (rule_spec(it, spec, sizeof spec)) {
            *err =
                ks_xstrdup("fail_nth: each rule is \"VERB:N:CODE\" or {\"verb\",\"n\",\"code\"}");
            return -1;
        }
        char *e2 = NULL;
        if (ks_failnth_parse(spec, &fn[*nfn], &e2)) {
            char msg[300];
            snprintf(msg, sizeof msg, "fail_nth: %s: %s", spec, e2);
            free(e2);
            *err = ks_xstrdup(msg);
            return -1;
        }
        (*nfn)++;
    }
    return 0;
}

/* *err prefixed with "name: " */
static void prefix_err(const char *name, char **err)
{
    char msg[300];
    snprintf(msg, sizeof msg, "%s: %s", name, *err);
    free(*err);
    *err = ks_xstrdup(msg);
}

int ks_faults_apply_json(const char *body, size_t n, ks_faults *f, ks_failnth *fn, int *nfn,
                         int *ttl, char **err)
{
    cJSON *o = NULL;
    int rc = -1;
    char *gerr = ks_go_json_error(body, n);
    if (gerr) {
        *err = gerr;
        return -1;
    }
    o = cJSON_ParseWithLength(body, n);
    if (!cJSON_IsObject(o)) {
        *err = ks_xstrdup("want a JSON object");
        goto out;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        if (!known(it->string)) {
            char msg[200];
            snprintf(msg, sizeof msg, "unknown fault \"%s\"", it->string);
            *err = ks_xstrdup(msg);
            goto out;
        }
    }
    for (int i = 0; i < NNUMS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, nums[i].name);
        if (v && set_num(f, ttl, i, v->valuedouble, cJSON_IsNumber(v), err)) {
            prefix_err(nums[i].name, err);
            goto out;
        }
    }
    const cJSON *codes = cJSON_GetObjectItemCaseSensitive(o, "error_codes");
    if (codes && json_codes(f, codes, err)) {
        prefix_err("error_codes", err);
        goto out;
    }
    const cJSON *rules = cJSON_GetObjectItemCaseSensitive(o, "fail_nth");
    if (rules && json_rules(fn, nfn, rules, err))
        goto out;
    rc = 0;
out:
    cJSON_Delete(o);
    return rc;
}

cJSON *ks_faults_json(const ks_faults *f, const ks_failnth *fn, int nfn, int ttl)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "latency_ms", f->latency_ms);
    cJSON_AddNumberToObject(o, "jitter_ms", f->jitter_ms);
    cJSON_AddNumberToObject(o, "error_rate", f->error_rate);
    cJSON *codes = cJSON_AddArrayToObject(o, "error_codes");
    for (int i = 0; i < f->n_error_codes; i++)
        cJSON_AddItemToArray(codes, cJSON_CreateNumber(f->error_codes[i]));
    cJSON_AddNumberToObject(o, "retry_after", f->retry_after);
    cJSON_AddNumberToObject(o, "drop_rate", f->drop_rate);
    cJSON_AddNumberToObject(o, "drop_after_rate", f->drop_after_rate);
    cJSON_AddNumberToObject(o, "continue_ttl", ttl);
    cJSON_AddNumberToObject(o, "watch_drop_rate", f->watch_drop_rate);
    cJSON_AddNumberToObject(o, "watch_end_after", f->watch_end_after);
    cJSON *rules = cJSON_AddArrayToObject(o, "fail_nth");
    for (int i = 0; i < nfn; i++) {
        const ks_failnth *r = &fn[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "verb", r->verb);
        cJSON_AddNumberToObject(e, "n", (double)r->n);
        if (r->code)
            cJSON_AddNumberToObject(e, "code", r->code);
        else
            cJSON_AddStringToObject(e, "code", r->after ? "drop-after" : "drop");
        cJSON_AddNumberToObject(e, "seen", (double)r->seen);
        cJSON_AddBoolToObject(e, "fired", r->fired);
        cJSON_AddItemToArray(rules, e);
    }
    return o;
}
