/*
 * ex10_hello_bob.c - "Multi Processing in Python", the trivial example:
 * Process(target=f, args=('bob',)), start, join.
 *
 * Prints:
 *   hello bob
 */
#include <mproc.h>
#include <stdio.h>

static int f(const mproc_args *args)
{
    printf("hello %s\n", mproc_args_str(args, 0));
    return 0;
}

int main(void)
{
    mproc_process *p;
    mproc_args *a = mproc_args_of("s", "bob");
    if (!a) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    int r = mproc_process_new(&p, f, a);
    mproc_args_free(a); /* p keeps its own copy */
    if (r < 0) {
        fprintf(stderr, "process_new: %s\n", mproc_strerror(r));
        return 1;
    }
    if ((r = mproc_process_start(p)) < 0 ||
        (r = mproc_process_join(p, -1)) < 0) {
        fprintf(stderr, "hello bob: %s\n", mproc_strerror(r));
        mproc_process_free(p);
        return 1;
    }
    mproc_process_free(p);
    return 0;
}
