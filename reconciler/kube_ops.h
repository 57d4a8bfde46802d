/*
 * kube_ops.h - the operation table of the Kubernetes client: every request
 * kind kj_kube_submit() makes (except KJ_KUBE_RAW, for tests and tools), with
 * the HTTP method, the API group, resource and RBAC verb it needs.
 *
 * The Role that deploy/kubernetes grants is derived from this table
 * (kjournald --print-rbac; tests/deploy checks every manifest's Role against
 * it), and kj_kube_submit() refuses an op without an entry: a new request
 * kind is a new line here, and the Role follows.
 */
#ifndef KJ_KUBE_OPS_H
#define KJ_KUBE_OPS_H

#include <stdio.h>

#include "reconciler/kube.h"

typedef struct kj_kube_op_info {
    kj_kube_op op;
    const char *name;     /* for messages: "get pod" */
    const char *method;   /* HTTP method: GET, PATCH, DELETE, POST, PUT */
    const char *group;    /* API group: "" (core) or "coordination.k8s.io" */
    const char *version;  /* API version: "v1" */
    const char *resource; /* plural resource: "pods" */
    const char *verb;     /* RBAC verb: get, list, watch, patch, delete, create, update */
} kj_kube_op_info;

extern const kj_kube_op_info kj_kube_ops[];
extern const size_t kj_kube_nops;

/* The entry of op, or NULL (KJ_KUBE_RAW, or an op nobody described). */
const kj_kube_op_info *kj_kube_op_info_of(kj_kube_op op);

/* The RBAC rules the table needs, as the "rules:" of a Role in YAML: one
 * rule per (group, resource), in table order, its verbs in table order. */
void kj_kube_print_rbac(FILE *f);

#endif
