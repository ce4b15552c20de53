/*
 * ex26_exit_codes.c - "Master Python Multiprocessing", Process Control,
 * Example 2: Checking Process Exit Codes. A worker that returns 1, and (beyond
 * the tutorial) one that segfaults: a process killed by signal N has exit code
 * -N, as in Python.
 *
 * In mproc the target's return value is the exit code (Python's
 * sys.exit(code); Python ignores a target's return value).
 *
 * Prints:
 *   Worker Function running on Process-1
 *   Exit Code: 1
 *   Worker Function running on Process-2
 *   Exit Code: -11
 */
#include <mproc.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>

static int worker(const mproc_args *args)
{
    (void)args;
    printf("Worker Function running on %s\n",
           mproc_process_name(mproc_current_process()));
    return 1; /* Exit code */
}

static int segfaulting_worker(const mproc_args *args)
{
    (void)args;
    printf("Worker Function running on %s\n",
           mproc_process_name(mproc_current_process()));
    fflush(stdout); /* the crash will not flush it */
    /* Sanitizers catch SIGSEGV themselves; let it kill the process. */
    signal(SIGSEGV, SIG_DFL);
    volatile int *page =
        mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED)
        *page = 42; /* no access: SIGSEGV */
    return 0;
}

static int run(mproc_target target)
{
    mproc_process *p = NULL;
    int r = mproc_process_new(&p, target, NULL);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    if (r == 0)
        printf("Exit Code: %d\n", mproc_process_exitcode(p));
    mproc_process_free(p);
    if (r < 0)
        fprintf(stderr, "exit codes: %s\n", mproc_strerror(r));
    return r;
}

int main(void)
{
    return run(worker) < 0 || run(segfaulting_worker) < 0;
}
