/*
 * ex25_terminate.c - "Master Python Multiprocessing", Process Control,
 * Example 1: Terminating a Process. The worker would work for ten seconds;
 * after three the parent terminates it (SIGTERM) and joins it.
 *
 * Prints:
 *   Working...
 *   Working...
 *   Working...
 *   Process terminated.
 */
#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

static int worker(const mproc_args *args)
{
    (void)args;
    for (int i = 0; i < 10; i++) {
        printf("Working...\n");
        fflush(stdout); /* a terminated process does not flush stdio */
        nanosleep(&(struct timespec){1, 0}, NULL);
    }
    return 0;
}

int main(void)
{
    mproc_process *p = NULL;
    int r = mproc_process_new(&p, worker, NULL);
    if (r == 0)
        r = mproc_process_start(p);
    if (r == 0) {
        /* time.sleep(3): let it work for 3 seconds (its 4th line is due
         * at 3 s; stop just before) */
        nanosleep(&(struct timespec){2, 900000000}, NULL);
        r = mproc_process_terminate(p);
    }
    if (r == 0)
        r = mproc_process_join(p, -1);
    int code = mproc_process_exitcode(p);
    mproc_process_free(p);
    if (r < 0) {
        fprintf(stderr, "terminate: %s\n", mproc_strerror(r));
        return 1;
    }
    printf("Process terminated.\n");
    return code == -SIGTERM ? 0 : 1; /* exitcode -15, as in Python */
}
