/*
 * ex29_run_proc.c - the os.fork tutorial (os.fork, Process, Pool, subprocess,
 * Queue), the Process example: run_proc('test') in a child, started and joined.
 *
 * Prints (PIDs vary):
 *   Parent process 928.
 *   Child process will start.
 *   Run child process test (929)...
 *   Child process end.
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

/* Code to be executed by the child process */
static int run_proc(const mproc_args *args)
{
    printf("Run child process %s (%d)...\n", mproc_args_str(args, 0),
           (int)getpid());
    return 0;
}

int main(void)
{
    printf("Parent process %d.\n", (int)getpid());
    mproc_process *p = NULL;
    mproc_args *a = mproc_args_of("s", "test");
    int r = a ? mproc_process_new(&p, run_proc, a) : -ENOMEM;
    mproc_args_free(a);
    if (r == 0) {
        printf("Child process will start.\n");
        r = mproc_process_start(p);
    }
    if (r == 0)
        r = mproc_process_join(p, -1);
    mproc_process_free(p);
    if (r < 0) {
        fprintf(stderr, "run_proc: %s\n", mproc_strerror(r));
        return 1;
    }
    printf("Child process end.\n");
    return 0;
}
