/*
 * ex17_hello_world.c - "Master Python Multiprocessing", Getting Started with
 * your First Multiprocessing Program: print_hello run by two processes, both
 * started, then both joined.
 *
 * Prints:
 *   Hello, world!
 *   Hello, world!
 */
#include <mproc.h>
#include <stdio.h>

static int print_hello(const mproc_args *args)
{
    (void)args;
    printf("Hello, world!\n");
    return 0;
}

int main(void)
{
    mproc_process *process1 = NULL, *process2 = NULL;
    int r = mproc_process_new(&process1, print_hello, NULL);
    if (r == 0)
        r = mproc_process_new(&process2, print_hello, NULL);
    if (r == 0)
        r = mproc_process_start(process1);
    if (r == 0)
        r = mproc_process_start(process2);
    if (r == 0)
        r = mproc_process_join(process1, -1);
    if (r == 0)
        r = mproc_process_join(process2, -1);
    mproc_process_free(process1);
    mproc_process_free(process2);
    if (r < 0) {
        fprintf(stderr, "print_hello: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
