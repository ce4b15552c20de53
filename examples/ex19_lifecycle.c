/*
 * ex19_lifecycle.c - "Master Python Multiprocessing", Example 3: Observing the
 * Process Lifecycle. The child names itself with current_process().name
 * (mproc_process_name(mproc_current_process())).
 *
 * Prints:
 *   Process Process-1 is Created
 *   Process Process-1 is Running
 *   Process Process-1 is Terminated
 */
#include <mproc.h>
#include <stdio.h>

static int lifecycle_demo(const mproc_args *args)
{
    (void)args;
    const char *name = mproc_process_name(mproc_current_process());
    printf("Process %s is Created\n", name);
    printf("Process %s is Running\n", name);
    printf("Process %s is Terminated\n", name);
    return 0;
}

int main(void)
{
    mproc_process *p = NULL;
    int r = mproc_process_new(&p, lifecycle_demo, NULL);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    mproc_process_free(p);
    if (r < 0) {
        fprintf(stderr, "lifecycle_demo: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
