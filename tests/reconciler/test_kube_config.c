/*
 * Configuration: the kube flag parser, kubeconfig variants (a table of good
 * and broken files), $KUBECONFIG merging, in-cluster files, "nothing found"
 * versus "broken", secrets kept out of messages, and a fuzz loop over the
 * kubeconfig parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "reconciler/kube_internal.h"

static char dir[256];

/* base64 of "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" */
#define B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="
#define SECRET "SECRET-TOKEN-do-not-print"

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void clear_env(void)
{
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("KJ_KUBE_SA_DIR");
    char home[300];
    snprintf(home, sizeof(home), "%s/home", dir);
    setenv("HOME", home, 1);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/kj-kubeconfig-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char p[512];
    snprintf(p, sizeof(p), "%s/home", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/sa", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/sub", dir);
    mkdir(p, 0700);
    write_file("ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    write_file("sub/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    write_file("client.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    write_file("client.key", "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n");
    write_file("token", "  " SECRET "\n");
    write_file("empty-token", "\n\n");
    write_file("crlf-token", SECRET "\r\nX-Injected: yes\n");
    clear_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A table of kubeconfig files: what each resolves to, or how it is broken. */
typedef struct kc_case {
    const char *name;
    const char *yaml;
    const char *context; /* --context */
    int rc;
    const char *server; /* expected, or a substring of the error */
    const char *ns;
    int auth; /* kj_kube_config_auth() */
    int insecure;
} kc_case;

#define CLUSTERS "clusters:\n- name: c1\n  cluster:\n    server: https://one:6443/\n"
#define USERS_TOK "users:\n- name: u1\n  user:\n    token: " SECRET "\n"

static const kc_case cases[] = {
    {"token + file CA",
     "apiVersion: v1\nkind: Config\ncurrent-context: a\n" CLUSTERS
     "    certificate-authority: ca.crt\n" USERS_TOK
     "contexts:\n- name: a\n  context:\n    cluster: c1\n    user: u1\n    namespace: kyuubi\n",
     NULL, 0, "https://one:6443", "kyuubi", 1, 0},
    {"inline data, client cert",
     "current-context: a\n" CLUSTERS "    certificate-authority-data: " B64
     "\nusers:\n- name: u1\n  user:\n"
     "    client-certificate-data: " B64 "\n    client-key-data: " B64 "\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, 0, "https://one:6443", "default", 2, 0},
    {"cert files relative to the kubeconfig",
     "current-context: a\n" CLUSTERS
     "    certificate-authority: sub/ca.crt\nusers:\n- name: u1\n  user:\n"
     "    client-certificate: client.crt\n    client-key: client.key\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, 0, "https://one:6443", "default", 2, 0},
    {"tokenFile",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    tokenFile: token\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1, namespace: ns1}\n",
     NULL, 0, "https://one:6443", "ns1", 1, 0},
    {"--context picks another",
     "current-context: a\nclusters:\n- name: c1\n  cluster: {server: "
     "'https://one'}\n- name: c2\n  cluster:\n    server: "
     "\"https://two:443\"\n    insecure-skip-tls-verify: true\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n- name: b\n  "
     "context: {cluster: c2, namespace: other}\n",
     "b", 0, "https://two:443", "other", 0, 1},
    {"no user is anonymous",
     "current-context: a\n" CLUSTERS "contexts:\n- name: a\n  context: {cluster: c1}\n", NULL, 0,
     "https://one:6443", "default", 0, 0},
    /* broken */
    {"not YAML", "current-context: a\n  - : [\n", NULL, KJ_EINVAL, "invalid YAML", NULL, 0, 0},
    {"not a mapping", "- a\n- b\n", NULL, KJ_EINVAL, "not a mapping", NULL, 0, 0},
    {"clusters not a list", "current-context: a\nclusters: {a: b}\n", NULL, KJ_EINVAL,
     "'clusters' is not a list", NULL, 0, 0},
    {"no current context", CLUSTERS, NULL, KJ_EINVAL, "no current-context", NULL, 0, 0},
    {"unknown context", "current-context: zzz\n" CLUSTERS, NULL, KJ_EINVAL,
     "contexts 'zzz' not found", NULL, 0, 0},
    {"unknown --context",
     "current-context: a\n" CLUSTERS "contexts:\n- name: a\n  context: {cluster: c1}\n", "nope",
     KJ_EINVAL, "contexts 'nope' not found", NULL, 0, 0},
    {"unknown cluster", "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c9}\n",
     NULL, KJ_EINVAL, "clusters 'c9' not found", NULL, 0, 0},
    {"unknown user",
     "current-context: a\n" CLUSTERS "contexts:\n- name: a\n  context: {cluster: c1, user: u9}\n",
     NULL, KJ_EINVAL, "users 'u9' not found", NULL, 0, 0},
    {"cluster without server",
     "current-context: a\nclusters:\n- name: c1\n  cluster: {}\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "has no server", NULL, 0, 0},
    {"server not a string",
     "current-context: a\nclusters:\n- name: c1\n  cluster: {server: [1]}\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "'server' is not a string", NULL, 0, 0},
    {"server not a URL",
     "current-context: a\nclusters:\n- name: c1\n  cluster: {server: one:6443}\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "not an http(s) URL", NULL, 0, 0},
    {"bad base64",
     "current-context: a\n" CLUSTERS "    certificate-authority-data: '%%%%'\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "not valid base64", NULL, 0, 0},
    {"missing CA file",
     "current-context: a\n" CLUSTERS "    certificate-authority: /nonexistent/ca\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "certificate authority '/nonexistent/ca' cannot be read", NULL, 0, 0},
    {"missing token file",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user: {tokenFile: /nonexistent/token}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "/nonexistent/token", NULL, 0, 0},
    {"empty token file",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user: {tokenFile: empty-token}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "is empty", NULL, 0, 0},
    {"cert without key",
     "current-context: a\n" CLUSTERS
     "users:\n- name: u1\n  user: {client-certificate: client.crt}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "needs a client key", NULL, 0, 0},
    {"exec plugin",
     "current-context: a\n" CLUSTERS
     "users:\n- name: u1\n  user:\n    exec: {command: aws, apiVersion: x}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "credential plugin", NULL, 0, 0},
    {"insecure not a bool",
     "current-context: a\n" CLUSTERS "    insecure-skip-tls-verify: perhaps\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "not a boolean", NULL, 0, 0},
    {"entry without name",
     "current-context: a\nclusters:\n- cluster: {server: https://x}\n- 7\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "malformed", NULL, 0, 0},
    {"context is a scalar", "current-context: a\n" CLUSTERS "contexts:\n- name: a\n  context: c1\n",
     NULL, KJ_EINVAL, "has no 'context' mapping", NULL, 0, 0},
    {"token is a list",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user: {token: [" SECRET "]}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "'token' is not a string", NULL, 0, 0},
    /* issue 10: an inline token becomes a header; CR LF in it would add headers */
    {"token with CR LF (header injection)",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: \"" SECRET
     "\\r\\nX-Injected: yes\"\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "user 'u1': 'token' holds characters not allowed in a token", NULL, 0, 0},
    {"token with a bare LF",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: \"" SECRET
     "\\nX-Injected: yes\"\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "not allowed in a token", NULL, 0, 0},
    {"token with a space",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: '" SECRET " x'\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "not allowed in a token", NULL, 0, 0},
    {"token with a NUL",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: \"" SECRET "\\0x\"\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "'token' is not a string", NULL, 0, 0},
    {"token with a non-ASCII character",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: \"" SECRET
     "\xc3\xa9\"\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "not allowed in a token", NULL, 0, 0},
    {"token file with CR LF inside",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user: {tokenFile: crlf-token}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "not allowed in a token", NULL, 0, 0},
    {"impersonation (as)",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: " SECRET
     "\n    as: \"admin\\r\\nX-Injected: yes\"\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "impersonation ('as')", NULL, 0, 0},
    {"impersonation (as-groups)",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: " SECRET
     "\n    as-groups: [system:masters]\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "impersonation ('as-groups')", NULL, 0, 0},
    {"impersonation (as-user-extra)",
     "current-context: a\n" CLUSTERS "users:\n- name: u1\n  user:\n    token: " SECRET
     "\n    as-user-extra: {scopes: [a]}\n"
     "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, KJ_EINVAL, "impersonation ('as-user-extra')", NULL, 0, 0},
    /* issue 10: credentials in the server URL are masked wherever it is shown */
    {"server URL with credentials",
     "current-context: a\nclusters:\n- name: c1\n  cluster:\n    server: https://alice:" SECRET
     "@one:6443/\n" USERS_TOK "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n",
     NULL, 0, "https://xxxxx@one:6443", "default", 1, 0},
    {"server URL with a user only",
     "current-context: a\nclusters:\n- name: c1\n  cluster:\n    server: http://" SECRET
     "@one:8080/api?x=a@b\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, 0, "http://xxxxx@one:8080/api?x=a@b", "default", 0, 0},
    {"bad server URL with credentials",
     "current-context: a\nclusters:\n- name: c1\n  cluster:\n    server: ftp://alice:" SECRET
     "@one/\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "server 'ftp://xxxxx@one' is not an http(s) URL", NULL, 0, 0},
    {"server without a scheme, with credentials",
     "current-context: a\nclusters:\n- name: c1\n  cluster:\n    server: alice:" SECRET
     "@one:6443\n"
     "contexts:\n- name: a\n  context: {cluster: c1}\n",
     NULL, KJ_EINVAL, "server 'xxxxx@one:6443' is not an http(s) URL", NULL, 0, 0},
    {"binary junk", "\x01\x02\xff\xfe: \x00", NULL, KJ_EINVAL, "kubeconfig", NULL, 0, 0},
    {"tab indentation", "current-context: a\nclusters:\n\t- name: c1\n", NULL, KJ_EINVAL,
     "invalid YAML", NULL, 0, 0},
};

static void test_kubeconfig_table(void **state)
{
    (void)state;
    clear_env();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const kc_case *c = &cases[i];
        write_file("kc.yaml", c->yaml);
        char path[512];
        snprintf(path, sizeof(path), "%s/kc.yaml", dir);
        kj_kube_flags f;
        kj_kube_flags_init(&f);
        f.kubeconfig = path;
        f.context = c->context;
        kj_kube_config *cfg = NULL;
        kj_err err = {0};
        int rc = kj_kube_config_load(&f, &cfg, &err);
        if (rc != c->rc)
            fail_msg("case '%s': rc %d, want %d (%s)", c->name, rc, c->rc, err.msg);
        assert_null(strstr(err.msg, SECRET));
        assert_null(strstr(err.msg, "MIIB"));
        if (rc == 0) {
            assert_string_equal(kj_kube_config_server(cfg), c->server);
            assert_string_equal(kj_kube_config_namespace(cfg), c->ns);
            if (kj_kube_config_auth(cfg) != c->auth)
                fail_msg("case '%s': auth %d", c->name, kj_kube_config_auth(cfg));
            assert_int_equal(kj_kube_config_insecure(cfg), c->insecure);
            assert_non_null(strstr(kj_kube_config_source(cfg), "kubeconfig"));
            char d[1024];
            kj_kube_config_describe(cfg, d, sizeof(d));
            assert_non_null(strstr(d, c->server));
            assert_null(strstr(d, SECRET));
            assert_null(strstr(d, "MIIB"));
            kj_kube_config_free(cfg);
        } else {
            assert_null(cfg);
            if (!strstr(err.msg, c->server))
                fail_msg("case '%s': message '%s' lacks '%s'", c->name, err.msg, c->server);
        }
    }
}

static void test_inline_data_decoded(void **state)
{
    (void)state;
    clear_env();
    write_file("kc.yaml", cases[1].yaml);
    char path[512];
    snprintf(path, sizeof(path), "%s/kc.yaml", dir);
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.kubeconfig = path;
    kj_kube_config *cfg;
    kj_err err = {0};
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), 0);
    assert_non_null(cfg->ca_data);
    assert_null(cfg->ca_file);
    assert_int_equal(memcmp(cfg->ca_data, "-----BEGIN CERTIFICATE-----\nMIIB\n", 33), 0);
    char d[1024];
    kj_kube_config_describe(cfg, d, sizeof(d));
    assert_non_null(strstr(d, " auth=cert ca=inline insecure=0"));
    assert_non_null(strstr(d, "namespace=default"));
    assert_non_null(cfg->key_data);
    kj_kube_config *dup;
    assert_int_equal(kj_kube_config_dup(cfg, &dup), 0);
    assert_int_equal(dup->ca_len, cfg->ca_len);
    kj_kube_config_free(dup);
    kj_kube_config_free(cfg);
    kj_kube_config_free(NULL);
}

/* Explicit flags win field by field over the kubeconfig. */
static void test_flags_override(void **state)
{
    (void)state;
    clear_env();
    write_file("kc.yaml", cases[1].yaml); /* inline CA and client cert */
    char path[512], tok[512], ca[512];
    snprintf(path, sizeof(path), "%s/kc.yaml", dir);
    snprintf(tok, sizeof(tok), "%s/token", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.kubeconfig = path;
    f.server = "https://override:1234";
    f.token_file = tok;
    f.ca_file = ca;
    f.namespace_ = "flagns";
    kj_kube_config *cfg;
    kj_err err = {0};
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_server(cfg), "https://override:1234");
    assert_string_equal(kj_kube_config_namespace(cfg), "flagns");
    assert_int_equal(kj_kube_config_auth(cfg), 3);
    assert_string_equal(cfg->ca_file, ca);
    assert_null(cfg->ca_data);
    kj_kube_config_free(cfg);

    /* flags alone */
    kj_kube_flags_init(&f);
    f.server = "https://only:6443";
    f.token_file = tok;
    f.insecure = 1;
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_source(cfg), "flags");
    assert_int_equal(kj_kube_config_insecure(cfg), 1);
    kj_kube_config_free(cfg);

    /* a missing --kubeconfig is broken, not absent */
    kj_kube_flags_init(&f);
    f.kubeconfig = "/nonexistent/kubeconfig";
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), KJ_EINVAL);
    kj_kube_flags_init(&f);
    f.server = "https://x";
    f.token_file = "/nonexistent/token";
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), KJ_EINVAL);
}

/* $KUBECONFIG: a list, missing entries skipped, first file wins. */
static void test_kubeconfig_env_merge(void **state)
{
    (void)state;
    clear_env();
    write_file("a.yaml", "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c1, "
                         "namespace: from-a}\n");
    write_file("b.yaml",
               "current-context: b\n" CLUSTERS "contexts:\n- name: a\n  context: {cluster: zz}\n");
    char env[2048];
    snprintf(env, sizeof(env), "%s/missing.yaml:%s/a.yaml:%s/b.yaml", dir, dir, dir);
    setenv("KUBECONFIG", env, 1);
    kj_kube_config *cfg;
    kj_err err = {0};
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_server(cfg), "https://one:6443");
    assert_string_equal(kj_kube_config_namespace(cfg), "from-a");
    assert_string_equal(kj_kube_config_context(cfg), "a");
    kj_kube_config_free(cfg);

    /* ~/.kube/config when $KUBECONFIG is unset */
    clear_env();
    char p[512];
    snprintf(p, sizeof(p), "%s/home/.kube", dir);
    mkdir(p, 0700);
    write_file("home/.kube/config",
               "current-context: a\n" CLUSTERS "contexts:\n- name: a\n  context: {cluster: c1}\n");
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_server(cfg), "https://one:6443");
    kj_kube_config_free(cfg);
    snprintf(p, sizeof(p), "%s/home/.kube/config", dir);
    unlink(p);
}

/* In-cluster from files the test lays out; nothing at all is KJ_ENOENT. */
static void test_in_cluster_and_nothing(void **state)
{
    (void)state;
    clear_env();
    kj_kube_config *cfg = NULL;
    kj_err err = {0};
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), KJ_ENOENT);
    assert_null(cfg);
    assert_non_null(strstr(err.msg, "no Kubernetes configuration"));
    /* an empty kubeconfig counts as none */
    write_file("home/empty", "");
    char p[512];
    snprintf(p, sizeof(p), "%s/home/empty", dir);
    setenv("KUBECONFIG", p, 1);
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), KJ_ENOENT);
    clear_env();

    char sa[512];
    snprintf(sa, sizeof(sa), "%s/sa", dir);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    setenv("KJ_KUBE_SA_DIR", sa, 1);
    /* the directory is empty: broken, not absent */
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "token"));
    write_file("sa/token", SECRET "\n");
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), KJ_EINVAL);
    assert_non_null(strstr(err.msg, "ca.crt"));
    write_file("sa/ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    assert_int_equal(kj_kube_config_load(NULL, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_server(cfg), "https://10.96.0.1:443");
    assert_string_equal(kj_kube_config_namespace(cfg), "default");
    assert_string_equal(kj_kube_config_source(cfg), "in-cluster");
    assert_int_equal(kj_kube_config_auth(cfg), 1);
    kj_kube_config_free(cfg);
    write_file("sa/namespace", "kyuubi\n");
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    kj_kube_flags f;
    kj_kube_flags_init(&f);
    f.sa_dir = sa;
    assert_int_equal(kj_kube_config_load(&f, &cfg, &err), 0);
    assert_string_equal(kj_kube_config_server(cfg), "https://[fd00::1]:443");
    assert_string_equal(kj_kube_config_namespace(cfg), "kyuubi");
    kj_kube_config_free(cfg);
    clear_env();
}

/* Random mutations of kubeconfig files: a clear answer every time, no crash. */
static void test_fuzz_kubeconfig(void **state)
{
    (void)state;
    clear_env();
    const char *bases[] = {cases[0].yaml, cases[1].yaml, cases[4].yaml, cases[3].yaml};
    const char tokens[] = ":-{}[]\n \t'\"&*!|>#%@`,?";
    char path[512];
    snprintf(path, sizeof(path), "%s/fuzz.yaml", dir);
    srand(7);
    int ok = 0, broken = 0;
    for (int it = 0; it < 2000; it++) {
        const char *b = bases[rand() % 4];
        size_t len = strlen(b);
        char *m = malloc(len + 32);
        memcpy(m, b, len);
        int nmut = 1 + rand() % 4;
        for (int k = 0; k < nmut && len > 0; k++) {
            size_t at = (size_t)rand() % len;
            switch (rand() % 4) {
            case 0:
                m[at] = tokens[rand() % (sizeof(tokens) - 1)];
                break;
            case 1:
                m[at] = (char)(rand() & 0xff);
                break;
            case 2:
                len = at;
                break;
            default:
                memmove(m + at, m + at + 1, len - at - 1);
                len--;
            }
        }
        FILE *f = fopen(path, "wb");
        fwrite(m, 1, len, f);
        fclose(f);
        free(m);
        kj_kube_flags fl;
        kj_kube_flags_init(&fl);
        fl.kubeconfig = path;
        kj_kube_config *cfg = NULL;
        kj_err err = {0};
        int rc = kj_kube_config_load(&fl, &cfg, &err);
        if (rc == 0) {
            ok++;
            kj_kube_config_free(cfg);
        } else {
            broken++;
            assert_true(rc == KJ_EINVAL || rc == KJ_ENOENT);
            assert_true(strlen(err.msg) > 0);
            assert_null(strstr(err.msg, SECRET));
        }
    }
    assert_true(ok > 0 && broken > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubeconfig_table),
        cmocka_unit_test(test_inline_data_decoded),
        cmocka_unit_test(test_flags_override),
        cmocka_unit_test(test_kubeconfig_env_merge),
        cmocka_unit_test(test_in_cluster_and_nothing),
        cmocka_unit_test(test_fuzz_kubeconfig),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
