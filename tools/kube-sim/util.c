/*
 * Small helpers for kube-sim: buffers, time, uids, base64url, Status objects,
 * logfmt logging, and Go-worded JSON syntax errors (the apiserver is written in
 * Go, and clients see encoding/json's messages in 400 answers).
 */
#include "sim.h"

#include <ctype.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *ks_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *ks_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

char *ks_xstrndup(const char *s, size_t n)
{
    char *p = ks_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ks_xstrdup(const char *s)
{
    return ks_xstrndup(s, strlen(s));
}

static void buf_grow(ks_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->buf = ks_xrealloc(b->buf, cap);
    b->cap = cap;
}

void ks_buf_reserve(ks_buf *b, size_t extra)
{
    buf_grow(b, extra);
}

/* per-thread print buffers: a fixed one, and the last print that did not fit */
typedef struct {
    char *fixed;
    char *big;
} print_bufs;

static pthread_key_t print_key;
static pthread_once_t print_once = PTHREAD_ONCE_INIT;

static void print_bufs_free(void *p)
{
    print_bufs *pb = p;
    free(pb->fixed);
    free(pb->big);
    free(pb);
}

static void print_key_init(void)
{
    pthread_key_create(&print_key, print_bufs_free);
}

const char *ks_print_scratch(const cJSON *o, size_t *len)
{
    /* cJSON grows its print buffer with realloc from 256 bytes; on a heap
     * holding 100,000 pods that dominates, so print into a reused buffer */
    const size_t tcap = 256 * 1024;
    pthread_once(&print_once, print_key_init);
    print_bufs *pb = pthread_getspecific(print_key);
    if (!pb) {
        pb = ks_xmalloc(sizeof *pb);
        pb->fixed = ks_xmalloc(tcap);
        pb->big = NULL;
        pthread_setspecific(print_key, pb);
    }
    free(pb->big);
    pb->big = NULL;
    const char *s = pb->fixed;
    if (!cJSON_PrintPreallocated((cJSON *)o, pb->fixed, (int)tcap, 0)) {
        pb->big = cJSON_PrintUnformatted(o);
        if (!pb->big)
            abort();
        s = pb->big;
    }
    *len = strlen(s);
    return s;
}

char *ks_print(const cJSON *o)
{
    size_t n;
    const char *s = ks_print_scratch(o, &n);
    return ks_xstrndup(s, n);
}

/* ---- cJSON allocations ----
 * A PATCH or a DELETE parses a pod or two into a few hundred small blocks and
 * frees them again. glibc's per-thread cache keeps 7 blocks of a size; the
 * rest go through the arena, its bins and its consolidation. Small blocks are
 * kept per thread here instead. Every block is a malloc() block, so memory
 * from cJSON may still be passed to free() and the other way round. Off under
 * AddressSanitizer: its quarantine must see every free. */
#if defined(__SANITIZE_ADDRESS__)
#define KS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KS_ASAN 1
#endif
#endif

#ifndef KS_ASAN
/* class c holds blocks of at least 24 + 16 c usable bytes: glibc's chunk
 * sizes, so a cached block costs no more memory than malloc's own */
enum { JC_CLASSES = 16, JC_KEEP_BYTES = 256 * 1024 };

typedef struct {
    void *head[JC_CLASSES];
    size_t bytes;
} jcache;

static pthread_key_t jc_key;
static pthread_once_t jc_once = PTHREAD_ONCE_INIT;
static __thread jcache *jc_tls;

static size_t jc_size(int c)
{
    return 24 + 16 * (size_t)c;
}

static void jc_destroy(void *p)
{
    jcache *j = p;
    for (int c = 0; c < JC_CLASSES; c++)
        while (j->head[c]) {
            void *b = j->head[c];
            j->head[c] = *(void **)b;
            free(b);
        }
    free(j);
    jc_tls = NULL;
}

static void jc_key_init(void)
{
    pthread_key_create(&jc_key, jc_destroy);
}

static jcache *jc_get(void)
{
    if (!jc_tls) {
        jc_tls = calloc(1, sizeof *jc_tls);
        if (!jc_tls)
            abort();
        pthread_setspecific(jc_key, jc_tls);
    }
    return jc_tls;
}

static void *jc_alloc(size_t n)
{
    if (n > jc_size(JC_CLASSES - 1))
        return malloc(n);
    int c = n <= 24 ? 0 : (int)((n - 24 + 15) / 16);
    jcache *j = jc_get();
    void *b = j->head[c];
    if (!b)
        return malloc(jc_size(c));
    j->head[c] = *(void **)b;
    j->bytes -= jc_size(c);
    return b;
}

static void jc_free(void *b)
{
    if (!b)
        return;
    size_t usable = malloc_usable_size(b);
    if (usable >= 24) {
        size_t c = (usable - 24) / 16;
        jcache *j = jc_get();
        if (c < JC_CLASSES && j->bytes + jc_size((int)c) <= JC_KEEP_BYTES) {
            *(void **)b = j->head[c];
            j->head[c] = b;
            j->bytes += jc_size((int)c);
            return;
        }
    }
    free(b);
}

void ks_json_init(void)
{
    pthread_once(&jc_once, jc_key_init);
    cJSON_Hooks h = {jc_alloc, jc_free};
    cJSON_InitHooks(&h);
}
#else
void ks_json_init(void) {}
#endif

void ks_buf_add(ks_buf *b, const char *s, size_t n)
{
    buf_grow(b, n);
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

void ks_buf_adds(ks_buf *b, const char *s)
{
    ks_buf_add(b, s, strlen(s));
}

void ks_buf_addf(ks_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_grow(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->buf + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ks_buf_free(ks_buf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}

char *ks_buf_take(ks_buf *b)
{
    char *p = b->buf ? b->buf : ks_xstrdup("");
    b->buf = NULL;
    b->len = b->cap = 0;
    return p;
}

int64_t ks_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ks_fmt_time(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t ks_parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s)
        return -1;
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e)
        return -1;
    int64_t ms = 0;
    if (*e == '.') {
        e++;
        int digits = 0;
        while (isdigit((unsigned char)*e)) {
            if (digits < 3)
                ms = ms * 10 + (*e - '0');
            digits++;
            e++;
        }
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (*e != 'Z')
        return -1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static __thread uint64_t rng_state;

uint64_t ks_rand(void)
{
    if (!rng_state) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        rng_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
        rng_state |= 1;
    }
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

void ks_uuid(char *out37)
{
    uint64_t a = ks_rand(), b = ks_rand();
    unsigned char u[16];
    memcpy(u, &a, 8);
    memcpy(u + 8, &b, 8);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    snprintf(out37, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
             u[14], u[15]);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ks_b64url_encode(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = ks_xmalloc(n * 4 / 3 + 4);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        out[o++] = b64[p[i] >> 2];
        out[o++] = b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        out[o++] = b64[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
        out[o++] = b64[p[i + 2] & 63];
    }
    if (n - i == 1) {
        out[o++] = b64[p[i] >> 2];
        out[o++] = b64[(p[i] & 3) << 4];
    } else if (n - i == 2) {
        out[o++] = b64[p[i] >> 2];
        out[o++] = b64[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        out[o++] = b64[(p[i + 1] & 15) << 2];
    }
    out[o] = '\0';
    return out;
}

static int b64val(char c)
{
    const char *p = strchr(b64, c);
    return (c && p) ? (int)(p - b64) : -1;
}

char *ks_b64url_decode(const char *s, size_t *outlen, size_t *bad_at)
{
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '=')
        n--;
    char *out = ks_xmalloc(n * 3 / 4 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(s[i]);
        if (v < 0) {
            *bad_at = i;
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (n % 4 == 1) {
        *bad_at = n - 1;
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* ---- Go encoding/json syntax errors ---- */

typedef struct {
    const char *s;
    size_t n, i;
    char *err;
    int depth;
} gscan;

static void quote_char(char c, char *out, size_t outlen)
{
    if (c == '\'')
        snprintf(out, outlen, "'\\''");
    else if (c == '"')
        snprintf(out, outlen, "'\"'");
    else if (c == '\n')
        snprintf(out, outlen, "'\\n'");
    else if (c == '\t')
        snprintf(out, outlen, "'\\t'");
    else if (c == '\r')
        snprintf(out, outlen, "'\\r'");
    else if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f)
        snprintf(out, outlen, "'\\x%02x'", (unsigned char)c);
    else
        snprintf(out, outlen, "'%c'", c);
}

static int gfail(gscan *g, const char *ctx)
{
    if (g->err)
        return -1;
    if (g->i >= g->n) {
        g->err = ks_xstrdup("unexpected end of JSON input");
        return -1;
    }
    char q[16], msg[160];
    quote_char(g->s[g->i], q, sizeof q);
    snprintf(msg, sizeof msg, "invalid character %s %s", q, ctx);
    g->err = ks_xstrdup(msg);
    return -1;
}

static void gws(gscan *g)
{
    while (g->i < g->n &&
           (g->s[g->i] == ' ' || g->s[g->i] == '\t' || g->s[g->i] == '\n' || g->s[g->i] == '\r'))
        g->i++;
}

static int gvalue(gscan *g);

static int gstring(gscan *g)
{
    g->i++; /* opening quote */
    while (g->i < g->n) {
        unsigned char c = (unsigned char)g->s[g->i];
        if (c == '"') {
            g->i++;
            return 0;
        }
        if (c < 0x20)
            return gfail(g, "in string literal");
        if (c == '\\') {
            g->i++;
            if (g->i >= g->n)
                break;
            c = (unsigned char)g->s[g->i];
            if (c == 'u') {
                for (int k = 0; k < 4; k++) {
                    g->i++;
                    if (g->i >= g->n)
                        return gfail(g, "");
                    if (!isxdigit((unsigned char)g->s[g->i]))
                        return gfail(g, "in \\u hexadecimal character escape");
                }
            } else if (!strchr("\"\\/bfnrt", c)) {
                return gfail(g, "in string escape code");
            }
        }
        g->i++;
    }
    return gfail(g, "");
}

static int gliteral(gscan *g, const char *lit, const char *name)
{
    for (size_t k = 0; lit[k]; k++, g->i++) {
        if (g->i >= g->n)
            return gfail(g, "");
        if (g->s[g->i] != lit[k]) {
            char ctx[64];
            snprintf(ctx, sizeof ctx, "in literal %s (expecting '%c')", name, lit[k]);
            return gfail(g, ctx);
        }
    }
    return 0;
}

static int gnumber(gscan *g)
{
    if (g->s[g->i] == '-') {
        g->i++;
        if (g->i >= g->n || !isdigit((unsigned char)g->s[g->i]))
            return gfail(g, "in numeric literal");
    }
    if (g->s[g->i] == '0')
        g->i++;
    else
        while (g->i < g->n && isdigit((unsigned char)g->s[g->i]))
            g->i++;
    if (g->i < g->n && g->s[g->i] == '.') {
        g->i++;
        if (g->i >= g->n || !isdigit((unsigned char)g->s[g->i]))
            return gfail(g, "after decimal point in numeric literal");
        while (g->i < g->n && isdigit((unsigned char)g->s[g->i]))
            g->i++;
    }
    if (g->i < g->n && (g->s[g->i] == 'e' || g->s[g->i] == 'E')) {
        g->i++;
        if (g->i < g->n && (g->s[g->i] == '+' || g->s[g->i] == '-'))
            g->i++;
        if (g->i >= g->n || !isdigit((unsigned char)g->s[g->i]))
            return gfail(g, "in exponent of numeric literal");
        while (g->i < g->n && isdigit((unsigned char)g->s[g->i]))
            g->i++;
    }
    return 0;
}

/* after the '{' */
static int gobject(gscan *g)
{
    int rc;
    gws(g);
    if (g->i < g->n && g->s[g->i] == '}') {
        g->i++;
        return 0;
    }
    for (;;) {
        gws(g);
        if (g->i >= g->n || g->s[g->i] != '"')
            return gfail(g, "looking for beginning of object key string");
        if ((rc = gstring(g)))
            return rc;
        gws(g);
        if (g->i >= g->n || g->s[g->i] != ':')
            return gfail(g, "after object key");
        g->i++;
        if ((rc = gvalue(g)))
            return rc;
        gws(g);
        if (g->i < g->n && g->s[g->i] == ',') {
            g->i++;
            continue;
        }
        if (g->i < g->n && g->s[g->i] == '}') {
            g->i++;
            return 0;
        }
        return gfail(g, "after object key:value pair");
    }
}

/* after the '[' */
static int garray(gscan *g)
{
    int rc;
    gws(g);
    if (g->i < g->n && g->s[g->i] == ']') {
        g->i++;
        return 0;
    }
    for (;;) {
        if ((rc = gvalue(g)))
            return rc;
        gws(g);
        if (g->i < g->n && g->s[g->i] == ',') {
            g->i++;
            continue;
        }
        if (g->i < g->n && g->s[g->i] == ']') {
            g->i++;
            return 0;
        }
        return gfail(g, "after array element");
    }
}

static int gvalue(gscan *g)
{
    gws(g);
    if (g->i >= g->n)
        return gfail(g, "");
    if (++g->depth > 10000) {
        g->err = ks_xstrdup("exceeded max depth");
        return -1;
    }
    int rc;
    char c = g->s[g->i];
    if (c == '{') {
        g->i++;
        rc = gobject(g);
    } else if (c == '[') {
        g->i++;
        rc = garray(g);
    } else if (c == '"') {
        rc = gstring(g);
    } else if (c == 'n') {
        rc = gliteral(g, "null", "null");
    } else if (c == 't') {
        rc = gliteral(g, "true", "true");
    } else if (c == 'f') {
        rc = gliteral(g, "false", "false");
    } else if (c == '-' || isdigit((unsigned char)c)) {
        rc = gnumber(g);
    } else {
        rc = gfail(g, "looking for beginning of value");
    }
    g->depth--;
    return rc;
}

char *ks_go_json_error(const char *s, size_t n)
{
    gscan g = {.s = s, .n = n};
    if (gvalue(&g) == 0) {
        gws(&g);
        if (g.i < g.n)
            gfail(&g, "after top-level value");
    }
    return g.err;
}

/* ---- Status ---- */

char *ks_status_json(int code, const char *reason, const char *message, const ks_details *d)
{
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "kind", "Status");
    cJSON_AddStringToObject(st, "apiVersion", "v1");
    cJSON_AddItemToObject(st, "metadata", cJSON_CreateObject());
    cJSON_AddStringToObject(st, "status", "Failure");
    cJSON_AddStringToObject(st, "message", message);
    cJSON_AddStringToObject(st, "reason", reason);
    if (d) {
        cJSON *det = cJSON_AddObjectToObject(st, "details");
        if (d->name)
            cJSON_AddStringToObject(det, "name", d->name);
        if (d->group && *d->group)
            cJSON_AddStringToObject(det, "group", d->group);
        if (d->kind)
            cJSON_AddStringToObject(det, "kind", d->kind);
        if (d->causes)
            cJSON_AddItemReferenceToObject(det, "causes", d->causes);
    }
    cJSON_AddNumberToObject(st, "code", code);
    char *out = cJSON_PrintUnformatted(st);
    cJSON_Delete(st);
    if (!out)
        abort();
    return out;
}

/* ---- logging ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void ks_log(const char *level, const char *msg, const char *fmt, ...)
{
    char ts[40];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t k = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + k, sizeof ts - k, ".%03ldZ", now.tv_nsec / 1000000);
    char rest[1024] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rest, sizeof rest, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "ts=%s level=%s msg=\"%s\"%s%s\n", ts, level, msg, *rest ? " " : "", rest);
    fflush(stderr);
    pthread_mutex_unlock(&log_mu);
}

/* ---- cJSON helpers ---- */

const char *ks_jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

cJSON *ks_jobj(cJSON *parent, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (cJSON_IsObject(v))
        return v;
    if (v)
        cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
    return cJSON_AddObjectToObject(parent, key);
}

void ks_jset(cJSON *o, const char *key, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(o, key))
        cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else
        cJSON_AddItemToObject(o, key, v);
}

void ks_jset_str(cJSON *o, const char *key, const char *v)
{
    ks_jset(o, key, cJSON_CreateString(v));
}

void ks_reorder(cJSON *o, const char *const *keys)
{
    /* relinks the children in place: listed keys first, the rest after */
    size_t n = 0;
    for (cJSON *c = o ? o->child : NULL; c; c = c->next)
        n++;
    if (n < 2)
        return;
    cJSON **v = ks_xmalloc(sizeof(cJSON *) * n);
    size_t k = 0;
    for (int i = 0; keys[i]; i++)
        for (cJSON *c = o->child; c; c = c->next)
            if (c->string && !strcmp(c->string, keys[i])) {
                v[k++] = c;
                break;
            }
    for (cJSON *c = o->child; c; c = c->next) {
        int listed = 0;
        for (size_t j = 0; j < k && !listed; j++)
            listed = v[j] == c;
        if (!listed && k < n)
            v[k++] = c;
    }
    for (size_t i = 0; i < k; i++) {
        v[i]->next = i + 1 < k ? v[i + 1] : NULL;
        v[i]->prev = i > 0 ? v[i - 1] : v[k - 1];
    }
    o->child = v[0];
    free(v);
}
