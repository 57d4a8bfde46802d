/*
 * auth.c - CURVE keys and the in-process ZAP handler.
 *
 * Without a ZAP handler libzmq admits any CURVE client that knows the server's
 * public key; the handler here admits only the keys in the allow directory.
 * It runs on its own thread so handshakes go on while a commit waits on disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc.h"
#include "ipc_internal.h"

int kj_ipc_read_key(const char *path, char z85[41], kj_err *err)
{
    char buf[128];
    FILE *f = fopen(path, "r");
    if (!f)
        return kj_err_set(err, errno == ENOENT ? KJ_ENOENT : KJ_EIO, "cannot read key '%s': %s",
                          path, strerror(errno));
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    while (n && strchr(" \t\r\n", buf[n - 1]))
        buf[--n] = 0;
    const char *s = buf;
    while (*s && strchr(" \t\r\n", *s))
        s++;
    uint8_t bin[32];
    if (strlen(s) != 40 || !zmq_z85_decode(bin, s))
        return kj_err_set(err, KJ_EINVAL, "key file '%s' does not hold a 40-character Z85 key",
                          path);
    memcpy(z85, s, 41);
    return 0;
}

static int write_key(const char *path, const char *key, mode_t mode, int force, kj_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL), mode);
    if (fd < 0)
        return kj_err_set(err, errno == EEXIST ? KJ_EINVAL : KJ_EIO, "cannot write '%s': %s%s",
                          path, strerror(errno), errno == EEXIST ? " (use --force)" : "");
    char line[48];
    int len = snprintf(line, sizeof line, "%s\n", key);
    int rc = 0;
    if (fchmod(fd, mode) < 0 || write(fd, line, (size_t)len) != len || fsync(fd) < 0)
        rc = kj_err_set(err, KJ_EIO, "cannot write '%s': %s", path, strerror(errno));
    close(fd);
    return rc;
}

int kj_ipc_keygen(const char *prefix, int force, char public_out[41], kj_err *err)
{
    char pub[41], sec[41], path[4096];
    if (zmq_curve_keypair(pub, sec) < 0)
        return kj_err_set(err, KJ_EIO, "cannot generate a key pair: %s", zmq_strerror(errno));
    snprintf(path, sizeof path, "%s.key", prefix);
    int rc = write_key(path, sec, 0600, force, err);
    memset(sec, 0, sizeof sec);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof path, "%s.pub", prefix);
    if ((rc = write_key(path, pub, 0644, force, err)) < 0)
        return rc;
    if (public_out)
        memcpy(public_out, pub, 41);
    return 0;
}

struct kj_zap {
    void *sock;
    pthread_t thread;
    atomic_int stop;
    size_t n, cap;
    uint8_t (*keys)[32];
    uint64_t refused;
    int64_t last_log;
};

static int load_allow_dir(kj_zap *z, const char *dir, kj_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return kj_err_set(err, KJ_ENOENT, "cannot open CURVE allow directory '%s': %s", dir,
                          strerror(errno));
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".pub"))
            continue;
        char path[4096], z85[41];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if ((rc = kj_ipc_read_key(path, z85, err)) < 0)
            break;
        if (kj_grow((void **)&z->keys, &z->cap, z->n + 1, sizeof *z->keys)) {
            rc = kj_err_set(err, KJ_ENOMEM, "out of memory");
            break;
        }
        zmq_z85_decode(z->keys[z->n++], z85);
    }
    closedir(d);
    return rc;
}

static int allowed(const kj_zap *z, const uint8_t *key)
{
    for (size_t i = 0; i < z->n; i++)
        if (!memcmp(z->keys[i], key, 32))
            return 1;
    return 0;
}

/* ZAP (RFC 27): version, request id, domain, address, identity, mechanism,
 * credentials... -> version, request id, status code, text, user id, metadata. */
static void *zap_main(void *arg)
{
    kj_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t pi = {z->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&pi, 1, 100) <= 0)
            continue;
        zmq_msg_t f[8];
        int nf = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, z->sock, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (nf < 8) {
                zmq_msg_init(&f[nf]);
                zmq_msg_move(&f[nf++], &m);
            }
            zmq_msg_close(&m);
        }
        const char *status = "400", *text = "denied";
        char user[41] = "";
        if (nf >= 6) {
            const char *mech = zmq_msg_data(&f[5]);
            size_t ml = zmq_msg_size(&f[5]);
            if (ml == 5 && !memcmp(mech, "CURVE", 5) && nf >= 7 && zmq_msg_size(&f[6]) == 32 &&
                allowed(z, zmq_msg_data(&f[6]))) {
                status = "200", text = "OK";
                zmq_z85_encode(user, zmq_msg_data(&f[6]), 32);
            } else {
                /* A refused client reconnects every 100 ms: one line a second. */
                z->refused++;
                int64_t now = kj_mono_ms();
                if (now - z->last_log >= 1000) {
                    char key[41] = "-";
                    if (nf >= 7 && zmq_msg_size(&f[6]) == 32)
                        zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
                    kj_log(KJ_LOG_WARN, "client refused", "mechanism=%.*s key=%s refused=%llu",
                           (int)(ml < 16 ? ml : 16), mech, key, (unsigned long long)z->refused);
                    z->last_log = now;
                }
            }
        }
        if (nf >= 2) {
            zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
            zmq_send(z->sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
            zmq_send(z->sock, status, 3, ZMQ_SNDMORE);
            zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
            zmq_send(z->sock, user, strlen(user), ZMQ_SNDMORE);
            zmq_send(z->sock, "", 0, 0);
        }
        for (int i = 0; i < nf; i++)
            zmq_msg_close(&f[i]);
    }
    return NULL;
}

int kj_zap_start(void *ctx, const char *allow_dir, kj_zap **out, kj_err *err)
{
    kj_zap *z = calloc(1, sizeof *z);
    if (!z)
        return kj_err_set(err, KJ_ENOMEM, "out of memory");
    int rc = load_allow_dir(z, allow_dir, err);
    if (rc < 0)
        goto fail;
    if (z->n == 0) {
        char q[600];
        kj_log(KJ_LOG_WARN, "no CURVE keys allowed",
               "dir=%s hint=\"put clients' *.pub files there\"", kj_logq(q, sizeof q, allow_dir));
    }
    z->sock = zmq_socket(ctx, ZMQ_REP);
    int linger = 0;
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_bind(z->sock, "inproc://zeromq.zap.01") < 0) {
        rc = kj_err_set(err, KJ_EIO, "cannot start the ZAP handler: %s", zmq_strerror(errno));
        goto fail;
    }
    if (pthread_create(&z->thread, NULL, zap_main, z)) {
        rc = kj_err_set(err, KJ_EIO, "cannot start the ZAP thread");
        goto fail;
    }
    kj_log(KJ_LOG_INFO, "curve allow list loaded", "keys=%zu", z->n);
    *out = z;
    return 0;
fail:
    if (z->sock)
        zmq_close(z->sock);
    free(z->keys);
    free(z);
    return rc;
}

void kj_zap_stop(kj_zap *z)
{
    if (!z)
        return;
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
    zmq_close(z->sock);
    free(z->keys);
    free(z);
}

/* --- file and directory checks --------------------------------------------- */

int kj_ipc_read_secret_key(const char *path, char z85[41], kj_err *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && (sb.st_mode & 0044)) {
        char q[600];
        kj_log(KJ_LOG_WARN, "secret key file is readable by other users",
               "path=%s mode=%04o hint=\"chmod 600 it: whoever reads it can pose as its owner\"",
               kj_logq(q, sizeof q, path), (unsigned)(sb.st_mode & 07777));
    }
    return kj_ipc_read_key(path, z85, err);
}

static int trusted_owner(uid_t uid)
{
    return uid == geteuid() || uid == 0;
}

static int world_writable_unprotected(const struct stat *sb)
{
    return (sb->st_mode & S_IWOTH) && !(sb->st_mode & S_ISVTX);
}

/* Every directory on the way to p (p included): none may let others rename
 * what it holds (writable by all without the sticky bit), and a symbolic link
 * on the way must belong to us or root (in a sticky directory only its owner
 * can replace it). */
static int check_chain(const char *p, kj_err *err)
{
    char buf[4096];
    size_t len = strlen(p);
    if (len >= sizeof buf)
        return kj_err_set(err, KJ_EINVAL, "path '%s' is too long", p);
    memcpy(buf, p, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != 0)
            continue;
        char c = buf[i];
        buf[i] = 0;
        struct stat sb;
        if (lstat(buf, &sb) == 0) {
            if (S_ISLNK(sb.st_mode) && !trusted_owner(sb.st_uid))
                return kj_err_set(err, KJ_EINVAL,
                                  "socket path: '%s' is a symbolic link owned by uid %u: whoever "
                                  "owns it can point the socket elsewhere",
                                  buf, (unsigned)sb.st_uid);
            if (S_ISDIR(sb.st_mode) && world_writable_unprotected(&sb))
                return kj_err_set(err, KJ_EINVAL,
                                  "socket path: directory '%s' is writable by every user without "
                                  "the sticky bit: anyone could replace what it holds",
                                  buf);
        }
        buf[i] = c;
    }
    return 0;
}

int kj_ipc_check_endpoint_dir(const char *ep, int create, kj_err *err)
{
    const char *path = ep + 6;
    if (path[0] == '@' || path[0] == 0)
        return kj_err_set(err, KJ_EINVAL,
                          "endpoint '%s': an abstract socket name has no file permissions, so "
                          "any local user could listen or connect; use a path",
                          ep);
    char dir[4096], abs_dir[4096 + 8];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    if (dir[0] != '/') {
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd))
            return kj_err_set(err, KJ_EIO, "cannot resolve socket directory '%s': %s", dir,
                              strerror(errno));
        if ((size_t)snprintf(abs_dir, sizeof abs_dir, "%s/%s", cwd, dir) >= sizeof abs_dir)
            return kj_err_set(err, KJ_EINVAL, "socket path '%s' is too long", path);
    } else {
        snprintf(abs_dir, sizeof abs_dir, "%s", dir);
    }
    struct stat sb;
    if (stat(abs_dir, &sb) < 0) {
        if (errno != ENOENT)
            return kj_err_set(err, KJ_EIO, "cannot use socket directory '%s': %s", dir,
                              strerror(errno));
        /* Missing: whoever may create it decides who owns the socket. */
        char parent[sizeof abs_dir];
        snprintf(parent, sizeof parent, "%s", abs_dir);
        char *s;
        while ((s = strrchr(parent, '/')) && s != parent) {
            *s = 0;
            if (stat(parent, &sb) == 0)
                break;
        }
        if (s == parent)
            snprintf(parent, sizeof parent, "/");
        if (stat(parent, &sb) == 0 && (sb.st_mode & S_IWOTH) && !create)
            return kj_err_set(err, KJ_EINVAL,
                              "socket directory '%s' does not exist and '%s' is writable by "
                              "every user: anyone could create it and take the socket's place",
                              dir, parent);
        if (!create)
            return check_chain(parent, err);
        if (mkdir(abs_dir, 0700) < 0)
            return kj_err_set(err, KJ_EIO, "cannot create socket directory '%s': %s", dir,
                              strerror(errno));
        if (stat(abs_dir, &sb) < 0)
            return kj_err_set(err, KJ_EIO, "cannot use socket directory '%s': %s", dir,
                              strerror(errno));
    }
    if (!S_ISDIR(sb.st_mode))
        return kj_err_set(err, KJ_EINVAL, "socket directory '%s' is not a directory", dir);
    if (sb.st_mode & S_IWOTH)
        return kj_err_set(err, KJ_EINVAL,
                          "socket directory '%s' is writable by every user (mode %04o): another "
                          "user could take the socket's place; use a directory of its own, such "
                          "as '%s/kjournal' (created 0700)",
                          dir, (unsigned)(sb.st_mode & 07777), strcmp(dir, "/") ? dir : "");
    if (!trusted_owner(sb.st_uid))
        return kj_err_set(err, KJ_EINVAL,
                          "socket directory '%s' belongs to uid %u, not to this user or root: "
                          "its owner could take the socket's place",
                          dir, (unsigned)sb.st_uid);
    char real[4096];
    int rc = check_chain(abs_dir, err);
    if (rc == 0 && realpath(abs_dir, real))
        rc = check_chain(real, err);
    if (rc == 0 && (sb.st_mode & 077)) {
        char q[600];
        kj_log(KJ_LOG_WARN, "socket directory is open to other users", "dir=%s mode=%04o",
               kj_logq(q, sizeof q, dir), (unsigned)(sb.st_mode & 07777));
    }
    return rc;
}
