/*
 * cli.h - what the kjournal subcommands share: the command table entry and
 * the exit codes scripts can rely on.
 */
#ifndef KJ_CLI_H
#define KJ_CLI_H

/* Exit codes. Every subcommand uses these and documents them in --help. */
enum {
    KJ_EXIT_OK = 0,          /* done; for verify: the journal is clean */
    KJ_EXIT_FAILURE = 1,     /* the command ran and something failed (rejected events,
                                failed actions, verify found problems) */
    KJ_EXIT_USAGE = 2,       /* bad flags, arguments, configuration or time expression */
    KJ_EXIT_NOFILE = 3,      /* no such journal file */
    KJ_EXIT_NOTJOURNAL = 4,  /* the file is not a kjournal database */
    KJ_EXIT_TOONEW = 5,      /* the journal is newer than this binary */
    KJ_EXIT_CORRUPT = 6,     /* the journal is damaged */
    KJ_EXIT_NOTFOUND = 7,    /* no such session (or run) */
    KJ_EXIT_UNAVAILABLE = 8, /* a peer (kjournald, the Kubernetes API) cannot be reached */
};

typedef struct kj_cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} kj_cli_command;

#endif
