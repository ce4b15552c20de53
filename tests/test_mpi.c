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

/* Runs argv (an mpirun, or the two-machine script) with Open MPI's
 * variables for root and containers, output into buf. Returns its exit
 * status (-signal if killed). */
static int run_argv(char *const *argv, char *buf, size_t cap)
{
    int fd[2];
    CHECK(pipe2(fd, O_CLOEXEC) == 0);
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
        execv(argv[0], argv);
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

/* Runs mpirun -np np --mca btl btl [opt] mpi_prog what method. */
static int run_mpi_with(int np, const char *btl, const char *opt,
                        const char *what, const char *method, char *buf,
                        size_t cap)
{
    char nps[16];
    snprintf(nps, sizeof nps, "%d", np);
    char *argv[12] = {MPROC_MPIRUN, "--oversubscribe", "-np", nps, "--mca",
                      "btl",        (char *)btl};
    int k = 7;
    if (opt)
        argv[k++] = (char *)opt;
    argv[k++] = MPROC_MPI_PROG;
    argv[k++] = (char *)what;
    argv[k++] = (char *)method;
    argv[k] = NULL;
    return run_argv(argv, buf, cap);
}

static int run_mpi(int np, const char *btl, const char *what,
                   const char *method, char *buf, size_t cap)
{
    return run_mpi_with(np, btl, NULL, what, method, buf, cap);
}

static void expect_ok(int np, const char *btl, const char *what,
                      const char *method)
{
    SKIP_UNDER_TSAN("Open MPI's own threads race as ThreadSanitizer sees it");
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

/* A rank whose initializer fails: its tasks fail with MPROC_EINIT
 * (naming it), the other ranks' succeed. */
static void test_initializer_fails_on_a_rank(void)
{
    expect_ok(3, SHM, "initfail", "fork");
}

/* Rank 0 returns from main() without freeing the pool: the serving ranks
 * are stopped at exit and the job ends. */
static void test_exit_without_free(void)
{
    expect_ok(3, SHM, "noexit", "fork");
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

/* A rank whose server is SIGKILLed mid-map (under --enable-recovery, so
 * that mpirun keeps the job): the tasks it held fail with
 * MPROC_ERANKLOST, the others complete, the next map runs on the ranks
 * left, and rank 0 frees the pool and ends without hanging. */
static void test_rank_lost(void)
{
    SKIP_UNDER_TSAN("Open MPI's own threads race as ThreadSanitizer sees it");
    static char out[1 << 16];
    int st = run_mpi_with(3, SHM, "--enable-recovery", "lost", "fork", out,
                          sizeof out);
    /* mpirun reports the killed rank in its exit status: only rank 0's
     * verdict counts. */
    if (!strstr(out, "mpi_prog: OK lost") || strstr(out, "FAIL"))
        mproc_test_fail(__FILE__, __LINE__, "rank_lost: status %d\n%s", st,
                        out);
}

/* Two "machines": two network namespaces joined by a veth pair, two
 * ranks in each, the second's started by an rsh agent (mpi_netns.sh),
 * TCP between them: equal results, and crashes contained over there. */
static void test_two_machines(void)
{
    SKIP_UNDER_TSAN("Open MPI's own threads race as ThreadSanitizer sees it");
    static char out[1 << 16];
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "crash" : "equal";
        char *argv[] = {"/bin/bash",    MPROC_NETNS_SH, "run",  MPROC_MPIRUN,
                        MPROC_MPI_PROG, (char *)what,   "fork", NULL};
        int st = run_argv(argv, out, sizeof out);
        if (st == 77)
            SKIP("no network namespaces here (needs root, CAP_NET_ADMIN and "
                 "iproute2): the two-machine test cannot run");
        char want[64];
        snprintf(want, sizeof want, "mpi_prog: OK %s", what);
        if (st != 0 || !strstr(out, want))
            mproc_test_fail(__FILE__, __LINE__, "two machines, %s:\n%s", what,
                            out);
    }
}

/* mproc_pool_backend_mpi_spawn: the program runs as one MPI process
 * (alone, a singleton, or under mpirun -n 1) and its pool spawns 2
 * servers, copies of itself, which serve as mpirun's ranks would: equal
 * results with every rank running tasks, crashes contained there, the
 * servers stopped when rank 0 exits without freeing the pool, and (the
 * harness) nothing left behind. Skipped, saying so, where Open MPI
 * refuses to spawn. */
static void spawn_case(bool under_mpirun, const char *what, const char *method)
{
    SKIP_UNDER_TSAN("Open MPI's own threads race as ThreadSanitizer sees it");
    static char out[1 << 16];
    char *alone[] = {MPROC_MPI_PROG, (char *)what, (char *)method, "spawn2",
                     NULL};
    char *mpirun[] = {MPROC_MPIRUN, "-np",          "1",      MPROC_MPI_PROG,
                      (char *)what, (char *)method, "spawn2", NULL};
    int st = run_argv(under_mpirun ? mpirun : alone, out, sizeof out);
    if (strstr(out, "mpi_prog: SKIP"))
        SKIP("Open MPI refuses MPI_Comm_spawn here: the spawn backend cannot "
             "be tested");
    char want[64];
    snprintf(want, sizeof want, "mpi_prog: OK %s", what);
    if (st != 0 || !strstr(out, want) || strstr(out, "FAIL"))
        mproc_test_fail(__FILE__, __LINE__, "spawn2 %s %s%s: status %d\n%s",
                        what, method, under_mpirun ? " (mpirun -n 1)" : "", st,
                        out);
}

static void test_spawn_alone_equal(void)
{
    spawn_case(false, "equal", "fork");
}

static void test_spawn_mpirun1_crash(void)
{
    spawn_case(true, "crash", "spawn");
}

static void test_spawn_alone_exit_without_free(void)
{
    spawn_case(false, "noexit", "forkserver");
}

static const mproc_test tests[] = {
    {"spawn_alone_equal", test_spawn_alone_equal, 60},
    {"spawn_mpirun1_crash", test_spawn_mpirun1_crash, 90},
    {"spawn_alone_exit_without_free", test_spawn_alone_exit_without_free, 60},
    {"two_machines", test_two_machines, 180},
    {"rank_lost", test_rank_lost, 120},
    {"equal_np2_shm", test_equal_np2_shm, 120},
    {"exit_without_free", test_exit_without_free, 60},
    {"initializer_fails_on_a_rank", test_initializer_fails_on_a_rank, 60},
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
