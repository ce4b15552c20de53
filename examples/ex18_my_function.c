/*
 * ex18_my_function.c - "Master Python Multiprocessing", 1.1 Using Process
 * Class, Example 1: Basic Usage. my_function("Process 1") and
 * my_function("Process 2") in two processes, then a last line once both are
 * joined.
 *
 * Prints (the first two lines in either order):
 *   Hello from Process 1
 *   Hello from Process 2
 *   Both processes are done
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>

static int my_function(const mproc_args *args)
{
    printf("Hello from %s\n", mproc_args_str(args, 0));
    return 0;
}

static int start(mproc_process **p, const char *name)
{
    mproc_args *a = mproc_args_of("s", name);
    int r = a ? mproc_process_new(p, my_function, a) : -ENOMEM;
    mproc_args_free(a);
    return r == 0 ? mproc_process_start(*p) : r;
}

int main(void)
{
    mproc_process *p1 = NULL, *p2 = NULL;
    int r = start(&p1, "Process 1");
    if (r == 0)
        r = start(&p2, "Process 2");
    if (r == 0)
        r = mproc_process_join(p1, -1);
    if (r == 0)
        r = mproc_process_join(p2, -1);
    mproc_process_free(p1);
    mproc_process_free(p2);
    if (r < 0) {
        fprintf(stderr, "my_function: %s\n", mproc_strerror(r));
        return 1;
    }
    printf("Both processes are done\n");
    return 0;
}
