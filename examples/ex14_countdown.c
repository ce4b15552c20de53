/*
 * ex14_countdown.c - "Python Language: The multiprocessing module", the two
 * countdowns: p1 = Process(countdown, 10), p2 = Process(countdown, 20), both
 * started, then both joined.
 *
 * Prints the two countdowns, interleaved as the processes run:
 *   Count value 10
 *   Count value 9
 *   ...
 *   Count value 20
 *   ...
 *   Count value 1
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>

static int countdown(const mproc_args *args)
{
    for (int64_t count = mproc_args_int(args, 0); count > 0; count--) {
        printf("Count value %lld\n", (long long)count);
        fflush(stdout); /* one line at a time, as Python's print to a tty */
    }
    return 0;
}

static int make(mproc_process **p, int count)
{
    mproc_args *a = mproc_args_of("i", count);
    int r = a ? mproc_process_new(p, countdown, a) : -ENOMEM;
    mproc_args_free(a);
    return r;
}

int main(void)
{
    mproc_process *p1 = NULL, *p2 = NULL;
    int r = make(&p1, 10);
    if (r == 0)
        r = mproc_process_start(p1);
    if (r == 0)
        r = make(&p2, 20);
    if (r == 0)
        r = mproc_process_start(p2);
    if (r == 0)
        r = mproc_process_join(p1, -1);
    if (r == 0)
        r = mproc_process_join(p2, -1);
    mproc_process_free(p1);
    mproc_process_free(p2);
    if (r < 0) {
        fprintf(stderr, "countdown: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
