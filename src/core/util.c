/*
 * core/util.c - waiting on many fds (multiprocessing.connection.wait), CPU
 * counts, CPU affinity and niceness.
 */
#include "core/core.h"

#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

int mproc_wait(const int *fds, size_t n, double timeout, int *ready)
{
    if ((!fds && n > 0) || n > 65536)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (fds[i] < 0)
            return -EINVAL;
    struct pollfd stackp[16];
    struct pollfd *p = n <= 16 ? stackp : calloc(n, sizeof *p);
    if (!p)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        p[i].fd = fds[i];
        p[i].events = POLLIN;
        p[i].revents = 0;
    }
    mproc__deadline d = mproc__deadline_from(timeout);
    int r;
    for (;;) {
        int ms = mproc__deadline_poll_ms(&d);
        r = poll(p, (nfds_t)n, ms);
        if (r >= 0) {
            if (r == 0 && ms != 0 && !mproc__deadline_expired(&d))
                continue;
            break;
        }
        if (errno != EINTR) {
            r = -errno;
            break;
        }
    }
    if (r >= 0) {
        int count = 0;
        for (size_t i = 0; i < n; i++) {
            /* POLLNVAL: a closed fd is an error, not readiness. */
            if (p[i].revents & POLLNVAL) {
                r = -EBADF;
                break;
            }
            int on = (p[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
            if (ready)
                ready[i] = on;
            count += on;
        }
        if (r >= 0)
            r = count;
    }
    if (p != stackp)
        free(p);
    return r;
}

int mproc_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

/* A CPU set big enough for this machine; caller frees with CPU_FREE. */
static cpu_set_t *cpuset_alloc(size_t *size, int *ncpus)
{
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    int n = conf < 1024 ? 1024 : (int)conf;
    cpu_set_t *s = CPU_ALLOC(n);
    if (!s)
        return NULL;
    *size = CPU_ALLOC_SIZE(n);
    *ncpus = n;
    CPU_ZERO_S(*size, s);
    return s;
}

int mproc_affinity_get(pid_t pid, int *cpus, size_t max)
{
    if (pid < 0 || (!cpus && max > 0))
        return -EINVAL;
    size_t size;
    int ncpu;
    cpu_set_t *s = cpuset_alloc(&size, &ncpu);
    if (!s)
        return -ENOMEM;
    int r = 0;
    if (sched_getaffinity(pid, size, s) < 0) {
        r = -errno;
    } else {
        for (int c = 0; c < ncpu; c++) {
            if (!CPU_ISSET_S(c, size, s))
                continue;
            if ((size_t)r < max)
                cpus[r] = c;
            r++;
        }
    }
    CPU_FREE(s);
    return r;
}

int mproc_affinity_set(pid_t pid, const int *cpus, size_t n)
{
    if (pid < 0 || !cpus || n == 0)
        return -EINVAL;
    size_t size;
    int ncpu;
    cpu_set_t *s = cpuset_alloc(&size, &ncpu);
    if (!s)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (cpus[i] < 0 || cpus[i] >= ncpu) {
            r = -EINVAL;
            goto out_free;
        }
        CPU_SET_S(cpus[i], size, s);
    }
    if (sched_setaffinity(pid, size, s) < 0)
        r = -errno;
out_free:
    CPU_FREE(s);
    return r;
}

int mproc_cpu_count_usable(void)
{
    int n = mproc_affinity_get(0, NULL, 0);
    return n < 1 ? mproc_cpu_count() : n;
}

int mproc_nice_get(pid_t pid, int *nice)
{
    if (pid < 0 || !nice)
        return -EINVAL;
    errno = 0;
    int v = getpriority(PRIO_PROCESS, (id_t)pid);
    if (v == -1 && errno != 0)
        return -errno;
    *nice = v;
    return 0;
}

int mproc_nice_set(pid_t pid, int nice)
{
    if (pid < 0 || nice < -20 || nice > 19)
        return -EINVAL;
    if (setpriority(PRIO_PROCESS, (id_t)pid, nice) < 0)
        return errno == EACCES ? -EPERM : -errno;
    return 0;
}

double mproc_monotonic(void)
{
    struct timespec ts = mproc__now();
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
