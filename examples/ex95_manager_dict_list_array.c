/*
 * ex95_manager_dict_list_array.c - Solanki, In [10]: a server process
 * (Manager) holds a dict, a list and an Array; a child sets dictionary[1],
 * reverses the list and squares the array through proxies, and the parent
 * prints all three.
 *
 * Prints:
 *   {1: 1}
 *   [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
 *   array('i', [0, 1, 4, 9, 16, 25, 36, 49, 64, 81])
 *
 * The text as collected lost the lst.reverse() line its output shows.
 */
#include <mproc.h>
#include <stdio.h>
#include <stdlib.h>

static int test_func(const mproc_args *a)
{
    mproc_proxy *dictionary = mproc_args_proxy(a, 0);
    mproc_proxy *lst = mproc_args_proxy(a, 1), *ary = mproc_args_proxy(a, 2);
    mproc_obj *one = mproc_obj_int(1);
    int rc = mproc_proxy_setitem(dictionary, one, one); /* dictionary[1] = 1 */
    mproc_obj_unref(one);
    if (rc == 0)
        rc = mproc_proxy_reverse(lst);
    int64_t n = mproc_proxy_len(ary);
    for (int64_t i = 0; rc == 0 && i < n; i++) { /* ary[i] = val * val */
        mproc_obj *idx = mproc_obj_int(i), *val = NULL;
        int64_t v = 0;
        rc = mproc_proxy_getitem(ary, idx, &val);
        if (rc == 0 && mproc_obj_int_value(val, &v) == 0) {
            mproc_obj *sq = mproc_obj_int(v * v);
            rc = mproc_proxy_setitem(ary, idx, sq);
            mproc_obj_unref(sq);
        }
        mproc_obj_unref(val);
        mproc_obj_unref(idx);
    }
    return rc == 0 ? 0 : 1;
}

static void print_proxy(mproc_proxy *p)
{
    char *s;
    if (mproc_proxy_repr(p, &s) == 0) {
        printf("%s\n", s);
        free(s);
    }
}

int main(void)
{
    mproc_manager *manager;
    int rc = mproc_manager_start(&manager, NULL, NULL);
    if (rc < 0) {
        fprintf(stderr, "manager: %s\n", mproc_strerror(rc));
        return 1;
    }
    mproc_obj *range = mproc_obj_list_new();
    for (int i = 0; i < 10; i++)
        mproc_obj_list_append(range, mproc_obj_int(i));
    mproc_obj *list_args = mproc_obj_tuple_of(1, mproc_obj_ref(range));
    mproc_obj *array_args =
        mproc_obj_tuple_of(2, mproc_obj_str_c("i"), mproc_obj_ref(range));
    mproc_proxy *dictionary = NULL, *lst = NULL, *ary = NULL;
    char err[256];
    rc = mproc_manager_create(manager, &dictionary, "dict", NULL, NULL, err,
                              sizeof err);
    if (rc == 0)
        rc = mproc_manager_create(manager, &lst, "list", list_args, NULL, err,
                                  sizeof err);
    if (rc == 0)
        rc = mproc_manager_create(manager, &ary, "Array", array_args, NULL, err,
                                  sizeof err);
    mproc_obj_unref(range);
    mproc_obj_unref(list_args);
    mproc_obj_unref(array_args);
    if (rc == 0) {
        mproc_args *a = mproc_args_new();
        mproc_args_add_proxy(a, dictionary);
        mproc_args_add_proxy(a, lst);
        mproc_args_add_proxy(a, ary);
        mproc_process *p;
        rc = mproc_process_new(&p, test_func, a);
        mproc_args_free(a);
        if (rc == 0 && (rc = mproc_process_start(p)) == 0)
            rc = mproc_process_join(p, -1);
        mproc_process_free(p);
    }
    if (rc == 0) {
        print_proxy(dictionary);
        print_proxy(lst);
        print_proxy(ary);
    } else {
        fprintf(stderr, "failed: %s %s\n", mproc_strerror(rc), err);
    }
    mproc_proxy_free(dictionary);
    mproc_proxy_free(lst);
    mproc_proxy_free(ary);
    mproc_manager_free(manager);
    return rc == 0 ? 0 : 1;
}
