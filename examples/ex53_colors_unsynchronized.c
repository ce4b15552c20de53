/*
 * ex53_colors_unsynchronized.c - Sunny Solanki's "Multiprocessing in Python",
 * "Process Synchronization", In [7]: three processes, 'Red', 'Green' and
 * 'Blue', print their value without synchronization, so their lines interleave.
 * The tutorial's text lost the body of test_func and the output; here each
 * process prints its value three times, pausing between lines as a slow task
 * would.
 *
 *   def test_func(shared_value):
 *       for _ in range(3):
 *           time.sleep(...)
 *           print(shared_value)
 *
 *   for i in ['Red', 'Green', 'Blue']:
 *       Process(target=test_func, args=(i,)).start()
 *
 * Prints nine lines, the colors mixed (the order varies), for example:
 *   Red
 *   Green
 *   Blue
 *   Red
 *   Blue
 *   Green
 *   ...
 */
#include <mproc.h>
#include <stdio.h>
#include <time.h>

static int test_func(const mproc_args *args)
{
    const char *shared_value = mproc_args_str(args, 0);
    for (int i = 0; i < 3; i++) {
        struct timespec t = {0, 50 * 1000 * 1000};
        nanosleep(&t, NULL);
        printf("%s\n", shared_value);
        fflush(stdout);
    }
    return 0;
}

int main(void)
{
    const char *colors[] = {"Red", "Green", "Blue"};
    mproc_process *procs[3] = {0};
    int r = 0;
    for (int i = 0; i < 3 && r == 0; i++) {
        mproc_args *a = mproc_args_of("s", colors[i]);
        r = a ? mproc_process_new(&procs[i], test_func, a) : -1;
        mproc_args_free(a);
        if (r == 0)
            r = mproc_process_start(procs[i]);
    }
    for (int i = 0; i < 3; i++) {
        if (procs[i] && mproc_process_pid(procs[i]) > 0)
            mproc_process_join(procs[i], -1);
        mproc_process_free(procs[i]);
    }
    if (r < 0) {
        fprintf(stderr, "test_func: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
