/*
 * test_mpi.c - the pool on Open MPI (mproc/mpi.h). Each case runs
 * mpi_prog under mpirun (--oversubscribe, as root where needed, shared
 * memory or TCP) and checks that it said OK and that every process of the
 * job is gone when mpirun returns (the harness checks the rest: no child,
 * fd or /dev/shm entry left). Without MPI every case is skipped.
 */
#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#ifdef MPROC_MPI_PROG

/* Runs mpirun -np np [extra...] mpi_prog what method, output into buf.
 * Returns its exit status (-signal if killed). */
static int run_mpi(int np, const char *btl, const char *what,
                   const char *method, char *buf, size_t cap)
{
    int fd[2];
    CHECK(pipe2(fd, O_CLOEXEC) == 0);
    char nps[16];
    snprintf(nps, sizeof nps, "%d", np);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 1);
        dup2(fd[1], 2);
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
        setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
        /* Open MPI's own allocations, kept until exit (the reasons are in
         * the file). */
        setenv("LSAN_OPTIONS",
               "fast_unwind_on_malloc=0:suppressions=" MPROC_LSAN_MPI, 1);
        execl(MPROC_MPIRUN, MPROC_MPIRUN, "--oversubscribe", "-np", nps,
              "--mca", "btl", btl, MPROC_MPI_PROG, what, method, (char *)NULL);
        mproc_test_exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t k;
    while ((k = read(fd[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = 0;
    close(fd[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static void expect_ok(int np, const char *btl, const char *what,
                      const char *method)
{
    static char out[1 << 16];
    int st = run_mpi(np, btl, what, method, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "mpi_prog: OK %s", what);
    if (st != 0 || !strstr(out, want) || strstr(out, "FAIL"))
        mproc_test_fail(__FILE__, __LINE__,
                        "mpirun -np %d (btl %s) %s %s: status %d\n%s", np, btl,
                        what, method, st, out);
}

#define SHM "self,vader"
#define TCP "self,tcp"

/* Results equal the local pool's: map, imap, imap_unordered, starmap,
 * apply_async with callbacks, records (plain and shared arrays). */
static void test_equal_np2_shm(void)
{
    expect_ok(2, SHM, "equal", "fork");
}

static void test_equal_np4_shm(void)
{
    expect_ok(4, SHM, "equal", "forkserver");
}

static void test_equal_np3_tcp(void)
{
    expect_ok(3, TCP, "equal", "spawn");
}

/* A segfault, an abort, an exit, a hang past its timeout and a failure
 * fail their task alone, on every rank, under every start method. */
static void test_crash_contained(void)
{
    for (int m = 0; m < 3; m++)
        expect_ok(3, m == 1 ? TCP : SHM, "crash",
                  mproc_start_method_name(mproc_test_methods[m]));
}

static const mproc_test tests[] = {
    {"equal_np2_shm", test_equal_np2_shm, 120},
    {"equal_np4_shm", test_equal_np4_shm, 120},
    {"equal_np3_tcp", test_equal_np3_tcp, 120},
    {"crash_contained", test_crash_contained, 180},
};

#else

static void test_no_mpi(void)
{
    SKIP("built without MPI (no mpi.h / mpirun): the MPI pool is not built");
}

static const mproc_test tests[] = {{"no_mpi", test_no_mpi, 10}};

#endif

MPROC_TEST_MAIN(tests)
