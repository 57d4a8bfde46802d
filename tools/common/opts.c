/*
 * opts.c - option tables: parsing argv and printing --help from one
 * declaration, so the two cannot disagree (opts.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kj_version.h"
#include "opts.h"

/* Help text starts two columns after the widest option, at most here (a
 * longer option gets its text on the next line), and wraps at HELP_WIDTH. */
#define HELP_COLUMN_MAX 28
#define HELP_WIDTH 79
/* Deep enough for a program's table including the kube and policy tables,
 * inside kj_opts_parse()'s table with the standard options. */
#define MAX_DEPTH 5

int kj_opts_fail(const char *prog, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (code == KJ_EXIT_USAGE)
        fprintf(stderr, "Run '%s --help' for its options.\n", prog);
    return code;
}

static int takes_value(const kj_opt *o)
{
    return o->kind != KJ_OPT_FLAG && o->kind != KJ_OPT_BOOL && !(o->kind == KJ_OPT_CALL && !o->arg);
}

/* The option named name (len bytes) or with short name c, searching included tables. */
static const kj_opt *find(const kj_opt *opts, const char *name, size_t len, char c, int depth)
{
    for (const kj_opt *o = opts; o->kind != KJ_OPT_END; o++) {
        if (o->kind == KJ_OPT_INCLUDE) {
            const kj_opt *f = depth < MAX_DEPTH ? find(o->dst, name, len, c, depth + 1) : NULL;
            if (f)
                return f;
        } else if (o->kind != KJ_OPT_SECTION &&
                   (name ? o->name && strlen(o->name) == len && !strncmp(o->name, name, len)
                         : c && o->short_name == c)) {
            return o;
        }
    }
    return NULL;
}

/* A duration bound as a person writes it: "1s", "90m", "250ms". */
static const char *human_ms(int64_t ms, char buf[32])
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms && ms % units[i].ms == 0) {
            snprintf(buf, 32, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return buf;
        }
    snprintf(buf, 32, "%lldms", (long long)ms);
    return buf;
}

static int set_value(const kj_opt *o, const char *v, char *msg, size_t size)
{
    int64_t n;
    double d;
    switch (o->kind) {
    case KJ_OPT_FLAG:
        *(int *)o->dst = 1;
        return 0;
    case KJ_OPT_BOOL:
        if (!v || !strcmp(v, "true") || !strcmp(v, "1"))
            *(int *)o->dst = 1;
        else if (!strcmp(v, "false") || !strcmp(v, "0"))
            *(int *)o->dst = 0;
        else
            return snprintf(msg, size, "expected true or false"), -1;
        return 0;
    case KJ_OPT_STRING:
    case KJ_OPT_STRINGS:
        if (!*v)
            return snprintf(msg, size, "empty value"), -1;
        if (o->kind == KJ_OPT_STRING) {
            *(const char **)o->dst = v;
            return 0;
        }
        if (*o->count >= (size_t)o->max)
            return snprintf(msg, size, "given more than %lld times", (long long)o->max), -1;
        ((const char **)o->dst)[(*o->count)++] = v;
        return 0;
    case KJ_OPT_INT:
    case KJ_OPT_INT64:
    case KJ_OPT_SIZE:
        if (kj_parse_int(v, o->min, o->max, &n, msg, size))
            return -1;
        if (o->kind == KJ_OPT_INT)
            *(int *)o->dst = (int)n;
        else if (o->kind == KJ_OPT_INT64)
            *(int64_t *)o->dst = n;
        else
            *(size_t *)o->dst = (size_t)n;
        return 0;
    case KJ_OPT_NUMBER:
        if (kj_parse_number(v, (double)o->min, (double)o->max, &d, msg, size))
            return -1;
        *(double *)o->dst = d;
        return 0;
    case KJ_OPT_DURATION:
        if (kj_parse_duration(v, &n, msg, size))
            return -1;
        if (n < o->min || (o->max && n > o->max)) {
            char lo[32], hi[32];
            if (o->min == 1)
                return snprintf(msg, size, "a duration must be longer than 0"), -1;
            if (!o->max)
                return snprintf(msg, size, "must be at least %s", human_ms(o->min, lo)), -1;
            return snprintf(msg, size, "must be from %s to %s", human_ms(o->min, lo),
                            human_ms(o->max, hi)),
                   -1;
        }
        *(int64_t *)o->dst = n;
        return 0;
    case KJ_OPT_COUNT:
        if (kj_parse_count(v, &n, msg, size))
            return -1;
        *(int64_t *)o->dst = n;
        return 0;
    case KJ_OPT_CHOICE: {
        size_t used = 0;
        for (int i = 0; o->choices[i]; i++) {
            if (!strcasecmp(v, o->choices[i])) {
                *(int *)o->dst = i;
                return 0;
            }
        }
        used = (size_t)snprintf(msg, size, "expected one of");
        for (int i = 0; o->choices[i] && used < size; i++)
            used += (size_t)snprintf(msg + used, size - used, "%s %s", i ? "," : "", o->choices[i]);
        return -1;
    }
    case KJ_OPT_CALL:
        return o->fn(o->ud, v, msg, size);
    default:
        return snprintf(msg, size, "not an option"), -1;
    }
}

/* Takes the option at argv[*i] (a "--" long option, or a group of short
 * ones), moving *i past what it used. */
static int take(const char *prog, const kj_opt *opts, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v = NULL;
    char msg[256] = "";
    const kj_opt *o;
    if (a[1] == '-') {
        const char *name = a + 2, *eq = strchr(name, '=');
        o = find(opts, name, eq ? (size_t)(eq - name) : strlen(name), 0, 0);
        if (!o)
            return kj_opts_fail(prog, KJ_EXIT_USAGE, "unknown option '%.*s'",
                                eq ? (int)(eq - a) : (int)strlen(a), a);
        if (eq && !takes_value(o) && o->kind != KJ_OPT_BOOL)
            return kj_opts_fail(prog, KJ_EXIT_USAGE, "option '--%s' takes no value", o->name);
        v = eq ? eq + 1 : NULL;
        if (!v && takes_value(o)) {
            if (*i + 1 >= argc)
                return kj_opts_fail(prog, KJ_EXIT_USAGE, "option '--%s' needs a value", o->name);
            v = argv[++*i];
        }
        (*i)++;
        if (set_value(o, v, msg, sizeof msg))
            return kj_opts_fail(prog, KJ_EXIT_USAGE, "bad value '%s' for --%s: %s", v ? v : "",
                                o->name, msg);
        return 0;
    }
    for (const char *p = a + 1; *p; p++) {
        o = find(opts, NULL, 0, *p, 0);
        if (!o)
            return kj_opts_fail(prog, KJ_EXIT_USAGE, "unknown option '-%c'", *p);
        if (takes_value(o)) {
            if (p[1])
                v = p + 1;
            else if (*i + 1 < argc)
                v = argv[++*i];
            else
                return kj_opts_fail(prog, KJ_EXIT_USAGE, "option '-%c' needs a value", *p);
        }
        if (set_value(o, v, msg, sizeof msg))
            return kj_opts_fail(prog, KJ_EXIT_USAGE, "bad value '%s' for -%c: %s", v ? v : "", *p,
                                msg);
        if (v)
            break;
    }
    (*i)++;
    return 0;
}

/* The standard options (opts.h), when the program's table does not declare them. */
static int std_version, std_check_config;
const kj_opt kj_opts_standard[] = {
    {"version", 0, KJ_OPT_FLAG, &std_version, NULL, .help = "print the version and exit"},
    KJ_OPTS_CHECK_CONFIG(&std_check_config),
    {0},
};

void kj_opts_version(FILE *f, const char *prog)
{
    fprintf(f, "%s %s\n", prog, KJ_VERSION);
}

void kj_opts_config_ok(const char *prog, const char *what)
{
    printf("%s: configuration ok%s%s\n", prog, what && *what ? ": " : "", what ? what : "");
    fflush(stdout);
    exit(KJ_EXIT_OK);
}

/* Whether the table's own "help" flag was given (it goes before the
 * standard options: --help --check-config prints the help). */
static int help_given(const kj_opt *opts)
{
    const kj_opt *h = find(opts, "help", 4, 0, 0);
    return h && h->kind == KJ_OPT_FLAG && h->dst && *(int *)h->dst;
}

static int parse(const char *prog, const kj_opt *opts, int argc, char **argv, int *operands)
{
    int n = 0, i = 1, rc;
    while (i < argc) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            for (i++; i < argc; i++)
                argv[1 + n++] = argv[i];
            break;
        }
        if (a[0] != '-' || !a[1]) { /* an operand; "-" is one (stdin) */
            argv[1 + n++] = argv[i++];
            continue;
        }
        /* Operands move down over options already taken: argv[1..n] stays
         * behind i, so nothing unread is overwritten. */
        if ((rc = take(prog, opts, argc, argv, &i)))
            return rc;
    }
    if (1 + n < argc)
        argv[1 + n] = NULL;
    *operands = n;
    return 0;
}

int kj_opts_parse(const char *prog, const kj_opt *opts, int argc, char **argv, int *operands)
{
    const kj_opt all[] = {KJ_OPTS_INCLUDE(opts), KJ_OPTS_INCLUDE(kj_opts_standard), {0}};
    std_version = std_check_config = 0;
    int rc = parse(prog, all, argc, argv, operands);
    if (rc || help_given(opts))
        return rc;
    if (std_version) {
        kj_opts_version(stdout, prog);
        exit(KJ_EXIT_OK);
    }
    if (std_check_config) {
        printf("%s: flags ok\n", prog);
        fflush(stdout);
        exit(KJ_EXIT_OK);
    }
    return 0;
}

/* "  -o, --output FMT" or "  --journal PATH": an option's left column. */
static int left_of(const kj_opt *o, char *buf, size_t size)
{
    if (o->short_name)
        return snprintf(buf, size, "  -%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
                        o->arg ? o->arg : "");
    return snprintf(buf, size, "  --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
}

/* The widest left column in opts and the tables it includes. */
static int widest(const kj_opt *opts, int depth)
{
    int w = 0;
    char left[128];
    for (const kj_opt *o = opts; o->kind != KJ_OPT_END; o++) {
        int n = o->kind == KJ_OPT_INCLUDE   ? (depth < MAX_DEPTH ? widest(o->dst, depth + 1) : 0)
                : o->kind == KJ_OPT_SECTION ? 0
                                            : left_of(o, left, sizeof left);
        if (n > w)
            w = n;
    }
    return w;
}

/* Writes text from column col on, its words wrapped at HELP_WIDTH to
 * column indent (a '\n' in text is a space like any other). */
static void wrap(FILE *f, const char *text, int col, int indent)
{
    for (const char *p = text + strspn(text, " \n"); *p; p += strspn(p, " \n")) {
        int n = (int)strcspn(p, " \n");
        if (col > indent && col + 1 + n > HELP_WIDTH) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", n, p);
        col += n;
        p += n;
    }
    fputc('\n', f);
}

static void help_lines(FILE *f, const kj_opt *opts, int column, int depth)
{
    char left[128];
    for (const kj_opt *o = opts; o->kind != KJ_OPT_END; o++) {
        if (o->kind == KJ_OPT_INCLUDE) {
            if (depth < MAX_DEPTH)
                help_lines(f, o->dst, column, depth + 1);
            continue;
        }
        if (o->kind == KJ_OPT_SECTION) {
            fprintf(f, *o->help ? "\n%s\n" : "\n", o->help);
            continue;
        }
        int w = left_of(o, left, sizeof left);
        fputs(left, f);
        if (w >= column - 1) {
            fprintf(f, "\n%*s", column, "");
            w = column;
        }
        fprintf(f, "%*s", column - w, "");
        wrap(f, o->help ? o->help : "", column, column);
    }
}

void kj_opts_help(FILE *f, const kj_opt *opts)
{
    int column = widest(opts, 0) + 2;
    if (column > HELP_COLUMN_MAX)
        column = HELP_COLUMN_MAX;
    help_lines(f, opts, column, 0);
}

void kj_opts_usage(FILE *f, const char *head, const kj_opt *opts, const char *tail)
{
    /* opts, then the standard options it does not declare, in one alignment */
    kj_opt all[4] = {KJ_OPTS_INCLUDE(opts)};
    size_t n = 1;
    for (const kj_opt *o = kj_opts_standard; o->kind != KJ_OPT_END; o++)
        if (!find(opts, o->name, strlen(o->name), 0, 0))
            all[n++] = *o;
    fputs(head, f);
    kj_opts_help(f, all);
    fputs(tail, f);
}
