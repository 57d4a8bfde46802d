/*
 * check.c - what --check-config asks of the ipc configuration: endpoints
 * that parse, key files that hold keys, an allow directory that can be read.
 * Nothing here binds, connects or creates anything.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ipc.h"
#include "ipc_internal.h"

/* "HOST:PORT" of a tcp:// endpoint: a port of 1..65535 (or "*" to bind any). */
static int check_tcp(const char *ep, int listening, kj_err *err)
{
    const char *hp = ep + 6, *colon = strrchr(hp, ':');
    if (!colon || colon == hp)
        return kj_err_set(err, KJ_EINVAL, "endpoint '%s': expected tcp://HOST:PORT", ep);
    const char *port = colon + 1;
    if (listening && !strcmp(port, "*"))
        return 0;
    char *end = NULL;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (!*port || *end || errno || p < (listening ? 0 : 1) || p > 65535)
        return kj_err_set(err, KJ_EINVAL, "endpoint '%s': '%s' is not a port (0..65535)", ep, port);
    return 0;
}

int kj_ipc_check_endpoint(const char *ep, int listening, kj_err *err)
{
    if (!strncmp(ep, "tcp://", 6))
        return check_tcp(ep, listening, err);
    if (strncmp(ep, "ipc://", 6))
        return kj_err_set(err, KJ_EINVAL, "endpoint '%s': expected tcp://HOST:PORT or ipc://PATH",
                          ep);
    /* the directory as the server or publisher would find it, never created here */
    return kj_ipc_check_endpoint_dir(ep, 0, err);
}

int kj_ipc_check_server_keys(const char *secret_key, const char *allow_dir, size_t *n_allowed,
                             kj_err *err)
{
    char z85[41];
    *n_allowed = 0;
    if (!secret_key && !allow_dir)
        return 0;
    if (!secret_key || !allow_dir)
        return kj_err_set(err, KJ_EINVAL, "CURVE needs the secret key and the allow directory");
    int rc = kj_ipc_read_secret_key(secret_key, z85, err);
    memset(z85, 0, sizeof z85);
    if (rc < 0)
        return rc;
    DIR *d = opendir(allow_dir);
    if (!d)
        return kj_err_set(err, KJ_ENOENT, "cannot open CURVE allow directory '%s': %s", allow_dir,
                          strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".pub"))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", allow_dir, de->d_name);
        if ((rc = kj_ipc_read_key(path, z85, err)) < 0)
            break;
        (*n_allowed)++;
    }
    closedir(d);
    return rc;
}

int kj_ipc_check_publisher_keys(const char *server_key, const char *secret_key, kj_err *err)
{
    char z85[41];
    if (!server_key && !secret_key)
        return 0;
    if (!server_key || !secret_key)
        return kj_err_set(err, KJ_EINVAL, "CURVE needs both the server key and our secret key");
    int rc = kj_ipc_read_key(server_key, z85, err);
    if (rc == 0)
        rc = kj_ipc_read_secret_key(secret_key, z85, err);
    memset(z85, 0, sizeof z85);
    return rc;
}
