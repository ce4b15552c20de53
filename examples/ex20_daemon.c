/*
 * ex20_daemon.c - "Master Python Multiprocessing", Advanced Topics, Example 1:
 * Daemon Process. A daemonic child is terminated when the main program
 * finishes, so its last line never appears.
 *
 * Prints:
 *   Starting Daemon
 *   Main Process exiting
 *
 * ("Exiting Daemon" would come 2 s later; the library's exit handler, as
 * Python's, terminates daemonic children first.) A pipe makes the main
 * process wait until the daemon has printed, so the output does not depend
 * on scheduling; the fd travels as an int because fork children inherit
 * it (the default start method).
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

static int daemon_worker(const mproc_args *args)
{
    int ready = (int)mproc_args_int(args, 0);
    printf("Starting Daemon\n");
    fflush(stdout); /* SIGTERM will not let stdio flush at exit */
    (void)write(ready, "x", 1);
    sleep(2);
    printf("Exiting Daemon\n");
    return 0;
}

int main(void)
{
    int fds[2];
    if (pipe(fds) < 0) {
        perror("pipe");
        return 1;
    }
    mproc_process *daemon_process = NULL;
    mproc_args *a = mproc_args_of("i", fds[1]);
    int r = a ? mproc_process_new(&daemon_process, daemon_worker, a) : -ENOMEM;
    mproc_args_free(a);
    if (r == 0)
        r = mproc_process_set_daemon(daemon_process, 1);
    if (r == 0)
        r = mproc_process_start(daemon_process);
    mproc_process_free(daemon_process); /* the library keeps its record */
    if (r < 0) {
        fprintf(stderr, "daemon_worker: %s\n", mproc_strerror(r));
        return 1;
    }
    char c;
    if (read(fds[0], &c, 1) != 1) {
        fprintf(stderr, "the daemon did not start\n");
        return 1;
    }
    printf("Main Process exiting\n");
    return 0; /* atexit: the daemon gets SIGTERM and is joined */
}
