/* cmd_backup.c - kjournal backup: a consistent copy while kjournald writes. */
#include <stdio.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"

static const char help[] =
    "usage: kjournal backup [OPTIONS] --to FILE\n"
    "\n"
    "Writes a consistent, compacted copy of the journal to FILE (SQLite's VACUUM\n"
    "INTO), safe while kjournald writes: the copy is the journal as of one\n"
    "moment. FILE must not exist. The journal is opened read-only; the copy holds\n"
    "one read transaction for as long as it takes (it never blocks kjournald).\n";

static const char examples[] =
    "\nexamples:\n"
    "  kjournal backup --to /backup/journal-$(date +%F).db\n"
    "  kjournal backup --to /tmp/j.db && kjournal verify --journal /tmp/j.db\n";

static const kj_field fields[] = {
    {"journal", "journal", 0},
    {"backup", "backup", 0},
    {"bytes", "size", KJ_F_BYTES},
};

int kj_cmd_backup(int argc, char **argv)
{
    const char *to = NULL;
    const kj_opt opts[] = {
        {"to", 0, KJ_OPT_STRING, &to, "FILE", .help = "where to write the copy"},
        {0},
    };
    const kj_cli_spec spec = {.help = help, .opts = opts, .examples = examples};
    kj_cli_common c;
    int rc;
    if ((rc = kj_cli_parse(&c, &spec, argc, argv)))
        return rc;
    if (!to || !*to)
        return kj_cli_fail(&c, KJ_EXIT_USAGE, "where to? give --to FILE");

    struct stat sb;
    if (stat(to, &sb) == 0)
        return kj_cli_fail(&c, KJ_EXIT_FAILURE, "'%s' already exists; refusing to overwrite it",
                           to);
    kj_journal *j = NULL;
    if ((rc = kj_cli_open(&c, KJ_JOURNAL_READONLY, &j)))
        return rc;
    kj_err err = {0};
    int qrc = kj_journal_backup(j, to, &err);
    kj_journal_close(j);
    if (qrc < 0)
        return kj_cli_fail_err(&c, &err);
    kj_out *o = kj_out_new(&c);
    kj_out_begin_object(o, NULL);
    kj_out_value(o, &fields[0], KJ_S(c.journal));
    kj_out_value(o, &fields[1], KJ_S(to));
    kj_out_value(o, &fields[2], KJ_N(stat(to, &sb) == 0 ? (int64_t)sb.st_size : 0));
    kj_out_end_object(o);
    return kj_out_free(o);
}
