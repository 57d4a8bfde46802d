/*
 * opts.c - option tables: parsing argv and printing --help from one
 * declaration, so the two cannot disagree (opts.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "opts.h"

/* Where the help text starts on an option's line. */
#define HELP_COLUMN 28
/* Deep enough for a program's table including the kube and policy tables. */
#define MAX_DEPTH 4

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
            if (o->min == 1)
                return snprintf(msg, size, "a duration must be longer than 0"), -1;
            return snprintf(msg, size, "out of range (%lld ms .. %lld ms)", (long long)o->min,
                            (long long)o->max),
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

int kj_opts_parse(const char *prog, const kj_opt *opts, int argc, char **argv, int *operands)
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

static void help_lines(FILE *f, const kj_opt *opts, int depth)
{
    for (const kj_opt *o = opts; o->kind != KJ_OPT_END; o++) {
        if (o->kind == KJ_OPT_INCLUDE) {
            if (depth < MAX_DEPTH)
                help_lines(f, o->dst, depth + 1);
            continue;
        }
        if (o->kind == KJ_OPT_SECTION) {
            fprintf(f, *o->help ? "\n%s\n" : "\n", o->help);
            continue;
        }
        char left[96];
        int w = snprintf(left, sizeof left, "  %s%c%s--%s%s%s", o->short_name ? "-" : "",
                         o->short_name ? o->short_name : ' ', o->short_name ? ", " : "", o->name,
                         o->arg ? " " : "", o->arg ? o->arg : "");
        if (!o->short_name) /* "  --name", not "   --name" */
            w = snprintf(left, sizeof left, "  --%s%s%s", o->name, o->arg ? " " : "",
                         o->arg ? o->arg : "");
        fputs(left, f);
        const char *h = o->help ? o->help : "";
        if (w >= HELP_COLUMN - 1)
            fprintf(f, "\n%*s", HELP_COLUMN, "");
        else
            fprintf(f, "%*s", HELP_COLUMN - w, "");
        for (const char *nl; (nl = strchr(h, '\n')); h = nl + 1)
            fprintf(f, "%.*s\n%*s", (int)(nl - h), h, HELP_COLUMN, "");
        fprintf(f, "%s\n", h);
    }
}

void kj_opts_help(FILE *f, const kj_opt *opts)
{
    help_lines(f, opts, 0);
}
