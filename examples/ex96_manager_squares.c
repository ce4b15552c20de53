/*
 * ex96_manager_squares.c - "Master Python Multiprocessing", Manager
 * Objects, Examples 3 and 4: five workers append i * i to a shared list,
 * then five store it under i in a shared dict.
 *
 * Prints (the order follows the workers' and may vary, as in Python):
 *   Squares are: [0, 1, 4, 9, 16]
 *   Squares are: {0: 0, 1: 1, 2: 4, 3: 9, 4: 16}
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

static int list_worker(const mproc_args *a)
{
    int64_t i = mproc_args_int(a, 0);
    mproc_obj *sq = mproc_obj_int(i * i);
    int rc = mproc_proxy_append(mproc_args_proxy(a, 1), sq);
    mproc_obj_unref(sq);
    return rc == 0 ? 0 : 1;
}

static int dict_worker(const mproc_args *a)
{
    int64_t i = mproc_args_int(a, 0);
    mproc_obj *k = mproc_obj_int(i), *sq = mproc_obj_int(i * i);
    int rc = mproc_proxy_setitem(mproc_args_proxy(a, 1), k, sq);
    mproc_obj_unref(k);
    mproc_obj_unref(sq);
    return rc == 0 ? 0 : 1;
}

/* Runs five workers on the shared object, then prints it. */
static int run(mproc_manager *manager, const char *typeid, mproc_target worker)
{
    mproc_proxy *shared;
    int rc =
        mproc_manager_create(manager, &shared, typeid, NULL, NULL, NULL, 0);
    if (rc < 0)
        return rc;
    mproc_process *procs[5] = {0};
    for (int i = 0; i < 5 && rc == 0; i++) {
        mproc_args *a = mproc_args_new();
        mproc_args_add_int(a, i);
        mproc_args_add_proxy(a, shared);
        rc = mproc_process_new(&procs[i], worker, a);
        mproc_args_free(a);
        if (rc == 0)
            rc = mproc_process_start(procs[i]);
    }
    for (int i = 0; i < 5; i++) {
        if (procs[i])
            mproc_process_join(procs[i], -1);
        mproc_process_free(procs[i]);
    }
    char *s;
    if (rc == 0 && (rc = mproc_proxy_repr(shared, &s)) == 0) {
        printf("Squares are: %s\n", s);
        free(s);
    }
    mproc_proxy_free(shared);
    return rc;
}

int main(void)
{
    mproc_manager *manager;
    int rc = mproc_manager_start(&manager, NULL, NULL);
    if (rc == 0)
        rc = run(manager, "list", list_worker);
    if (rc == 0)
        rc = run(manager, "dict", dict_worker);
    if (rc < 0)
        fprintf(stderr, "failed: %s\n", mproc_strerror(rc));
    mproc_manager_free(manager);
    return rc == 0 ? 0 : 1;
}
