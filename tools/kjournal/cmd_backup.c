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
    "moment. FILE must not exist; it is created mode 0600 whatever the umask (it\n"
    "holds every session's users and payloads). The journal is opened read-only;\n"
    "the copy holds one read transaction for as long as it takes (it never blocks\n"
    "kjournald). A destination that cannot be written (no such directory, no\n"
    "permission, a full disk) exits 1 and leaves no partial copy.\n";

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
    int group_readable = 0;
    const kj_opt opts[] = {
        {"to", 0, KJ_OPT_STRING, &to, "FILE", .help = "where to write the copy"},
        {"group-readable", 0, KJ_OPT_FLAG, &group_readable, NULL,
         .help = "create FILE mode 0640 (readable by the file's group),\n"
                 "as kjournald --group-readable does for the journal"},
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
    if ((rc = kj_cli_open(
             &c, KJ_JOURNAL_READONLY | (group_readable ? KJ_JOURNAL_GROUP_READABLE : 0), &j)))
        return rc;
    kj_err err = {0};
    int qrc = kj_journal_backup(j, to, &err);
    kj_journal_close(j);
    /* Whatever went wrong with the copy is a failure (1), or a damaged
     * journal (6); never "no such session" (7) for a missing directory. */
    if (qrc < 0)
        return kj_cli_fail(&c, qrc == KJ_ECORRUPT ? KJ_EXIT_CORRUPT : KJ_EXIT_FAILURE, "%s",
                           err.msg);
    kj_out *o = kj_out_new(&c);
    kj_out_begin_object(o, NULL);
    kj_out_value(o, &fields[0], KJ_S(c.journal));
    kj_out_value(o, &fields[1], KJ_S(to));
    kj_out_value(o, &fields[2], KJ_N(stat(to, &sb) == 0 ? (int64_t)sb.st_size : 0));
    kj_out_end_object(o);
    return kj_out_free(o);
}
