/*
 * ex23_exceptions.c - "Master Python Multiprocessing", the two exception
 * examples. Error Handling, Example 1: the worker catches its own error and
 * prints it. Advanced Topics, Example 4: faulty_worker does not; nothing
 * reaches the parent but the exit code, which join() collects.
 *
 * C has no exceptions: an error is a return value. An uncaught Python
 * exception ends the child with exit code 1, so faulty_worker reports its
 * error on stderr and returns 1.
 *
 * Prints:
 *   Caught exception: Something went wrong!
 *   Exception: Something went wrong!            (stderr, from the child)
 *   faulty_worker exited with code 1
 */
#include <mproc.h>
#include <stdio.h>

/* The operation that fails ("raise ValueError(...)"). */
static int something(const char **error)
{
    *error = "Something went wrong!";
    return -1;
}

static int worker(const mproc_args *args)
{
    (void)args;
    const char *e;
    if (something(&e) < 0) /* try: ... except ValueError as e: */
        printf("Caught exception: %s\n", e);
    return 0;
}

static int faulty_worker(const mproc_args *args)
{
    (void)args;
    const char *e;
    if (something(&e) < 0) {
        fprintf(stderr, "Exception: %s\n", e);
        return 1;
    }
    return 0;
}

/* Runs target to the end; stores its exit code. */
static int run(mproc_target target, int *exitcode)
{
    mproc_process *p = NULL;
    int r = mproc_process_new(&p, target, NULL);
    if (r == 0 && (r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    *exitcode = mproc_process_exitcode(p);
    mproc_process_free(p);
    return r;
}

int main(void)
{
    int code1 = 0, code2 = 0;
    int r = run(worker, &code1);
    if (r == 0)
        r = run(faulty_worker, &code2);
    if (r < 0) {
        fprintf(stderr, "exceptions: %s\n", mproc_strerror(r));
        return 1;
    }
    if (code2 != 0)
        printf("faulty_worker exited with code %d\n", code2);
    return code1 == 0 && code2 == 1 ? 0 : 1;
}
