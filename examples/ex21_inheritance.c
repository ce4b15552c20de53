/*
 * ex21_inheritance.c - "Master Python Multiprocessing", Advanced Topics,
 * Example 2: Inherited Resource. current_process().pid in the main process and
 * in a child.
 *
 * Prints (PIDs vary):
 *   Main Process ID: 1000
 *   Child Process ID: 1001
 */
#include <mproc.h>
#include <stdio.h>

static int child_process(const mproc_args *args)
{
    (void)args;
    printf("Child Process ID: %d\n",
           (int)mproc_process_pid(mproc_current_process()));
    return 0;
}

int main(void)
{
    printf("Main Process ID: %d\n",
           (int)mproc_process_pid(mproc_current_process()));
    mproc_process *child = NULL;
    int r = mproc_process_new(&child, child_process, NULL);
    if (r == 0 && (r = mproc_process_start(child)) == 0)
        r = mproc_process_join(child, -1);
    mproc_process_free(child);
    if (r < 0) {
        fprintf(stderr, "child_process: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
