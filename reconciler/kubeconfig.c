/*
 * kubeconfig.c - the kube flags, kubeconfig files (libyaml) and in-cluster
 * configuration, merged like client-go does.
 *
 * Invariant: no message built here carries a token, key or certificate: they
 * name the file, the entry and the field, never a value.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "reconciler/kube_internal.h"

#define MAX_CONFIG_FILE (4u << 20)
#define MAX_KUBECONFIGS 16

void kj_kube_flags_init(kj_kube_flags *f)
{
    memset(f, 0, sizeof(*f));
    f->qps = KJ_KUBE_DEFAULT_QPS;
    f->burst = KJ_KUBE_DEFAULT_BURST;
    f->max_in_flight = KJ_KUBE_DEFAULT_IN_FLIGHT;
}

/* ---- small helpers ----------------------------------------------------- */

void kj_kube_free_secret(void *s, size_t len)
{
    if (!s)
        return;
    volatile unsigned char *p = s;
    for (size_t i = 0; i < len; i++)
        p[i] = 0;
    free(s);
}

static void free_str_secret(char *s)
{
    if (s)
        kj_kube_free_secret(s, strlen(s));
}

int kj_kube_read_file(const char *path, size_t max, char **out, size_t *len, kj_err *err)
{
    int rc = 0;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    FILE *fp = fopen(path, "rb");
    *out = NULL;
    if (len)
        *len = 0;
    if (!fp)
        return kj_err_set(err, errno == ENOENT ? KJ_ENOENT : KJ_EIO, "cannot open '%s': %s", path,
                          strerror(errno));
    for (;;) {
        if (kj_grow((void **)&buf, &cap, n + 4096 + 1, 1)) {
            rc = kj_err_set(err, KJ_ENOMEM, "out of memory reading '%s'", path);
            goto out;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        n += r;
        if (n > max) {
            rc = kj_err_set(err, KJ_EINVAL, "'%s' is larger than %zu bytes", path, max);
            goto out;
        }
        if (r == 0) {
            if (ferror(fp)) {
                rc = kj_err_set(err, KJ_EIO, "cannot read '%s'", path);
                goto out;
            }
            break;
        }
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    buf = NULL;
out:
    if (buf)
        kj_kube_free_secret(buf, cap);
    fclose(fp);
    return rc;
}

static int token_bytes_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return 0;
    return n > 0;
}

int kj_kube_token_valid(const char *t)
{
    return t && token_bytes_ok(t, strlen(t));
}

int kj_kube_read_token(const char *path, char **out, kj_err *err)
{
    char *buf;
    size_t len, n;
    int rc = kj_kube_read_file(path, 64 * 1024, &buf, &len, err);
    if (rc < 0)
        return kj_err_prefix(err, "token file");
    size_t a = 0;
    n = len;
    while (a < n && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\n' || buf[a] == '\r'))
        a++;
    while (n > a &&
           (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == a) {
        kj_kube_free_secret(buf, len);
        return kj_err_set(err, KJ_EINVAL, "token file '%s' is empty", path);
    }
    /* every byte, a NUL included: the header would end at the first NUL */
    if (!token_bytes_ok(buf + a, n - a)) {
        kj_kube_free_secret(buf, len);
        return kj_err_set(err, KJ_EINVAL, "token file '%s' holds characters not allowed in a token",
                          path);
    }
    memmove(buf, buf + a, n - a);
    memset(buf + (n - a), 0, len - (n - a));
    *out = buf;
    return 0;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int kj_kube_b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
    unsigned char *o = malloc(len / 4 * 3 + 4);
    if (!o)
        return KJ_ENOMEM;
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64val(c);
        if (v < 0 || pad) {
            kj_kube_free_secret(o, len / 4 * 3 + 4);
            return KJ_EINVAL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (bits >= 6 || pad > 2 || n == 0) {
        kj_kube_free_secret(o, len / 4 * 3 + 4);
        return KJ_EINVAL;
    }
    o[n] = 0;
    *out = o;
    *out_len = n;
    return 0;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int dup_blob(const unsigned char *src, size_t len, unsigned char **dst)
{
    *dst = NULL;
    if (!src)
        return 0;
    *dst = malloc(len + 1);
    if (!*dst)
        return KJ_ENOMEM;
    memcpy(*dst, src, len);
    (*dst)[len] = 0;
    return 0;
}

void kj_kube_config_free(kj_kube_config *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->server_shown);
    free(c->namespace_);
    free(c->source);
    free(c->context);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c->token_file);
    kj_kube_free_secret(c->ca_data, c->ca_len);
    kj_kube_free_secret(c->cert_data, c->cert_len);
    kj_kube_free_secret(c->key_data, c->key_len);
    free_str_secret(c->token);
    free(c);
}

int kj_kube_config_dup(const kj_kube_config *c, kj_kube_config **out)
{
    kj_kube_config *d = calloc(1, sizeof(*d));
    if (!d)
        return KJ_ENOMEM;
    *d = *c;
    d->server = xstrdup(c->server);
    d->server_shown = xstrdup(c->server_shown);
    d->namespace_ = xstrdup(c->namespace_);
    d->source = xstrdup(c->source);
    d->context = xstrdup(c->context);
    d->ca_file = xstrdup(c->ca_file);
    d->cert_file = xstrdup(c->cert_file);
    d->key_file = xstrdup(c->key_file);
    d->token_file = xstrdup(c->token_file);
    d->token = xstrdup(c->token);
    int r = dup_blob(c->ca_data, c->ca_len, &d->ca_data);
    r |= dup_blob(c->cert_data, c->cert_len, &d->cert_data);
    r |= dup_blob(c->key_data, c->key_len, &d->key_data);
    if (r || (c->server && !d->server) || (c->server_shown && !d->server_shown) ||
        (c->namespace_ && !d->namespace_) || (c->source && !d->source) ||
        (c->context && !d->context) || (c->ca_file && !d->ca_file) ||
        (c->cert_file && !d->cert_file) || (c->key_file && !d->key_file) ||
        (c->token_file && !d->token_file) || (c->token && !d->token)) {
        kj_kube_config_free(d);
        return KJ_ENOMEM;
    }
    *out = d;
    return 0;
}

const char *kj_kube_config_server(const kj_kube_config *c)
{
    return c ? (c->server_shown ? c->server_shown : c->server) : NULL;
}

char *kj_kube_redact_url(const char *url)
{
    if (!url)
        return NULL;
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return strdup(url);
    static const char mask[] = "xxxxx";
    size_t pre = (size_t)(auth - url), n = pre + sizeof(mask) - 1 + strlen(at) + 1;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%.*s%s%s", (int)pre, url, mask, at);
    return r;
}
const char *kj_kube_config_namespace(const kj_kube_config *c)
{
    return c && c->namespace_ && *c->namespace_ ? c->namespace_ : "default";
}
const char *kj_kube_config_source(const kj_kube_config *c)
{
    return c ? c->source : NULL;
}
const char *kj_kube_config_context(const kj_kube_config *c)
{
    return c ? c->context : NULL;
}
int kj_kube_config_insecure(const kj_kube_config *c)
{
    return c ? c->insecure : 0;
}
const char *kj_kube_config_describe(const kj_kube_config *c, char *buf, size_t size)
{
    char src[600], ctx[300], srv[600];
    if (!c) {
        snprintf(buf, size, "none");
        return buf;
    }
    const char *auth = c->token_file ? "token-file" : c->token ? "token" : "none";
    if (c->cert_file || c->cert_data)
        auth = c->token_file ? "token-file+cert" : c->token ? "token+cert" : "cert";
    snprintf(
        buf, size, "server=%s source=%s context=%s namespace=%s auth=%s ca=%s insecure=%d",
        kj_logq(srv, sizeof(srv), kj_kube_config_server(c)), kj_logq(src, sizeof(src), c->source),
        kj_logq(ctx, sizeof(ctx), c->context ? c->context : "-"), kj_kube_config_namespace(c), auth,
        c->ca_data   ? "inline"
        : c->ca_file ? "file"
                     : "system",
        c->insecure);
    return buf;
}

int kj_kube_config_auth(const kj_kube_config *c)
{
    if (!c)
        return 0;
    return ((c->token || c->token_file) ? 1 : 0) | ((c->cert_file || c->cert_data) ? 2 : 0);
}

/* Replaces *dst with a copy of src. */
static int set_str(char **dst, const char *src)
{
    char *n = src ? strdup(src) : NULL;
    if (src && !n)
        return KJ_ENOMEM;
    free(*dst);
    *dst = n;
    return 0;
}

/* Joins a path relative to dir (client-go resolves kubeconfig paths against the file's directory).
 */
static char *resolve_path(const char *dir, const char *p)
{
    if (p[0] == '/' || !dir || !*dir)
        return strdup(p);
    size_t n = strlen(dir) + strlen(p) + 2;
    char *r = malloc(n);
    if (r)
        snprintf(r, n, "%s/%s", dir, p);
    return r;
}

/* ---- kubeconfig (libyaml document API) --------------------------------- */

typedef struct kcfile {
    char *path;
    char *dir;
    yaml_document_t doc;
    int loaded;
} kcfile;

static yaml_node_t *yroot(kcfile *f)
{
    return yaml_document_get_root_node(&f->doc);
}

static yaml_node_t *yget(kcfile *f, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&f->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strlen(key) == k->data.scalar.length &&
            !memcmp(k->data.scalar.value, key, k->data.scalar.length))
            return yaml_document_get_node(&f->doc, p->value);
    }
    return NULL;
}

/* The scalar at map[key]: 0 and *out NULL when absent or null, KJ_EINVAL when not a scalar. */
static int yscalar(kcfile *f, yaml_node_t *map, const char *key, const char **out)
{
    yaml_node_t *n = yget(f, map, key);
    *out = NULL;
    if (!n)
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return KJ_EINVAL;
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
        (!strcmp(v, "~") || !strcmp(v, "null") || !*v))
        return 0;
    if (strlen(v) != n->data.scalar.length)
        return KJ_EINVAL; /* embedded NUL */
    *out = v;
    return 0;
}

static int load_kcfile(kcfile *f, kj_err *err)
{
    int rc = 0;
    char *buf = NULL;
    size_t len = 0;
    yaml_parser_t parser;
    int pinit = 0;

    rc = kj_kube_read_file(f->path, MAX_CONFIG_FILE, &buf, &len, err);
    if (rc < 0)
        goto out;
    if (!yaml_parser_initialize(&parser)) {
        rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
        goto out;
    }
    pinit = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &f->doc)) {
        rc = kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': invalid YAML at line %zu column %zu: %s",
                        f->path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                        parser.problem ? parser.problem : "parse error");
        goto out;
    }
    f->loaded = 1;
    yaml_node_t *root = yroot(f);
    if (root && root->type != YAML_MAPPING_NODE) {
        rc = kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': the document is not a mapping", f->path);
        goto out;
    }
    const char *kinds[] = {"clusters", "users", "contexts"};
    for (size_t i = 0; root && i < 3; i++) {
        yaml_node_t *s = yget(f, root, kinds[i]);
        if (s && !(s->type == YAML_SEQUENCE_NODE ||
                   (s->type == YAML_SCALAR_NODE &&
                    (!strcmp((char *)s->data.scalar.value, "null") || !s->data.scalar.length)))) {
            rc = kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': '%s' is not a list", f->path,
                            kinds[i]);
            goto out;
        }
    }
    const char *cc;
    if (yscalar(f, root, "current-context", &cc) < 0) {
        rc =
            kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': current-context is not a string", f->path);
        goto out;
    }
out:
    if (pinit)
        yaml_parser_delete(&parser);
    if (buf)
        kj_kube_free_secret(buf, len);
    return rc;
}

/* An empty file (no document, or an empty mapping) counts as "no kubeconfig". */
static int kcfile_empty(kcfile *f)
{
    yaml_node_t *root = yroot(f);
    return !root || (root->type == YAML_MAPPING_NODE &&
                     root->data.mapping.pairs.top == root->data.mapping.pairs.start);
}

/* Finds the entry named name in list kind (clusters/users/contexts) across
 * files, first file wins; returns the inner mapping (cluster/user/context). */
static int find_named(kcfile *files, size_t nf, const char *kind, const char *inner,
                      const char *name, kcfile **ff, yaml_node_t **out, kj_err *err)
{
    for (size_t i = 0; i < nf; i++) {
        yaml_node_t *seq = yget(&files[i], yroot(&files[i]), kind);
        if (!seq || seq->type != YAML_SEQUENCE_NODE)
            continue;
        for (yaml_node_item_t *it = seq->data.sequence.items.start;
             it < seq->data.sequence.items.top; it++) {
            yaml_node_t *e = yaml_document_get_node(&files[i].doc, *it);
            const char *n;
            if (!e || e->type != YAML_MAPPING_NODE || yscalar(&files[i], e, "name", &n) < 0)
                return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': an entry of '%s' is malformed",
                                  files[i].path, kind);
            if (!n || strcmp(n, name))
                continue;
            yaml_node_t *m = yget(&files[i], e, inner);
            if (!m || m->type != YAML_MAPPING_NODE)
                return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': %s '%s' has no '%s' mapping",
                                  files[i].path, kind, name, inner);
            *ff = &files[i];
            *out = m;
            return 0;
        }
    }
    return kj_err_set(err, KJ_EINVAL, "kubeconfig: %s '%s' not found", kind, name);
}

/* Reads field key of map as a string; KJ_EINVAL naming the field if not a scalar. */
static int field(kcfile *f, yaml_node_t *map, const char *what, const char *key, const char **out,
                 kj_err *err)
{
    if (yscalar(f, map, key, out) < 0)
        return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': %s: '%s' is not a string", f->path,
                          what, key);
    return 0;
}

static int path_field(kcfile *f, yaml_node_t *map, const char *what, const char *key, char **dst,
                      kj_err *err)
{
    const char *v;
    int rc = field(f, map, what, key, &v, err);
    if (rc < 0 || !v)
        return rc;
    char *p = resolve_path(f->dir, v);
    if (!p)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    free(*dst);
    *dst = p;
    return 0;
}

static int data_field(kcfile *f, yaml_node_t *map, const char *what, const char *key,
                      unsigned char **dst, size_t *dlen, kj_err *err)
{
    const char *v;
    int rc = field(f, map, what, key, &v, err);
    if (rc < 0 || !v)
        return rc;
    unsigned char *d;
    size_t n;
    rc = kj_kube_b64_decode(v, strlen(v), &d, &n);
    if (rc == KJ_ENOMEM)
        return kj_err_set(err, rc, "out of memory");
    if (rc < 0)
        return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': %s: '%s' is not valid base64", f->path,
                          what, key);
    *dst = d;
    *dlen = n;
    return 0;
}

static int bool_field(kcfile *f, yaml_node_t *map, const char *what, const char *key, int *out,
                      kj_err *err)
{
    const char *v;
    int rc = field(f, map, what, key, &v, err);
    if (rc < 0 || !v)
        return rc;
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE") || !strcmp(v, "yes"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE") || !strcmp(v, "no"))
        *out = 0;
    else
        return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': %s: '%s' is not a boolean", f->path,
                          what, key);
    return 0;
}

/* The cluster's server and how to verify it. */
static int cluster_from(kcfile *files, size_t nf, const char *cluster, kj_kube_config *c,
                        kj_err *err)
{
    int rc;
    kcfile *f;
    yaml_node_t *m;
    char what[320];
    if ((rc = find_named(files, nf, "clusters", "cluster", cluster, &f, &m, err)) < 0)
        return rc;
    snprintf(what, sizeof(what), "cluster '%s'", cluster);
    const char *server;
    if ((rc = field(f, m, what, "server", &server, err)) < 0)
        return rc;
    if (!server)
        return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': cluster '%s' has no server", f->path,
                          cluster);
    if ((rc = set_str(&c->server, server)) < 0)
        return kj_err_set(err, rc, "out of memory");
    if ((rc = path_field(f, m, what, "certificate-authority", &c->ca_file, err)) < 0 ||
        (rc = data_field(f, m, what, "certificate-authority-data", &c->ca_data, &c->ca_len, err)) <
            0 ||
        (rc = bool_field(f, m, what, "insecure-skip-tls-verify", &c->insecure, err)) < 0)
        return rc;
    if (c->ca_data) { /* client-go: data wins over the file */
        free(c->ca_file);
        c->ca_file = NULL;
    }
    return 0;
}

/* The user's credentials: a token, a token file, a client certificate; no
 * credential plugins, no impersonation. */
static int user_from(kcfile *files, size_t nf, const char *user, kj_kube_config *c, kj_err *err)
{
    int rc;
    kcfile *f;
    yaml_node_t *m;
    char what[320];
    if ((rc = find_named(files, nf, "users", "user", user, &f, &m, err)) < 0)
        return rc;
    snprintf(what, sizeof(what), "user '%s'", user);
    if (yget(f, m, "exec") || yget(f, m, "auth-provider"))
        return kj_err_set(err, KJ_EINVAL,
                          "kubeconfig '%s': user '%s' uses a credential plugin (exec or "
                          "auth-provider), which kjournal does not support; use a token, a token "
                          "file or a client certificate",
                          f->path, user);
    /* Impersonation would mean headers built from these fields; without it
     * the requests would go out as the user itself, not as the one asked for. */
    static const char *const impersonation[] = {"as", "as-uid", "as-groups", "as-user-extra"};
    for (size_t i = 0; i < sizeof(impersonation) / sizeof(impersonation[0]); i++)
        if (yget(f, m, impersonation[i]))
            return kj_err_set(err, KJ_EINVAL,
                              "kubeconfig '%s': user '%s' asks for impersonation ('%s'), which "
                              "kjournal does not support; give the credentials of the identity "
                              "to act as",
                              f->path, user, impersonation[i]);
    const char *tok;
    if ((rc = field(f, m, what, "token", &tok, err)) < 0)
        return rc;
    /* The token becomes an HTTP header: a CR or LF in it would add headers
     * of its own (the token file is held to the same rule). */
    if (tok && !kj_kube_token_valid(tok))
        return kj_err_set(err, KJ_EINVAL,
                          "kubeconfig '%s': user '%s': 'token' holds characters not allowed in a "
                          "token (only printable ASCII without spaces)",
                          f->path, user);
    if (tok && !(c->token = strdup(tok)))
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    if ((rc = path_field(f, m, what, "tokenFile", &c->token_file, err)) < 0 ||
        (rc = path_field(f, m, what, "client-certificate", &c->cert_file, err)) < 0 ||
        (rc = data_field(f, m, what, "client-certificate-data", &c->cert_data, &c->cert_len, err)) <
            0 ||
        (rc = path_field(f, m, what, "client-key", &c->key_file, err)) < 0 ||
        (rc = data_field(f, m, what, "client-key-data", &c->key_data, &c->key_len, err)) < 0)
        return rc;
    if (c->cert_data) {
        free(c->cert_file);
        c->cert_file = NULL;
    }
    if (c->key_data) {
        free(c->key_file);
        c->key_file = NULL;
    }
    return 0;
}

/* The context (--context, else the first current-context), then its cluster
 * and user. */
static int from_kubeconfig(kcfile *files, size_t nf, const char *want_ctx, kj_kube_config *c,
                           kj_err *err)
{
    int rc;
    const char *ctx = want_ctx;
    char what[320];
    for (size_t i = 0; !ctx && i < nf; i++)
        if (yscalar(&files[i], yroot(&files[i]), "current-context", &ctx) < 0)
            ctx = NULL;
    if (!ctx)
        return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': no current-context and no --context",
                          files[0].path);
    if ((rc = set_str(&c->context, ctx)) < 0)
        return kj_err_set(err, rc, "out of memory");

    kcfile *f;
    yaml_node_t *m;
    if ((rc = find_named(files, nf, "contexts", "context", ctx, &f, &m, err)) < 0)
        return rc;
    const char *cluster, *user, *ns;
    snprintf(what, sizeof(what), "context '%s'", ctx);
    if ((rc = field(f, m, what, "cluster", &cluster, err)) < 0 ||
        (rc = field(f, m, what, "user", &user, err)) < 0 ||
        (rc = field(f, m, what, "namespace", &ns, err)) < 0)
        return rc;
    if (!cluster)
        return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s': context '%s' names no cluster", f->path,
                          ctx);
    if (ns && (rc = set_str(&c->namespace_, ns)) < 0)
        return kj_err_set(err, rc, "out of memory");
    if ((rc = cluster_from(files, nf, cluster, c, err)) < 0)
        return rc;
    return user ? user_from(files, nf, user, c, err) : 0;
}

static void free_kcfiles(kcfile *files, size_t nf)
{
    for (size_t i = 0; i < nf; i++) {
        if (files[i].loaded)
            yaml_document_delete(&files[i].doc);
        free(files[i].path);
        free(files[i].dir);
    }
}

static int add_kcfile(kcfile *files, size_t *nf, const char *path, size_t plen)
{
    if (*nf >= MAX_KUBECONFIGS)
        return 0;
    kcfile *f = &files[*nf];
    memset(f, 0, sizeof(*f));
    f->path = strndup(path, plen);
    if (!f->path)
        return KJ_ENOMEM;
    const char *slash = strrchr(f->path, '/');
    f->dir = slash ? strndup(f->path, (size_t)(slash - f->path) + (slash == f->path)) : strdup(".");
    if (!f->dir) {
        free(f->path);
        return KJ_ENOMEM;
    }
    (*nf)++;
    return 0;
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---- in-cluster -------------------------------------------------------- */

static int from_in_cluster(const char *sa_dir, kj_kube_config *c, kj_err *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    char buf[PATH_MAX];
    int rc;
    if (!host || !*host || !port || !*port)
        return KJ_ENOENT;
    if (strchr(host, '/') || strchr(port, '/'))
        return kj_err_set(err, KJ_EINVAL,
                          "in-cluster: KUBERNETES_SERVICE_HOST/_PORT are malformed");
    snprintf(buf, sizeof(buf), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    if ((rc = set_str(&c->server, buf)) < 0 || (rc = set_str(&c->source, "in-cluster")) < 0)
        return kj_err_set(err, rc, "out of memory");
    snprintf(buf, sizeof(buf), "%s/token", sa_dir);
    if (!file_exists(buf))
        return kj_err_set(err, KJ_EINVAL, "in-cluster: service-account token '%s' does not exist",
                          buf);
    if ((rc = set_str(&c->token_file, buf)) < 0)
        return kj_err_set(err, rc, "out of memory");
    snprintf(buf, sizeof(buf), "%s/ca.crt", sa_dir);
    if (!file_exists(buf))
        return kj_err_set(err, KJ_EINVAL, "in-cluster: service-account CA '%s' does not exist",
                          buf);
    if ((rc = set_str(&c->ca_file, buf)) < 0)
        return kj_err_set(err, rc, "out of memory");
    snprintf(buf, sizeof(buf), "%s/namespace", sa_dir);
    char *ns = NULL;
    if (kj_kube_read_token(buf, &ns, NULL) == 0) { /* optional; same trimming as a token */
        rc = set_str(&c->namespace_, ns);
        free(ns);
        if (rc < 0)
            return kj_err_set(err, rc, "out of memory");
    }
    return 0;
}

/* ---- putting it together ----------------------------------------------- */

/* Checks that every file the config names can be read now. */
static int check_files(kj_kube_config *c, kj_err *err)
{
    const struct {
        const char *what;
        const char *path;
    } fs[] = {{"certificate authority", c->ca_file},
              {"client certificate", c->cert_file},
              {"client key", c->key_file}};
    for (size_t i = 0; i < 3; i++) {
        if (!fs[i].path)
            continue;
        char *buf;
        size_t n;
        int rc = kj_kube_read_file(fs[i].path, MAX_CONFIG_FILE, &buf, &n, err);
        if (rc < 0)
            return kj_err_set(err, KJ_EINVAL, "%s '%s' cannot be read", fs[i].what, fs[i].path);
        kj_kube_free_secret(buf, n);
        if (n == 0)
            return kj_err_set(err, KJ_EINVAL, "%s '%s' is empty", fs[i].what, fs[i].path);
    }
    if ((c->cert_file || c->cert_data) != (c->key_file || c->key_data))
        return kj_err_set(err, KJ_EINVAL, "a client certificate needs a client key and vice versa");
    if (c->token_file) {
        char *t;
        int rc = kj_kube_read_token(c->token_file, &t, err);
        if (rc < 0) {
            if (err)
                err->code = KJ_EINVAL;
            return KJ_EINVAL;
        }
        free_str_secret(t);
        free_str_secret(c->token); /* the file wins */
        c->token = NULL;
    }
    /* Messages and logs show the server without the credentials a URL may
     * carry (https://user:password@host). */
    size_t sl = strlen(c->server);
    while (sl > 0 && c->server[sl - 1] == '/')
        c->server[--sl] = '\0';
    free(c->server_shown);
    if (!(c->server_shown = kj_kube_redact_url(c->server)))
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    if (strncmp(c->server, "https://", 8) && strncmp(c->server, "http://", 7))
        return kj_err_set(err, KJ_EINVAL, "server '%s' is not an http(s) URL", c->server_shown);
    for (size_t i = 0; i < sl; i++)
        if ((unsigned char)c->server[i] <= 0x20 || c->server[i] == 0x7f)
            return kj_err_set(err, KJ_EINVAL, "server URL holds a control character or a space");
    return 0;
}

/* Which kubeconfig files, loaded: --kubeconfig (must exist), else
 * $KUBECONFIG (missing entries skipped, like client-go), else ~/.kube/config.
 * Empty files are dropped; none left (*nf 0) means no kubeconfig. On failure
 * the caller still frees files[0..*nf). */
static int find_kcfiles(const kj_kube_flags *fl, kcfile *files, size_t *nf, kj_err *err)
{
    int rc = 0;
    char home_cfg[PATH_MAX];
    if (fl->kubeconfig) {
        if (!file_exists(fl->kubeconfig))
            return kj_err_set(err, KJ_EINVAL, "kubeconfig '%s' does not exist", fl->kubeconfig);
        rc = add_kcfile(files, nf, fl->kubeconfig, strlen(fl->kubeconfig));
    } else if (getenv("KUBECONFIG") && *getenv("KUBECONFIG")) {
        const char *s = getenv("KUBECONFIG");
        while (*s && rc == 0) {
            const char *e = strchr(s, ':');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            char p[PATH_MAX];
            snprintf(p, sizeof(p), "%.*s", (int)(n < PATH_MAX - 1 ? n : PATH_MAX - 1), s);
            if (n && file_exists(p))
                rc = add_kcfile(files, nf, s, n);
            s += n + (e ? 1 : 0);
        }
    } else if (getenv("HOME") && *getenv("HOME")) {
        snprintf(home_cfg, sizeof(home_cfg), "%s/.kube/config", getenv("HOME"));
        if (file_exists(home_cfg))
            rc = add_kcfile(files, nf, home_cfg, strlen(home_cfg));
    }
    if (rc < 0)
        return kj_err_set(err, rc, "out of memory");
    for (size_t i = 0; i < *nf; i++)
        if ((rc = load_kcfile(&files[i], err)) < 0) {
            if (rc == KJ_ENOENT || rc == KJ_EIO)
                rc = kj_err_set(err, KJ_EINVAL, "kubeconfig '%s' cannot be read", files[i].path);
            return rc;
        }
    size_t kept = 0;
    for (size_t i = 0; i < *nf; i++) {
        if (kcfile_empty(&files[i])) {
            free_kcfiles(&files[i], 1);
            continue;
        }
        files[kept++] = files[i];
    }
    *nf = kept;
    return 0;
}

/* Explicit flags win over the kubeconfig or in-cluster values, field by
 * field. 0 or KJ_ENOMEM. */
static int apply_flags(const kj_kube_flags *fl, kj_kube_config *c)
{
    int rc;
    if (fl->server && (rc = set_str(&c->server, fl->server)) < 0)
        return rc;
    if (fl->token_file && (rc = set_str(&c->token_file, fl->token_file)) < 0)
        return rc;
    if (fl->ca_file) {
        if ((rc = set_str(&c->ca_file, fl->ca_file)) < 0)
            return rc;
        kj_kube_free_secret(c->ca_data, c->ca_len);
        c->ca_data = NULL;
        c->ca_len = 0;
    }
    if (fl->client_cert) {
        if ((rc = set_str(&c->cert_file, fl->client_cert)) < 0)
            return rc;
        kj_kube_free_secret(c->cert_data, c->cert_len);
        c->cert_data = NULL;
        c->cert_len = 0;
    }
    if (fl->client_key) {
        if ((rc = set_str(&c->key_file, fl->client_key)) < 0)
            return rc;
        kj_kube_free_secret(c->key_data, c->key_len);
        c->key_data = NULL;
        c->key_len = 0;
    }
    if (fl->insecure)
        c->insecure = 1;
    if (fl->namespace_ && (rc = set_str(&c->namespace_, fl->namespace_)) < 0)
        return rc;
    c->qps = fl->qps;
    c->burst = fl->burst > 0 ? fl->burst : 1;
    c->max_in_flight = fl->max_in_flight > 0 ? fl->max_in_flight : KJ_KUBE_DEFAULT_IN_FLIGHT;
    return 0;
}

int kj_kube_config_load(const kj_kube_flags *fl, kj_kube_config **out, kj_err *err)
{
    int rc = 0;
    kj_kube_flags defaults;
    kcfile files[MAX_KUBECONFIGS];
    size_t nf = 0;
    kj_kube_config *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (!c)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    if (!fl) {
        kj_kube_flags_init(&defaults);
        fl = &defaults;
    }
    if ((rc = find_kcfiles(fl, files, &nf, err)) < 0)
        goto out;

    if (nf > 0) {
        if ((rc = from_kubeconfig(files, nf, fl->context, c, err)) < 0)
            goto out;
        char src[PATH_MAX + 16];
        snprintf(src, sizeof(src), "kubeconfig %s", files[0].path);
        if ((rc = set_str(&c->source, src)) < 0)
            goto oom;
    } else if (fl->context) {
        rc =
            kj_err_set(err, KJ_EINVAL, "--context '%s' given but no kubeconfig found", fl->context);
        goto out;
    } else if (!fl->server) {
        const char *sa = fl->sa_dir ? fl->sa_dir : getenv("KJ_KUBE_SA_DIR");
        rc = from_in_cluster(sa && *sa ? sa : KJ_KUBE_DEFAULT_SA_DIR, c, err);
        if (rc == KJ_ENOENT) {
            kj_err_set(
                err, KJ_ENOENT,
                "no Kubernetes configuration: no --server, no kubeconfig and not in a cluster");
            goto out;
        }
        if (rc < 0)
            goto out;
    } else if ((rc = set_str(&c->source, "flags")) < 0) {
        goto oom;
    }

    if ((rc = apply_flags(fl, c)) < 0)
        goto oom;
    if (!c->server) {
        rc = kj_err_set(err, KJ_EINVAL, "no server in the Kubernetes configuration");
        goto out;
    }
    if ((rc = check_files(c, err)) < 0)
        goto out;
    *out = c;
    c = NULL;
    goto out;
oom:
    rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
out:
    free_kcfiles(files, nf);
    kj_kube_config_free(c);
    return rc;
}
