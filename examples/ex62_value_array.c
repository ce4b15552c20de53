/*
 * ex62_value_array.c - Sunny Solanki's "Multiprocessing in Python", "Sharing
 * state between processes": a float Value is squared and an int Array cubed in
 * a child; the parent prints both before and after joining it.
 *
 *   def test_func(shared_value, shared_array):
 *       shared_value.value = shared_value.value * shared_value.value
 *       for i, val in enumerate(shared_array):
 *           shared_array[i] = val ** 3
 *   val = multiprocessing.Value('f', 3.14)
 *   ary = multiprocessing.Array('i', range(5))
 *   print(val.value, ary[:])
 *   p = Process(target=test_func, args=(val, ary)); p.start(); p.join()
 *   print(val.value, ary[:])
 *
 * 'f' is a C float: 3.14 is stored as 3.140000104904175, and Python prints
 * the shortest text that reads back as that double; so does
 * mproc_value_format.
 *
 * Prints:
 *   3.140000104904175 [0, 1, 2, 3, 4]
 *   9.859601020812988 [0, 1, 8, 27, 64]
 */
#include <mproc.h>
#include <stdio.h>

static int test_func(const mproc_args *args)
{
    mproc_value *shared_value = mproc_args_value(args, 0);
    mproc_array *shared_array = mproc_args_array(args, 1);
    double v;
    if (mproc_value_get_double(shared_value, &v) < 0 ||
        mproc_value_set_double(shared_value, v * v) < 0)
        return 1;
    for (size_t i = 0; i < mproc_array_len(shared_array); i++) {
        int64_t val;
        if (mproc_array_get_i64(shared_array, i, &val) < 0 ||
            mproc_array_set_i64(shared_array, i, val * val * val) < 0)
            return 1;
    }
    return 0;
}

static void show(mproc_value *val, mproc_array *ary)
{
    char v[64], a[128];
    mproc_value_format(val, v, sizeof v);
    mproc_array_format(ary, 0, mproc_array_len(ary), a, sizeof a);
    printf("%s %s\n", v, a);
}

int main(void)
{
    mproc_value *val = NULL;
    mproc_array *ary = NULL;
    mproc_args *args = NULL;
    mproc_process *p = NULL;
    int32_t range5[5] = {0, 1, 2, 3, 4};
    int r;
    if ((r = mproc_value_new(&val, 'f')) < 0 ||
        (r = mproc_value_set_double(val, 3.14)) < 0 ||
        (r = mproc_array_new(&ary, 'i', 5, range5)) < 0)
        goto out;
    show(val, ary);
    args = mproc_args_new();
    if (!args || (r = mproc_args_add_value(args, val)) < 0 ||
        (r = mproc_args_add_array(args, ary)) < 0 ||
        (r = mproc_process_new(&p, test_func, args)) < 0 ||
        (r = mproc_process_start(p)) < 0 || (r = mproc_process_join(p, -1)) < 0)
        goto out;
    show(val, ary);
    r = mproc_process_exitcode(p) == 0 ? 0 : -1;
out:
    if (r < 0)
        fprintf(stderr, "ex62: %s\n", mproc_strerror(r));
    mproc_process_free(p);
    mproc_args_free(args);
    mproc_value_free(val);
    mproc_array_free(ary);
    return r < 0;
}
