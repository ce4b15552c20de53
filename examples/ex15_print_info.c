/*
 * ex15_print_info.c - "Master Python Multiprocessing", Example: Identifying
 * PID, Parent, and Child Processes. print_info runs once in the main process
 * and once in a child.
 *
 * Prints (PIDs vary; the child's parent is the main process):
 *   Main Process:
 *   Process ID: 1000
 *   Parent Process ID: 999
 *   Child Process:
 *   Process ID: 1001
 *   Parent Process ID: 1000
 */
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

static int print_info(const mproc_args *args)
{
    (void)args;
    printf("Process ID: %d\n", (int)getpid());
    printf("Parent Process ID: %d\n", (int)getppid());
    return 0;
}

int main(void)
{
    printf("Main Process:\n");
    print_info(NULL);

    printf("Child Process:\n");
    mproc_process *p = NULL;
    int r = mproc_process_new(&p, print_info, NULL);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    mproc_process_free(p);
    if (r < 0) {
        fprintf(stderr, "print_info: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
