/*
 * ex27_affinity.c - "Master Python Multiprocessing", Process Control,
 * Example 3: Setting CPU Affinity (Linux/Unix Specific). The parent pins the
 * child to CPUs {0, 2} (os.sched_setaffinity(p.pid, ...)) and reads the set
 * back (os.sched_getaffinity). CPUs this machine does not offer are dropped
 * from the request.
 *
 * Prints (PIDs and sets vary):
 *   Worker Function running on PID: 1001
 *   CPU affinity of 1001 set to {0, 2}
 *
 * The child waits on a pipe until the parent is done with it, so it is
 * alive when its affinity is set; the fds travel as ints because a fork
 * child inherits them (the default start method).
 */
#include <errno.h>
#include <mproc.h>
#include <stdio.h>
#include <unistd.h>

static int worker(const mproc_args *args)
{
    int go = (int)mproc_args_int(args, 0);
    printf("Worker Function running on PID: %d\n", (int)getpid());
    fflush(stdout);
    char c;
    return read(go, &c, 1) == 1 ? 0 : 1;
}

/* Keeps the CPUs of want[] that pid may run on now. */
static int available(pid_t pid, const int *want, size_t n, int *out)
{
    int have[1024];
    int k = mproc_affinity_get(pid, have, 1024);
    if (k < 0)
        return k;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < k && j < 1024; j++)
            if (have[j] == want[i])
                out[m++] = want[i];
    if (m == 0)
        out[m++] = have[0];
    return (int)m;
}

static void print_set(const int *cpus, int n)
{
    printf("{");
    for (int i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", cpus[i]);
    printf("}\n");
}

int main(void)
{
    int go[2];
    if (pipe(go) < 0) {
        perror("pipe");
        return 1;
    }
    mproc_process *p = NULL;
    mproc_args *a = mproc_args_of("i", go[0]);
    int r = a ? mproc_process_new(&p, worker, a) : -ENOMEM;
    mproc_args_free(a);
    if (r == 0)
        r = mproc_process_start(p);
    int cpus[2], got[1024], n = 0;
    pid_t pid = mproc_process_pid(p);
    /* Setting CPU affinity to CPU 0 and CPU 2 (Platform Specific) */
    if (r == 0)
        r = n = available(pid, (const int[]){0, 2}, 2, cpus);
    if (r >= 0)
        r = mproc_affinity_set(pid, cpus, (size_t)n);
    if (r >= 0)
        r = n = mproc_affinity_get(pid, got, 1024);
    if (r >= 0) {
        printf("CPU affinity of %d set to ", (int)pid);
        print_set(got, n < 1024 ? n : 1024);
    }
    if (p && mproc_process_pid(p) > 0) {
        (void)write(go[1], "x", 1); /* let the worker finish */
        int j = mproc_process_join(p, -1);
        if (r >= 0)
            r = j;
    }
    mproc_process_free(p);
    close(go[0]);
    close(go[1]);
    if (r < 0) {
        fprintf(stderr, "affinity: %s\n", mproc_strerror(r));
        return 1;
    }
    return 0;
}
