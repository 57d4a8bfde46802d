/*
 * kube_internal.h - what kube.c, kubeconfig.c and kube_json.c share. Not
 * installed; the tests may use it.
 */
#ifndef KJ_KUBE_INTERNAL_H
#define KJ_KUBE_INTERNAL_H

#include <stddef.h>

#include "reconciler/kube.h"

/*
 * A resolved configuration. Secrets (token, *_data) are zeroed before they are
 * freed. For each of CA, client cert and key either the file or the data is
 * set (or neither). token is a literal token; token_file, when set, wins and
 * is re-read by the client.
 */
struct kj_kube_config {
    char *server;       /* without a trailing '/' */
    char *server_shown; /* server for messages: credentials in it masked */
    char *namespace_;
    char *source;
    char *context;
    int insecure;
    char *ca_file;
    unsigned char *ca_data;
    size_t ca_len;
    char *cert_file;
    unsigned char *cert_data;
    size_t cert_len;
    char *key_file;
    unsigned char *key_data;
    size_t key_len;
    char *token;
    char *token_file;
    double qps;
    int burst;
    int max_in_flight;
};

/* Reads a whole file (at most max bytes) into a NUL-terminated buffer. 0,
 * KJ_ENOENT, KJ_EIO, KJ_EINVAL (too large), KJ_ENOMEM. errno-style message in err
 * naming path only. */
int kj_kube_read_file(const char *path, size_t max, char **out, size_t *len, kj_err *err);
/* 1 when t may go into an Authorization header: non-empty, printable ASCII
 * (0x21-0x7e) only, so no CR, LF, NUL or space can add or split a header. */
int kj_kube_token_valid(const char *t);
/* Reads a token file: whitespace trimmed; an empty token or one that is not
 * kj_kube_token_valid() is KJ_EINVAL. */
int kj_kube_read_token(const char *path, char **out, kj_err *err);
/* Decodes standard base64 (whitespace ignored, padding optional). */
int kj_kube_b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len);
int kj_kube_config_dup(const kj_kube_config *c, kj_kube_config **out);
/* A copy of url (malloc'd; NULL when out of memory) with the userinfo of its
 * authority masked: "https://u:p@h:6443/x" -> "https://xxxxx@h:6443/x". */
char *kj_kube_redact_url(const char *url);
/* Frees s after overwriting it with zeros; accepts NULL. */
void kj_kube_free_secret(void *s, size_t len);

/* Parses the Kubernetes-side of a list page: its items go to pods (an array
 * the caller frees with kj_pod_clear each + free), its continue token to cont
 * (malloc'd, NULL if none). */
int kj_kube_parse_pod_list(const char *json, size_t len, kj_pod **pods, size_t *n, char **cont,
                           kj_err *err);
/* Builds the DeleteOptions JSON body; caller frees. */
char *kj_kube_delete_body(const char *uid, const char *rv, int64_t grace_s,
                          const char *propagation);
/* Builds a Lease JSON body (with metadata.resourceVersion when with_rv). */
char *kj_kube_lease_body(const kj_lease *l, const char *ns, int with_rv);
/* 1 if the JSON Patch text contains an op "test". */
int kj_kube_patch_has_test(const char *patch);

#endif
