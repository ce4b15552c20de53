/*
 * ex11_start_methods.c - "Multi Processing in Python", the three start methods:
 * the hello bob example run under spawn, fork and forkserver, chosen with
 * set_start_method (mproc_set_start_method).
 *
 * spawn: a fresh exec of this program; main() does not run again and the
 * child inherits only what it is given. fork: a copy of the parent.
 * forkserver: a single-threaded server, spawned on first use, forks it.
 *
 * Prints, for each method, its name and then:
 *   hello bob
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>

static int f(const mproc_args *args)
{
    printf("hello %s\n", mproc_args_str(args, 0));
    return 0;
}

static int run(mproc_start_method m)
{
    mproc_process *p;
    int r = mproc_set_start_method(m);
    if (r < 0)
        return r;
    printf("start method: %s\n", mproc_start_method_name(m));
    fflush(stdout); /* before the child prints */
    mproc_args *a = mproc_args_of("s", "bob");
    if (!a)
        return -ENOMEM;
    r = mproc_process_new(&p, f, a);
    mproc_args_free(a);
    if (r < 0)
        return r;
    if ((r = mproc_process_start(p)) == 0)
        r = mproc_process_join(p, -1);
    if (r == 0 && mproc_process_exitcode(p) != 0) {
        fprintf(stderr, "child exited with code %d\n",
                mproc_process_exitcode(p));
        r = -ECHILD;
    }
    mproc_process_free(p);
    return r;
}

int main(void)
{
    const mproc_start_method methods[] = {MPROC_START_SPAWN, MPROC_START_FORK,
                                          MPROC_START_FORKSERVER};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int r = run(methods[i]);
        if (r < 0) {
            fprintf(stderr, "%s: %s\n", mproc_start_method_name(methods[i]),
                    mproc_strerror(r));
            return 1;
        }
    }
    return 0;
}
