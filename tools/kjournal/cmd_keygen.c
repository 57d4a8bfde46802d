/* cmd_keygen.c - kjournal keygen: write a CURVE key pair for kjournald or a publisher. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ipc/ipc.h"

static void keygen_usage(FILE *out)
{
    fprintf(out, "usage: kjournal keygen [--force] PREFIX\n"
                 "\n"
                 "Writes a CURVE key pair: PREFIX.key (the secret key, mode 0600) and\n"
                 "PREFIX.pub (the public key), each one Z85 line. Give kjournald its\n"
                 "--curve-secret-key PREFIX.key; copy a publisher's PREFIX.pub into\n"
                 "kjournald's --curve-allow directory. Existing files are kept unless --force.\n"
                 "\n"
                 "exit codes: 0 written, 1 cannot write, 2 usage error.\n"
                 "\n"
                 "example:\n"
                 "  kjournal keygen /etc/kjournal/server && kjournal keygen kyuubi-1\n"
                 "  cp kyuubi-1.pub /etc/kjournal/allow/\n");
}

int kj_cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {{"force", 0, 0, 'f'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int force = 0, o;
    optind = 1;
    opterr = 1;
    while ((o = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
        if (o == 'f') {
            force = 1;
        } else if (o == 'h') {
            keygen_usage(stdout);
            return KJ_EXIT_OK;
        } else {
            keygen_usage(stderr);
            return KJ_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        keygen_usage(stderr);
        return KJ_EXIT_USAGE;
    }
    kj_err err = {0};
    char pub[41];
    if (kj_ipc_keygen(argv[optind], force, pub, &err) < 0) {
        fprintf(stderr, "kjournal keygen: %s\n", err.msg);
        return KJ_EXIT_FAILURE;
    }
    printf("secret key: %s.key\npublic key: %s.pub %s\n", argv[optind], argv[optind], pub);
    return KJ_EXIT_OK;
}
