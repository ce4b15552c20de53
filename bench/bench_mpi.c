/*
 * bench_mpi.c - the pool on Open MPI (docs/mpi.md), medians of 3 rounds:
 *  1. tiny tasks per second (map of 2*10^5 int -> int tasks, automatic
 *     chunks) with 1, 2 and 4 ranks of 1 worker each, through shared
 *     memory (btl self,vader) and TCP (btl self,tcp); against the local
 *     pool (1 and 2 workers) and, when /usr/bin/python3 (or
 *     $MPROC_BENCH_MPI4PY_PYTHON) has mpi4py, against
 *     mpi4py.futures' MPIPoolExecutor doing the same map on the same
 *     ranks (targets: >= 1e6/s shm, >= 1e5/s TCP, >= 10x mpi4py);
 *  2. a records map of 10^7 records (8 bytes in, 8 out) across 2 and 4
 *     ranks: GB/s moved (in + out) and time, against the local pool;
 *  3. the dispatcher's cost per task and per chunk on rank 0 (the
 *     scaling model of bench/RESULTS.md): tiny tasks with chunks of 1
 *     and of 64, with and without a remote rank; chunks of 1 against
 *     mpi4py.futures with chunksize 1 (its default).
 * Run alone, it starts itself under mpirun for each configuration
 * (--inner); it needs mpirun, and as root sets Open MPI's variables.
 */
#include "bench_util.h"

#include <mproc.h>
#include <mproc/mpi.h>

#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int tiny(const void *in, size_t len, mproc_out *out)
{
    int x = *(const int *)in + 1;
    (void)len;
    return mproc_out_write(out, &x, sizeof x);
}

static int twice(const void *in, void *out, size_t count, size_t first)
{
    const double *x = in;
    double *y = out;
    (void)first;
    for (size_t i = 0; i < count; i++)
        y[i] = 2.0 * x[i] + 1.0;
    return 0;
}

enum { NTINY = 200000, NREC = 10000000, ROUNDS = 3 };

/* Tiny tasks per second over p (chunk 0: automatic). */
static double tiny_rate(mproc_pool *p, size_t chunk)
{
    static int xs[NTINY];
    static mproc_iov it[NTINY];
    for (int i = 0; i < NTINY; i++) {
        xs[i] = i;
        it[i] = (mproc_iov){&xs[i], sizeof xs[i]};
    }
    double v[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        mproc_results *res = NULL;
        double t = now();
        int rc = mproc_pool_map(p, tiny, it, NTINY,
                                &(mproc_call_opts){.chunksize = chunk}, &res);
        v[r] = NTINY / (now() - t);
        if (rc != 0 || mproc_results_count(res) != NTINY)
            fprintf(stderr, "bench_mpi: map failed: %s\n", mproc_strerror(rc));
        mproc_results_free(res);
    }
    return bench_median(v, ROUNDS);
}

/* Seconds for the records map of NREC records over p. */
static double records_time(mproc_pool *p)
{
    double *x = mproc_pool_shm_alloc(p, NREC * sizeof *x);
    double *y = mproc_pool_shm_alloc(p, NREC * sizeof *y);
    if (!x || !y) {
        fprintf(stderr, "bench_mpi: no shared memory\n");
        return 0;
    }
    for (size_t i = 0; i < NREC; i++)
        x[i] = (double)i;
    double v[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        mproc_task_error err;
        double t = now();
        int rc = mproc_pool_map_records(
            p, twice, x, 8, y, 8, NREC,
            &(mproc_call_opts){.chunksize = 1 << 18}, &err);
        v[r] = now() - t;
        if (rc != 0 || y[NREC - 1] != 2.0 * (NREC - 1) + 1.0)
            fprintf(stderr, "bench_mpi: records failed: %s\n",
                    mproc_strerror(rc));
    }
    mproc_pool_shm_free(p, x);
    mproc_pool_shm_free(p, y);
    return bench_median(v, ROUNDS);
}

/* Under mpirun: rank 0 measures and prints "RESULT key value" lines. */
static int inner(const char *what)
{
    mproc_pool *p;
    mproc_pool_opts o = {.processes = 1, .backend = mproc_pool_backend_mpi()};
    int rc = mproc_pool_new(&p, &o);
    if (rc < 0) {
        fprintf(stderr, "bench_mpi: pool: %s\n", mproc_strerror(rc));
        return 1;
    }
    if (strcmp(what, "tiny") == 0) {
        printf("RESULT tiny %.0f\n", tiny_rate(p, 0));
    } else if (strcmp(what, "cost") == 0) {
        /* chunks of 1 and of 64: cost per chunk and per task */
        printf("RESULT c1 %.0f\n", tiny_rate(p, 1));
        printf("RESULT c64 %.0f\n", tiny_rate(p, 64));
    } else {
        printf("RESULT rec %.4f\n", records_time(p));
    }
    fflush(stdout);
    mproc_pool_free(p);
    return 0;
}

/* Runs cmd (argv) and returns the value of its "RESULT key v" line (0
 * when it has none). */
static double run_for(char *const *argv, const char *key)
{
    int fd[2];
    if (pipe(fd) < 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    char buf[8192];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 &&
           (k = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = 0;
    close(fd[0]);
    int st;
    waitpid(pid, &st, 0);
    char pat[64];
    snprintf(pat, sizeof pat, "RESULT %s ", key);
    const char *s = strstr(buf, pat);
    return s ? atof(s + strlen(pat)) : 0;
}

static double mpi_run(const char *self, int np, const char *btl,
                      const char *what, const char *key)
{
    char nps[8];
    snprintf(nps, sizeof nps, "%d", np);
    char *argv[] = {
        "mpirun",    "--oversubscribe", "-np",     nps,          "--mca", "btl",
        (char *)btl, (char *)self,      "--inner", (char *)what, NULL};
    return run_for(argv, key);
}

/* mpi4py.futures: the same map on np ranks (1 master + np-1 workers, as
 * MPIPoolExecutor runs), tasks/s; 0 when mpi4py is missing. */
static double mpi4py_run(int np, const char *btl, int chunk1)
{
    const char *script = bench_py_script("bench_mpi", "mpi4py_bench.py");
    /* Debian's python3-mpi4py goes with its own python3. */
    const char *py = getenv("MPROC_BENCH_MPI4PY_PYTHON");
    py = py ? py : "/usr/bin/python3";
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s -c 'import mpi4py.futures' 2>/dev/null", py);
    if (!script || system(cmd) != 0)
        return 0;
    char nps[8], n[16];
    snprintf(nps, sizeof nps, "%d", np);
    snprintf(n, sizeof n, "%d", chunk1 ? NTINY / 20 : NTINY);
    char *argv[] = {"mpirun",
                    "--oversubscribe",
                    "-np",
                    nps,
                    "--mca",
                    "btl",
                    (char *)btl,
                    (char *)py,
                    "-m",
                    "mpi4py.futures",
                    (char *)script,
                    n,
                    chunk1 ? "1" : "0",
                    NULL};
    return run_for(argv, "tiny");
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--inner") == 0)
        return inner(argv[2]);
    if (system("command -v mpirun >/dev/null 2>&1") != 0) {
        printf("bench_mpi: no mpirun (skipped)\n");
        return 0;
    }
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = 0;

    /* the local pool, 1 and 2 workers */
    double local[3] = {0};
    double local_rec = 0;
    for (int w = 1; w <= 2; w++) {
        mproc_pool *p;
        if (mproc_pool_new(&p, &(mproc_pool_opts){.processes = w}) < 0)
            return 1;
        local[w] = tiny_rate(p, 0);
        if (w == 2)
            local_rec = records_time(p);
        mproc_pool_free(p);
    }
    static const char *btls[2] = {"self,vader", "self,tcp"};
    static const char *names[2] = {"shm", "TCP"};
    static const int nps[3] = {1, 2, 4};
    double rate[2][3], py[2][3];
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 3; k++) {
            rate[b][k] = mpi_run(self, nps[k], btls[b], "tiny", "tiny");
            py[b][k] = nps[k] > 1 ? mpi4py_run(nps[k], btls[b], 0) : 0;
        }
    double rec[2];
    rec[0] = mpi_run(self, 2, btls[0], "rec", "rec");
    rec[1] = mpi_run(self, 4, btls[0], "rec", "rec");
    double c1 = mpi_run(self, 1, btls[0], "cost", "c1");
    double c64 = mpi_run(self, 1, btls[0], "cost", "c64");
    double r1 = mpi_run(self, 2, btls[0], "cost", "c1");
    double r64 = mpi_run(self, 2, btls[0], "cost", "c64");
    double r1x4 = mpi_run(self, 4, btls[0], "cost", "c1");
    double py1 = mpi4py_run(2, btls[0], 1), py1x4 = mpi4py_run(4, btls[0], 1);

    printf("bench_mpi: %d rounds, 1 worker per rank, %ld CPUs, medians\n",
           ROUNDS, sysconf(_SC_NPROCESSORS_ONLN));
    printf("map of %d tiny tasks (tasks/s):\n", NTINY);
    printf("  local pool, 1 worker          %10.0f\n", local[1]);
    printf("  local pool, 2 workers         %10.0f\n", local[2]);
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 3; k++) {
            printf("  MPI %-3s, %d rank%s             %10.0f", names[b], nps[k],
                   nps[k] > 1 ? "s" : " ", rate[b][k]);
            if (py[b][k] > 0)
                printf("   mpi4py.futures %9.0f  (%.0fx)", py[b][k],
                       rate[b][k] / py[b][k]);
            printf("\n");
        }
    printf("records map of 10^7 records, 8 B in + 8 B out (s, GB/s):\n");
    printf("  local pool, 2 workers         %8.4f  %6.2f\n", local_rec,
           local_rec > 0 ? 16e7 / local_rec / 1e9 : 0);
    printf("  MPI shm, 2 ranks              %8.4f  %6.2f\n", rec[0],
           rec[0] > 0 ? 16e7 / rec[0] / 1e9 : 0);
    printf("  MPI shm, 4 ranks              %8.4f  %6.2f\n", rec[1],
           rec[1] > 0 ? 16e7 / rec[1] / 1e9 : 0);
    printf("dispatcher (rank 0), tiny tasks/s by chunk size:\n");
    printf("  1 rank (local slots only)     chunk 1 %10.0f  chunk 64 %10.0f\n",
           c1, c64);
    printf("  2 ranks (1 remote)            chunk 1 %10.0f  chunk 64 %10.0f\n",
           r1, r64);
    if (py1 > 0)
        printf("chunks of 1 task, shm: mproc 2 ranks %.0f/s, mpi4py.futures "
               "%.0f/s (%.1fx); 4 ranks %.0f/s vs %.0f/s (%.1fx)\n",
               r1, py1, r1 / py1, r1x4, py1x4, r1x4 / py1x4);
    return 0;
}
