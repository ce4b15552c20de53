/*
 * ex12_parent_child_pids.c - Sunny Solanki's "Multiprocessing in Python",
 * In [2]: test_func prints its argument, the parent's PID (os.getppid) and its
 * own (os.getpid).
 *
 * Prints (PIDs vary):
 *   Test first process creation
 *   Process ID of parent process which created this sub process : 5313
 *   Process ID of sub-process which got created : 5328
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

static int test_func(const mproc_args *args)
{
    printf("%s\n", mproc_args_str(args, 0));
    printf("Process ID of parent process which created this sub process : "
           "%d\n",
           (int)getppid());
    printf("Process ID of sub-process which got created : %d\n", (int)getpid());
    return 0;
}

int main(void)
{
    mproc_process *p = NULL;
    mproc_args *a = mproc_args_of("s", "Test first process creation");
    int r = a ? mproc_process_new(&p, test_func, a) : -ENOMEM;
    mproc_args_free(a);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    mproc_process_free(p);
    if (r < 0) {
        fprintf(stderr, "test_func: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
