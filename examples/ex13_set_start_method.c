/*
 * ex13_set_start_method.c - Sunny Solanki's "Multiprocessing in Python",
 * In [3] and In [4]: test_func printing its argument, first under a start
 * method chosen for the whole program with set_start_method, then with
 * ctx = get_context('fork'); ctx.Process(...). mproc's get_context is the
 * per-process override mproc_process_set_start_method.
 *
 * Prints:
 *   Test function execution
 *   Test function execution
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>

static int test_func(const mproc_args *args)
{
    printf("%s\n", mproc_args_str(args, 0));
    return 0;
}

/* Runs test_func("Test function execution") with method m (DEFAULT: the
 * program-wide one). */
static int run(mproc_start_method m)
{
    mproc_process *p = NULL;
    mproc_args *a = mproc_args_of("s", "Test function execution");
    int r = a ? mproc_process_new(&p, test_func, a) : -ENOMEM;
    mproc_args_free(a);
    if (r == 0)
        r = mproc_process_set_start_method(p, m);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    mproc_process_free(p);
    return r;
}

int main(void)
{
    /* In [3]: multiprocessing.set_start_method('spawn') */
    int r = mproc_set_start_method(MPROC_START_SPAWN);
    if (r == 0)
        r = run(MPROC_START_DEFAULT);
    /* In [4]: ctx = multiprocessing.get_context('fork') */
    if (r == 0)
        r = run(MPROC_START_FORK);
    if (r < 0) {
        fprintf(stderr, "test_func: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
