/*
 * ex22_contexts.c - "Master Python Multiprocessing", Advanced Topics,
 * Example 3: Using spawn and fork Contexts. The same worker under each start
 * method, chosen per process (get_context(context).Process).
 *
 * Prints:
 *   Using spawn start method
 *   Worker Function
 *   Using fork start method
 *   Worker Function
 */
#include <mproc.h>
#include <stdio.h>

static int worker(const mproc_args *args)
{
    (void)args;
    printf("Worker Function\n");
    return 0;
}

int main(void)
{
    const mproc_start_method contexts[] = {MPROC_START_SPAWN, MPROC_START_FORK};
    for (size_t i = 0; i < sizeof contexts / sizeof contexts[0]; i++) {
        printf("Using %s start method\n", mproc_start_method_name(contexts[i]));
        mproc_process *p = NULL;
        int r = mproc_process_new(&p, worker, NULL);
        if (r == 0)
            r = mproc_process_set_start_method(p, contexts[i]);
        if (r == 0 && (r = mproc_process_start(p)) == 0)
            r = mproc_process_join(p, -1);
        mproc_process_free(p);
        if (r < 0) {
            fprintf(stderr, "worker: %s\n", mproc_strerror(r));
            return 1;
        }
    }
    return 0;
}
