/* cmd_keygen.c - kjournal keygen: write a CURVE key pair for kjournald or a publisher. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "ipc/ipc.h"

static const char usage[] = "usage: kjournal keygen [--force] PREFIX\n"
                            "\n"
                            "Writes a CURVE key pair: PREFIX.key (the secret key, mode 0600) and\n"
                            "PREFIX.pub (the public key), each one Z85 line. Give kjournald its\n"
                            "--curve-secret-key PREFIX.key; copy a publisher's PREFIX.pub into\n"
                            "kjournald's --curve-allow directory.\n"
                            "\n"
                            "options:\n";

static const char usage_end[] =
    "\n"
    "exit codes: 0 written, 1 cannot write, 2 usage error.\n"
    "\n"
    "example:\n"
    "  kjournal keygen /etc/kjournal/server && kjournal keygen kyuubi-1\n"
    "  cp kyuubi-1.pub /etc/kjournal/allow/\n";

int kj_cmd_keygen(int argc, char **argv)
{
    int force = 0, help = 0, n;
    const kj_opt opts[] = {
        {"force", 'f', KJ_OPT_FLAG, &force, NULL, .help = "overwrite existing files"},
        {"help", 'h', KJ_OPT_FLAG, &help, NULL, .help = "this help"},
        {0},
    };
    int rc = kj_opts_parse("kjournal keygen", opts, argc, argv, &n);
    if (help) {
        kj_opts_usage(stdout, usage, opts, usage_end);
        return KJ_EXIT_OK;
    }
    if (rc)
        return rc;
    if (n != 1)
        return kj_opts_fail("kjournal keygen", KJ_EXIT_USAGE, "expected one PREFIX");
    const char *prefix = argv[1];
    kj_err err = {0};
    char pub[41];
    if (kj_ipc_keygen(prefix, force, pub, &err) < 0) {
        fprintf(stderr, "kjournal keygen: %s\n", err.msg);
        return KJ_EXIT_FAILURE;
    }
    printf("secret key: %s.key\npublic key: %s.pub %s\n", prefix, prefix, pub);
    return KJ_EXIT_OK;
}
