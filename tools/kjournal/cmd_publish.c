/*
 * cmd_publish.c - kjournal publish: send JSON events, one per line, to
 * kjournald and print what became of each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ipc/ipc.h"
#include "publish_flags.h"

static const char usage[] =
    "usage: kjournal publish [--endpoint E] [OPTIONS] [FILE|-]\n"
    "\n"
    "Sends JSON events, one per line (native events or Kyuubi's KyuubiSessionEvent\n"
    "lines as they are), to kjournald, and prints one result line per event:\n"
    "  line N: stored|duplicate EVENT_ID\n"
    "  line N: rejected [EVENT_ID] CODE: MESSAGE\n"
    "  line N: unacknowledged CODE: MESSAGE\n"
    "A timed-out request, or one kjournald asks to retry (journal busy,\n"
    "overloaded), is sent again with the same event ids (the journal\n"
    "deduplicates); other answers are final: an event too large for kjournald\n"
    "is rejected once, and a batch too large is sent again one event per request.\n"
    "A reply that names other events than the ones sent counts as no answer.\n"
    "Blank lines are skipped. Reads stdin without FILE or with '-'.\n"
    "\n"
    "options:\n";

static const char usage_end[] =
    "\n"
    "exit codes: 0 every event stored or duplicate, 1 some were rejected,\n"
    "2 usage error (or an ipc:// endpoint in a directory other users could\n"
    "take over), 3 no such FILE, 8 some were never acknowledged.\n"
    "\n"
    "example:\n"
    "  kjournal publish --endpoint tcp://127.0.0.1:5680 kyuubi_session.json\n";

/* The events to send: the input's non-blank lines, and their numbers. */
typedef struct event_lines {
    char **lines;
    size_t *lineno;
    size_t n, lines_cap, lineno_cap;
} event_lines;

static void event_lines_free(event_lines *ev)
{
    for (size_t i = 0; i < ev->n; i++)
        free(ev->lines[i]);
    free(ev->lines);
    free(ev->lineno);
}

/* Reads the non-blank lines of in, without their line ends. 0 or KJ_ENOMEM. */
static int read_event_lines(FILE *in, event_lines *ev)
{
    char *line = NULL;
    size_t lsize = 0, no = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &lsize, in)) >= 0) {
        no++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (strspn(line, " \t") == (size_t)len)
            continue;
        if (kj_grow((void **)&ev->lines, &ev->lines_cap, ev->n + 1, sizeof *ev->lines) ||
            kj_grow((void **)&ev->lineno, &ev->lineno_cap, ev->n + 1, sizeof *ev->lineno) ||
            !(ev->lines[ev->n] = strdup(line)))
            rc = KJ_ENOMEM;
        else
            ev->lineno[ev->n++] = no;
    }
    free(line);
    return rc;
}

typedef struct publish_counts {
    size_t stored, dup, rej, unacked, too_large;
} publish_counts;

/* Prints what became of the event on line lineno (unless quiet and it
 * landed), and counts it. */
static void print_result(const kj_publish_result *r, size_t lineno, int quiet, publish_counts *n)
{
    /* What the server said may quote what the line held: keep it inert. */
    char *id = kj_display(r->event_id), *msg = kj_display(r->message);
    char *code_s = kj_display(r->code);
    n->too_large += !strcmp(r->code, "too_large");
    switch (r->status) {
    case KJ_APPEND_STORED:
    case KJ_APPEND_DUPLICATE:
        n->stored += r->status == KJ_APPEND_STORED;
        n->dup += r->status == KJ_APPEND_DUPLICATE;
        if (!quiet)
            printf("line %zu: %s %s\n", lineno, kj_append_status_name(r->status), id);
        break;
    case KJ_APPEND_REJECTED:
        n->rej++;
        printf("line %zu: rejected %s%s%s: %s\n", lineno, id, id[0] ? " " : "",
               code_s[0] ? code_s : "rejected", msg);
        break;
    default:
        n->unacked++;
        printf("line %zu: unacknowledged %s: %s\n", lineno, code_s[0] ? code_s : "timeout",
               msg[0] ? msg : "no acknowledgement from kjournald");
    }
    free(id);
    free(msg);
    free(code_s);
}

/* Prints a line per event and the totals; returns the exit code, given code
 * (KJ_EXIT_FAILURE when the publisher itself failed). */
static int report(const event_lines *ev, const kj_publish_result *res, int quiet, int code)
{
    publish_counts n = {0};
    for (size_t i = 0; i < ev->n; i++)
        print_result(&res[i], ev->lineno[i], quiet, &n);
    if (n.too_large)
        fprintf(stderr,
                "kjournal publish: %zu events are too large for kjournald (see --max-message in "
                "'kjournald --help'); they were not stored, and sending them again will not "
                "help\n",
                n.too_large);
    fprintf(stderr,
            "kjournal publish: %zu stored, %zu duplicate, %zu rejected, %zu unacknowledged\n",
            n.stored, n.dup, n.rej, n.unacked);
    if (n.unacked)
        return KJ_EXIT_UNAVAILABLE;
    if (n.rej && code == KJ_EXIT_OK)
        return KJ_EXIT_FAILURE;
    return code;
}

/* Sends the events to endpoint and reports on them. Returns the exit code. */
static int publish(const char *endpoint, const kj_publisher_opts *po, const event_lines *ev,
                   int quiet)
{
    int code = KJ_EXIT_OK;
    kj_publisher *p = NULL;
    kj_err err = {0};
    kj_publish_result *res = calloc(ev->n, sizeof *res);
    if (!res) {
        fprintf(stderr, "kjournal publish: out of memory\n");
        return KJ_EXIT_FAILURE;
    }
    if (kj_publisher_new(endpoint, po, &p, &err) < 0) {
        fprintf(stderr, "kjournal publish: %s\n", err.msg);
        code = err.code == KJ_ENOENT ? KJ_EXIT_NOFILE : KJ_EXIT_USAGE;
        goto out;
    }
    int rc = kj_publisher_publish(p, (const char *const *)ev->lines, ev->n, res, &err);
    if (rc < 0 && rc != KJ_ETIMEDOUT) {
        fprintf(stderr, "kjournal publish: %s\n", err.msg);
        code = KJ_EXIT_FAILURE;
    }
    code = report(ev, res, quiet, code);
out:
    kj_publisher_destroy(p);
    free(res);
    return code;
}

/* --check-config: the endpoint and the key files, nothing connected or read
 * from the input. */
static int check;
static int check_config(const char *endpoint, const kj_publisher_opts *po)
{
    kj_err err = {0};
    if (kj_ipc_check_endpoint(endpoint, 0, &err) < 0 ||
        kj_ipc_check_publisher_keys(po->curve_server_key, po->curve_secret_key, &err) < 0)
        return kj_opts_fail("kjournal publish",
                            err.code == KJ_ENOENT ? KJ_EXIT_NOFILE : KJ_EXIT_USAGE, "%s", err.msg);
    char what[600];
    snprintf(what, sizeof what, "endpoint %s, curve %s; the input was not read", endpoint,
             po->curve_server_key ? "on" : "off");
    kj_opts_config_ok("kjournal publish", what);
}

int kj_cmd_publish(int argc, char **argv)
{
    const char *endpoint = kj_publish_default_endpoint();
    kj_publisher_opts po = kj_publisher_defaults();
    int quiet = 0, help = 0, operands;
    kj_opt net[KJ_PUBLISH_FLAGS_N];
    kj_publish_flags(net, &endpoint, &po);
    const kj_opt opts[] = {
        KJ_OPTS_INCLUDE(net),
        {"quiet", 0, KJ_OPT_FLAG, &quiet, NULL,
         .help = "print only rejected and unacknowledged events"},
        {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"},
        KJ_OPTS_CHECK_CONFIG(&check),
        {0},
    };
    int rc = kj_opts_parse("kjournal publish", opts, argc, argv, &operands);
    if (help) {
        kj_opts_usage(stdout, usage, opts, usage_end);
        return KJ_EXIT_OK;
    }
    if (rc)
        return rc;
    if (operands > 1)
        return kj_opts_fail("kjournal publish", KJ_EXIT_USAGE, "expected at most one FILE");
    const char *path = operands ? argv[1] : "-";
    if (check)
        return check_config(endpoint, &po);
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) {
        fprintf(stderr, "kjournal publish: cannot open '%s': %s\n", path, strerror(errno));
        return errno == ENOENT ? KJ_EXIT_NOFILE : KJ_EXIT_FAILURE;
    }
    event_lines ev = {0};
    rc = read_event_lines(in, &ev);
    if (in != stdin)
        fclose(in);
    int code = KJ_EXIT_OK;
    if (rc) {
        fprintf(stderr, "kjournal publish: out of memory\n");
        code = KJ_EXIT_FAILURE;
    } else if (ev.n) {
        code = publish(endpoint, &po, &ev, quiet);
    }
    event_lines_free(&ev);
    return code;
}
