/* kube_ops.c - the client's operation table and the RBAC rules it needs (kube_ops.h). */
#include <string.h>

#include "kube_ops.h"

#define CORE ""
#define COORD "coordination.k8s.io"

const kj_kube_op_info kj_kube_ops[] = {
    {KJ_KUBE_GET_POD, "get pod", "GET", CORE, "v1", "pods", "get"},
    {KJ_KUBE_LIST_PODS, "list pods", "GET", CORE, "v1", "pods", "list"},
    {KJ_KUBE_PATCH_POD, "patch pod", "PATCH", CORE, "v1", "pods", "patch"},
    {KJ_KUBE_DELETE_POD, "delete pod", "DELETE", CORE, "v1", "pods", "delete"},
    {KJ_KUBE_GET_LEASE, "get lease", "GET", COORD, "v1", "leases", "get"},
    {KJ_KUBE_CREATE_LEASE, "create lease", "POST", COORD, "v1", "leases", "create"},
    {KJ_KUBE_UPDATE_LEASE, "update lease", "PUT", COORD, "v1", "leases", "update"},
};
const size_t kj_kube_nops = sizeof kj_kube_ops / sizeof kj_kube_ops[0];

const kj_kube_op_info *kj_kube_op_info_of(kj_kube_op op)
{
    for (size_t i = 0; i < kj_kube_nops; i++)
        if (kj_kube_ops[i].op == op)
            return &kj_kube_ops[i];
    return NULL;
}

static int same_rule(const kj_kube_op_info *a, const kj_kube_op_info *b)
{
    return !strcmp(a->group, b->group) && !strcmp(a->resource, b->resource);
}

void kj_kube_print_rbac(FILE *f)
{
    fputs("rules:\n", f);
    for (size_t i = 0; i < kj_kube_nops; i++) {
        const kj_kube_op_info *o = &kj_kube_ops[i];
        size_t first = 0;
        while (!same_rule(&kj_kube_ops[first], o))
            first++;
        if (first != i)
            continue; /* printed with the first op of its rule */
        fprintf(f, "  - apiGroups: [\"%s\"]\n    resources: [\"%s\"]\n    verbs: [", o->group,
                o->resource);
        const char *sep = "";
        for (size_t j = i; j < kj_kube_nops; j++) {
            if (!same_rule(&kj_kube_ops[j], o))
                continue;
            int seen = 0; /* a verb twice (two ops, one verb) is written once */
            for (size_t k = i; k < j; k++)
                seen |= same_rule(&kj_kube_ops[k], o) &&
                        !strcmp(kj_kube_ops[k].verb, kj_kube_ops[j].verb);
            if (!seen) {
                fprintf(f, "%s\"%s\"", sep, kj_kube_ops[j].verb);
                sep = ", ";
            }
        }
        fputs("]\n", f);
    }
}
