/* kjournal - the command line: publish events, run recovery, inspect the journal. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "kj_version.h"

/* One line per subcommand; each lives in cmd_<name>.c. Those without a
 * function are the programs kjournal-<name> (see CMakeLists.txt). */
static const kj_cli_command commands[] = {
    {"publish", "send JSON events (native or Kyuubi) to kjournald", NULL},
    {"ship", "follow Kyuubi's event log files and publish them to kjournald", NULL},
    {"keygen", "write a CURVE key pair for kjournald or a publisher", NULL},
    {"recover", "reconcile the journal against the engine pods (--dry-run: the plan)", NULL},
    {"sessions", "list sessions (filter by state, user, instance, engine, time)", kj_cmd_sessions},
    {"show", "show a session, its events and the reconcile actions on its pods", kj_cmd_show},
    {"events", "list events by time; -f follows new events", kj_cmd_events},
    {"stats", "sessions by state, user and instance; events; sizes", kj_cmd_stats},
    {"actions", "the reconciler's audit: actions, or runs with --runs", kj_cmd_actions},
    {"verify", "check the journal's integrity and invariants", kj_cmd_verify},
    {"backup", "write a consistent copy of the journal while it is written", kj_cmd_backup},
    {"prune", "delete sessions closed longer ago than a duration", kj_cmd_prune},
    {NULL, NULL, NULL},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: kjournal COMMAND [OPTIONS]\n\n"
                 "kjournal records Kyuubi sessions in a journal and reconciles engine pods.\n\n"
                 "commands:\n");
    for (const kj_cli_command *c = commands; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fprintf(out, "\nRun 'kjournal COMMAND --help' for a command's options and examples.\n");
}

/* Runs kjournal-<name>: next to this program (a build tree), in
 * ../libexec/kjournal beside it (an installation moved elsewhere), else in
 * the libexec directory it was built for. Returns only on failure. */
static int run_program(const char *name, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash = n > 0 ? (self[n] = '\0', strrchr(self, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        snprintf(path, sizeof path, "%s/kjournal-%s", self, name);
        execv(path, argv);
        snprintf(path, sizeof path, "%s/../libexec/kjournal/kjournal-%s", self, name);
        execv(path, argv);
    }
    snprintf(path, sizeof path, "%s/kjournal-%s", KJ_LIBEXECDIR, name);
    execv(path, argv);
    fprintf(stderr, "kjournal: cannot run kjournal-%s (looked next to kjournal and in %s): %s\n",
            name, KJ_LIBEXECDIR, strerror(errno));
    return KJ_EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return KJ_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return KJ_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kjournal %s\n", KJ_VERSION);
        return KJ_EXIT_OK;
    }
    for (const kj_cli_command *c = commands; c->name; c++)
        if (!strcmp(argv[1], c->name))
            return c->run ? c->run(argc - 1, argv + 1) : run_program(c->name, argv + 1);
    fprintf(stderr, "kjournal: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return KJ_EXIT_USAGE;
}
