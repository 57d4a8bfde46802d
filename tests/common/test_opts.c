/*
 * test_opts.c - option tables: each row is a command line and what the
 * parse must make of it (the parsed values and operands, or the usage error
 * on stderr). Adding a case adds a row.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tools/common/opts.h"

typedef struct config {
    const char *journal;
    int verbose, reverse, insecure, mode;
    int64_t n, dur, count;
    size_t size;
    double qps;
    const char *ns[3];
    size_t n_ns;
    int called;
    const char *called_with;
} config;

static int call_me(void *ud, const char *v, char *msg, size_t size)
{
    config *c = ud;
    if (v && !strcmp(v, "no"))
        return snprintf(msg, size, "said no"), -1;
    c->called++;
    c->called_with = v;
    return 0;
}

static const char *const modes[] = {"report", "delete", NULL};

/* What c holds, as one line the rows compare with. */
static void dump(const config *c, char **argv, int nops, char *out, size_t size)
{
    size_t u = (size_t)snprintf(
        out, size, "j=%s v=%d r=%d k=%d m=%d n=%lld d=%lld c=%lld s=%zu q=%g",
        c->journal ? c->journal : "-", c->verbose, c->reverse, c->insecure, c->mode,
        (long long)c->n, (long long)c->dur, (long long)c->count, c->size, c->qps);
    for (size_t i = 0; i < c->n_ns; i++)
        u += (size_t)snprintf(out + u, size - u, " ns=%s", c->ns[i]);
    if (c->called)
        u += (size_t)snprintf(out + u, size - u, " call=%s", c->called_with ? c->called_with : "-");
    for (int i = 1; i <= nops; i++)
        u += (size_t)snprintf(out + u, size - u, " [%s]", argv[i]);
}

#define BASE "j=- v=0 r=0 k=0 m=0 n=0 d=0 c=0 s=0 q=0"

static const struct row {
    const char *args; /* space-separated; "_" stands for an empty argument */
    int rc;
    const char *want; /* the dump, or what stderr must contain */
} rows[] = {
    {"", 0, BASE},
    {"--journal x.db", 0, "j=x.db v=0"},
    {"--journal=x.db", 0, "j=x.db v=0"},
    {"-v -r", 0, "j=- v=1 r=1"},
    {"-vr", 0, "j=- v=1 r=1"},
    {"-n 5", 0, "n=5 "},
    {"-n5", 0, "n=5 "},
    {"-rn5", 0, "r=1 k=0 m=0 n=5 "},
    {"--num=7 a b", 0, "n=7 d=0 c=0 s=0 q=0 [a] [b]"},
    {"a --num 7 b", 0, "n=7 d=0 c=0 s=0 q=0 [a] [b]"},
    {"a -- -n 7", 0, "n=0 d=0 c=0 s=0 q=0 [a] [-n] [7]"},
    {"-", 0, "q=0 [-]"},
    {"--grace 1w", 0, "d=604800000"},
    {"--grace 1min", 0, "d=60000"},
    {"--grace 0", 0, "d=0"},
    {"--grace 1h30m", 0, "d=5400000"},
    {"--grace 1y", 2, "bad value '1y' for --grace: a number needs a unit"},
    {"--age 0s", 2, "bad value '0s' for --age: a duration must be longer than 0"},
    {"--age 2d", 0, "d=172800000"},
    {"--resync 500ms", 2, "bad value '500ms' for --resync: must be at least 1s"},
    {"--resync 1w", 0, "d=604800000"},
    {"--window 2h", 2, "bad value '2h' for --window: must be from 250ms to 90m"},
    {"--count all", 0, "c=0 "},
    {"--count 3", 0, "c=3 "},
    {"--count 0", 2, "bad value '0' for --count: expected a positive number or 'all'"},
    {"--size 1024", 0, "s=1024"},
    {"--size 1023", 2, "bad value '1023' for --size: expected a number in 1024..67108864"},
    {"--size 1e3", 2, "expected a number in 1024..67108864"},
    {"--qps 2.5", 0, "q=2.5"},
    {"--qps nan", 2, "bad value 'nan' for --qps"},
    {"--insecure", 0, "k=1"},
    {"--insecure=false", 0, "k=0"},
    {"--insecure=maybe", 2, "bad value 'maybe' for --insecure: expected true or false"},
    {"--mode delete", 0, "m=1"},
    {"--mode nuke", 2, "bad value 'nuke' for --mode: expected one of report, delete"},
    {"--ns a --ns b", 0, "ns=a ns=b"},
    {"--ns a --ns b --ns c --ns d", 2, "--ns: given more than 3 times"},
    {"--ns _", 2, "bad value '' for --ns: empty value"},
    {"--journal", 2, "option '--journal' needs a value"},
    {"-n", 2, "option '-n' needs a value"},
    {"--verbose=1", 2, "option '--verbose' takes no value"},
    {"--bogus", 2, "unknown option '--bogus'"},
    {"--bogus=1", 2, "unknown option '--bogus'"},
    {"-x", 2, "unknown option '-x'"},
    {"--call", 0, "call=-"},
    {"--hook yes", 0, "call=yes"},
    {"--hook no", 2, "bad value 'no' for --hook: said no"},
    {"--journ x", 2, "unknown option '--journ'"},
};

static int run_row(const struct row *r, config *c, char *out, size_t size, char *err, size_t esize)
{
    char buf[256], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", r->args);
    argv[argc++] = "prog";
    for (char *t = strtok(buf, " "); t && argc < 31; t = strtok(NULL, " "))
        argv[argc++] = strcmp(t, "_") ? t : "";
    argv[argc] = NULL;

    const kj_opt kube[] = {
        {"insecure", 0, KJ_OPT_BOOL, &c->insecure, NULL, .help = "skip TLS"},
        {"qps", 0, KJ_OPT_NUMBER, &c->qps, "N", .help = "rate", .min = 0, .max = 1000000},
        {0},
    };
    const kj_opt opts[] = {
        {"journal", 'j', KJ_OPT_STRING, &c->journal, "PATH", .help = "the journal"},
        {"verbose", 'v', KJ_OPT_FLAG, &c->verbose, NULL, .help = "more"},
        {"reverse", 'r', KJ_OPT_FLAG, &c->reverse, NULL, .help = "newest first"},
        {"num", 'n', KJ_OPT_INT64, &c->n, "N", .help = "a number", .min = 0, .max = 100},
        {"grace", 0, KJ_OPT_DURATION, &c->dur, "DUR", .help = "a grace", .max = 0},
        {"resync", 0, KJ_OPT_DURATION, &c->dur, "DUR", .help = "a period", .min = 1000},
        {"window", 0, KJ_OPT_DURATION, &c->dur, "DUR", .help = "a window", .min = 250,
         .max = 90 * 60000},
        {"age", 0, KJ_OPT_DURATION, &c->dur, "DUR", .help = "an age", .min = 1},
        {"count", 0, KJ_OPT_COUNT, &c->count, "N", .help = "a count"},
        {"size", 0, KJ_OPT_SIZE, &c->size, "BYTES", .help = "a size", .min = 1024, .max = 64 << 20},
        {"mode", 0, KJ_OPT_CHOICE, &c->mode, "MODE", .help = "a choice", .choices = modes},
        {"ns", 0, KJ_OPT_STRINGS, c->ns, "NS", .help = "repeatable", .max = 3, .count = &c->n_ns},
        {"call", 0, KJ_OPT_CALL, NULL, NULL, .help = "a callback", .fn = call_me, .ud = c},
        {"hook", 0, KJ_OPT_CALL, NULL, "X", .help = "a callback with a value", .fn = call_me,
         .ud = c},
        KJ_OPTS_SECTION("kube:"),
        KJ_OPTS_INCLUDE(kube),
        {0},
    };
    /* stderr into a pipe for the row's error */
    int fds[2], saved = dup(2);
    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    dup2(fds[1], 2);
    int nops = -1;
    int rc = kj_opts_parse("prog", opts, argc, argv, &nops);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], err, esize - 1);
    err[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    if (rc == 0)
        dump(c, argv, nops, out, size);
    return rc;
}

static void test_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        config c = {0};
        char out[512] = "", err[1024] = "";
        int rc = run_row(&rows[i], &c, out, sizeof out, err, sizeof err);
        if (rc != rows[i].rc)
            fail_msg("'%s': rc %d, want %d (stderr: %s)", rows[i].args, rc, rows[i].rc, err);
        if (rc == 0 && !strstr(out, rows[i].want))
            fail_msg("'%s': got '%s', want '%s'", rows[i].args, out, rows[i].want);
        if (rc != 0 && (!strstr(err, rows[i].want) || !strstr(err, "Run 'prog --help'")))
            fail_msg("'%s': stderr '%s', want '%s'", rows[i].args, err, rows[i].want);
    }
}

static void test_help(void **state)
{
    (void)state;
    int flag = 0;
    const char *s = NULL;
    const kj_opt inner[] = {
        {"inner", 0, KJ_OPT_FLAG, &flag, NULL, .help = "from an included table"},
        {0},
    };
    const kj_opt opts[] = {
        {"output", 'o', KJ_OPT_STRING, &s, "FMT", .help = "short, json\nor csv"},
        {"a-very-long-option-name", 0, KJ_OPT_STRING, &s, "VALUE",
         .help = "wraps the words of a help text longer than the line it stands on"},
        KJ_OPTS_SECTION("more:"),
        KJ_OPTS_INCLUDE(inner),
        {0},
    };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    kj_opts_help(f, opts);
    fclose(f);
    const char *want =
        "  -o, --output FMT          short, json or csv\n"
        "  --a-very-long-option-name VALUE\n"
        "                            wraps the words of a help text longer than the line\n"
        "                            it stands on\n"
        "\n"
        "more:\n"
        "  --inner                   from an included table\n";
    int same = !strcmp(text, want);
    if (!same)
        print_error("help:\n%s\nwant:\n%s", text, want);
    free(text);
    assert_true(same);
}

/* --version and --check-config: a program's own entry wins (its flag is set,
 * nothing exits); kj_opts_usage() lists the standard ones a table lacks, once. */
static void test_standard_options(void **state)
{
    (void)state;
    int check = 0, help = 0, n = -1;
    const kj_opt opts[] = {
        {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"},
        KJ_OPTS_CHECK_CONFIG(&check),
        {0},
    };
    char a0[] = "prog", a1[] = "--check-config", a2[] = "operand";
    char *argv[] = {a0, a1, a2, NULL};
    assert_int_equal(kj_opts_parse("prog", opts, 3, argv, &n), 0);
    assert_int_equal(check, 1);
    assert_int_equal(n, 1);
    assert_string_equal(argv[1], "operand");
    /* --help with a standard option: the help, not the option's exit */
    const kj_opt only_help[] = {{"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"}, {0}};
    char b1[] = "--version", b2[] = "--help";
    char *argv2[] = {a0, b1, b2, NULL};
    assert_int_equal(kj_opts_parse("prog", only_help, 3, argv2, &n), 0);
    assert_int_equal(help, 1);
    /* --version takes no value */
    char c1[] = "--version=1";
    char *argv3[] = {a0, c1, NULL};
    fflush(stderr);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int rc = kj_opts_parse("prog", only_help, 2, argv3, &n);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    assert_int_equal(rc, KJ_EXIT_USAGE);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    kj_opts_usage(f, "usage: prog\n", opts, "end\n");
    fclose(f);
    const char *v = strstr(text, "  --version ");
    const char *c = strstr(text, "  --check-config ");
    int ok = v && !strstr(v + 1, "  --version ") && c && !strstr(c + 1, "  --check-config ");
    if (!ok)
        print_error("usage:\n%s", text);
    free(text);
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_standard_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
