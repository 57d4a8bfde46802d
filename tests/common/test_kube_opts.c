/*
 * test_kube_opts.c - the kube and policy flags of kjournald and kjournal
 * recover: each row a command line and what it sets, or the usage error
 * naming the flag.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tools/common/kube_opts.h"

#define MIN 60000LL

typedef struct parsed {
    kj_kube_flags kube;
    kj_policy pol;
    char err[1024];
    char args[512]; /* what the parsed strings point into */
    int rc;
} parsed;

/* Parses the space-separated args ("_" is an empty argument) with the kube
 * and policy tables, capturing stderr. */
static void parse(const char *args, parsed *p)
{
    char *argv[64] = {"prog"};
    int argc = 1, n;
    snprintf(p->args, sizeof p->args, "%s", args);
    for (char *t = strtok(p->args, " "); t && argc < 63; t = strtok(NULL, " "))
        argv[argc++] = strcmp(t, "_") ? t : "";
    kj_kube_flags_init(&p->kube);
    kj_policy_init(&p->pol);
    kj_opt kube[KJ_KUBE_OPTS], pol[KJ_POLICY_OPTS];
    kj_kube_opts(kube, &p->kube);
    kj_policy_opts(pol, &p->pol);
    const kj_opt opts[] = {KJ_OPTS_INCLUDE(kube), KJ_OPTS_INCLUDE(pol), {0}};
    int fds[2], saved = dup(2);
    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    dup2(fds[1], 2);
    p->rc = kj_opts_parse("prog", opts, argc, argv, &n);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    ssize_t got = read(fds[0], p->err, sizeof p->err - 1);
    p->err[got > 0 ? got : 0] = '\0';
    close(fds[0]);
    if (!p->rc && n)
        p->rc = -1; /* nothing here takes operands */
}

static void test_kube_flags(void **state)
{
    (void)state;
    parsed p;
    parse("--server https://k:6443 --token-file=/t --qps 20 --burst=40 --insecure-skip-tls-verify"
          " --context prod --kubeconfig /k --certificate-authority /ca --client-certificate /c"
          " --client-key=/key",
          &p);
    assert_int_equal(p.rc, 0);
    assert_string_equal(p.kube.server, "https://k:6443");
    assert_string_equal(p.kube.token_file, "/t");
    assert_string_equal(p.kube.context, "prod");
    assert_string_equal(p.kube.kubeconfig, "/k");
    assert_string_equal(p.kube.ca_file, "/ca");
    assert_string_equal(p.kube.client_cert, "/c");
    assert_string_equal(p.kube.client_key, "/key");
    assert_true(p.kube.qps == 20.0);
    assert_int_equal(p.kube.burst, 40);
    assert_int_equal(p.kube.insecure, 1);
    parse("", &p);
    assert_true(p.kube.qps == KJ_KUBE_DEFAULT_QPS);
    assert_int_equal(p.kube.burst, KJ_KUBE_DEFAULT_BURST);
}

static void test_policy_flags(void **state)
{
    (void)state;
    parsed p;
    parse("--namespace a --namespace b --selector app=x --finalizer example.com/f"
          " --retain-terminated 1h --cleanup-kind completed --engine-grace 1min --submit-grace 1w"
          " --running-orphans delete --orphan-grace 0 --concurrency 1024",
          &p);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.pol.n_namespaces, 2);
    assert_string_equal(p.pol.namespaces[1], "b");
    assert_string_equal(p.pol.selector, "app=x");
    assert_string_equal(p.pol.finalizer, "example.com/f");
    assert_int_equal(p.pol.retain_terminated_ms, 60 * MIN);
    assert_int_equal(p.pol.cleanup_kind, KJ_CLEANUP_COMPLETED);
    assert_int_equal(p.pol.engine_grace_ms, MIN);
    assert_int_equal(p.pol.submit_grace_ms, 7 * 24 * 60 * MIN);
    assert_int_equal(p.pol.delete_running_orphans, 1);
    assert_int_equal(p.pol.orphan_grace_ms, 0);
    assert_int_equal(p.pol.concurrency, 1024);
    parse("", &p);
    assert_int_equal(p.pol.retain_terminated_ms, 5 * MIN);
    assert_int_equal(p.pol.cleanup_kind, KJ_CLEANUP_ALL);
    assert_string_equal(p.pol.finalizer, "kyuubi.apache.org/pod-cleanup");
    assert_string_equal(p.pol.selector, "kyuubi-unique-tag");
    assert_int_equal(p.pol.delete_running_orphans, 0);
}

/* Each bad value is refused with a message naming the flag. */
static void test_bad_values(void **state)
{
    (void)state;
    static const struct {
        const char *args, *msg;
    } rows[] = {
        {"--qps fast", "--qps"},
        {"--burst 1.5", "--burst"},
        {"--qps -1", "--qps"},
        {"--server", "needs a value"},
        {"--server=", "empty value"},
        {"--insecure-skip-tls-verify=maybe", "expected true or false"},
        {"--servers x", "unknown option '--servers'"},
        {"--retain-terminated 5x", "--retain-terminated"},
        {"--retain-terminated -5m", "not a duration"},
        {"--engine-grace _", "--engine-grace"},
        {"--submit-grace", "needs a value"},
        {"--orphan-grace 1h30", "--orphan-grace"},
        {"--cleanup-kind SOME", "ALL, COMPLETED, NONE"},
        {"--running-orphans kill", "report, delete"},
        {"--concurrency 0", "--concurrency"},
        {"--concurrency 12x", "--concurrency"},
        {"--finalizer noslash", "qualified name"},
        {"--namespace _", "empty"},
        {"--selector=", "empty"},
        {"--retain-terminatedx 5m", "unknown option"},
        {"--namespace a --namespace b --namespace c --namespace d --namespace e --namespace f"
         " --namespace g --namespace h --namespace i --namespace j --namespace k --namespace l"
         " --namespace m --namespace n --namespace o --namespace p --namespace q",
         "given more than 16 times"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        parsed p;
        parse(rows[i].args, &p);
        if (p.rc != KJ_EXIT_USAGE || !strstr(p.err, rows[i].msg))
            fail_msg("'%s': rc %d, stderr '%s', want '%s'", rows[i].args, p.rc, p.err, rows[i].msg);
    }
}

static void test_help(void **state)
{
    (void)state;
    kj_kube_flags f;
    kj_policy pol;
    kj_opt kube[KJ_KUBE_OPTS], policy[KJ_POLICY_OPTS];
    kj_kube_opts(kube, &f);
    kj_policy_opts(policy, &pol);
    char *text = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&text, &len);
    kj_opts_help(mf, kube);
    kj_opts_help(mf, policy);
    fclose(mf);
    const char *want[] = {"--token-file PATH", "--burst N", "--namespace NS", "--cleanup-kind KIND",
                          "default 5000"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("help lacks '%s':\n%s", want[i], text);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kube_flags),
        cmocka_unit_test(test_policy_flags),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
