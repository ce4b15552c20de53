/*
 * test_queue.c - Queue, SimpleQueue, JoinableQueue: FIFO order, sizes from
 * 0 to larger than the ring, the full/empty codes and timeouts, joinable
 * accounting, the readiness fd, many producers and consumers with
 * checksums, peers SIGKILLed mid-operation (one at a time and in a loop of
 * hundreds), queues passed to children under every start method, and bad
 * arguments / fd exhaustion. Unbounded queues: 140 MB put before any
 * consumer exists and taken whole and in order under every start method,
 * the overflow's memory growing and going back, FIFO order across ring
 * and overflow, kill loops while overflowing, hostile overflow memory,
 * RLIMIT_FSIZE.
 */
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------ */

static mproc_queue *mkq(mproc_queue_variant t, size_t maxsize, size_t cap)
{
    mproc_queue_opts o = {t, maxsize, cap};
    mproc_queue *q = NULL;
    CHECK_OK(mproc_queue_new_opts(&q, &o));
    CHECK(q);
    return q;
}

static uint32_t fnv(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A self-checking message: slot, seq, length, checksum, then payload. */
typedef struct mhdr {
    uint32_t slot, seq, len, sum;
} mhdr;

static size_t make_msg(unsigned char *buf, uint32_t slot, uint32_t seq,
                       size_t len)
{
    uint64_t s = ((uint64_t)slot << 32) | seq;
    unsigned char *p = buf + sizeof(mhdr);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(rng_next(&s) >> 56);
    mhdr h = {slot, seq, (uint32_t)len, fnv(p, len)};
    memcpy(buf, &h, sizeof h);
    return sizeof h + len;
}

/* 1 when the message is intact (header + checksum), filling *h. */
static int check_msg(const unsigned char *buf, size_t n, mhdr *h)
{
    if (n < sizeof *h)
        return 0;
    memcpy(h, buf, sizeof *h);
    return h->len == n - sizeof *h && fnv(buf + sizeof *h, h->len) == h->sum;
}

/* Queue options bounded by bytes as well as by count (no overflow): both
 * maxsize and capacity given. */
static mproc_queue *mkq_bytes(mproc_queue_variant t, size_t cap)
{
    return mkq(t, 1000000, cap);
}

/* A message whose bytes follow from its sequence number and length:
 * writes them into p (check false), or tells whether p holds them. */
static int seq_bytes(unsigned char *p, size_t len, uint64_t seq, bool check)
{
    uint64_t x = seq * 0x9e3779b97f4a7c15ull + len + 1;
    for (size_t i = 0; i < len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t k = len - i < 8 ? len - i : 8;
        if (!check)
            memcpy(p + i, &x, k);
        else if (memcmp(p + i, &x, k) != 0)
            return 0;
    }
    return 1;
}

static void fill_seq(unsigned char *p, size_t len, uint64_t seq)
{
    seq_bytes(p, len, seq, false);
}

static int check_seq(const void *p, size_t len, uint64_t seq)
{
    return seq_bytes((unsigned char *)(uintptr_t)p, len, seq, true);
}

/* The fd of this process's newest queue memfd (the queue just made). */
static int queue_memfd(void)
{
    int found = -1;
    for (int fd = 0; fd < 1024; fd++) {
        char path[64], link[128];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k > 0) {
            link[k] = 0;
            if (strstr(link, "memfd:mproc-queue"))
                found = fd;
        }
    }
    return found;
}

/* Bytes of memory the queue's memfd holds (header, ring, overflow). */
static long long queue_mem(int memfd)
{
    struct stat st;
    if (fstat(memfd, &st) < 0)
        return -1;
    return (long long)st.st_blocks * 512;
}

/* Under valgrind, memcheck's leak scan of a process that exits or dies of
 * a signal reads all it maps, overflow windows included, and reading a
 * hole of shared memory gives it a page: pages that go only when the
 * overflow passes them, or with the queue. Memory checks after such
 * exits do not hold there. */
static bool under_valgrind(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

/* Bytes of this process's address space mapping queue memfds. */
static long long queue_mapped(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return -1;
    char line[512];
    long long sum = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a, b;
        if (strstr(line, "memfd:mproc-queue") &&
            sscanf(line, "%llx-%llx", &a, &b) == 2)
            sum += (long long)(b - a);
    }
    fclose(f);
    return sum;
}

static void *shared_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static void reap(pid_t pid, int want_code)
{
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    if (want_code >= 0) {
        CHECK(WIFEXITED(st));
        CHECK_EQ(WEXITSTATUS(st), want_code);
    }
}

/* q holds count messages and is full by its count: a put fails with
 * MPROC_EFULL at once, and after waiting timeout seconds. */
static void check_full(mproc_queue *q, long count, double timeout)
{
    CHECK_EQ(mproc_queue_qsize(q), count);
    CHECK_EQ(mproc_queue_full(q), 1);
    CHECK_ERR(mproc_queue_put_nowait(q, "x", 1), MPROC_EFULL);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_queue_put(q, "x", 1, timeout), MPROC_EFULL);
    CHECK(mproc_test_now() - t0 >= timeout * 0.93);
}

/* ---- basics ------------------------------------------------------------- */

static void test_fifo_and_state(void)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, 3));
    CHECK_EQ(mproc_queue_maxsize(q), 3);
    CHECK_EQ(mproc_queue_capacity(q), MPROC_QUEUE_DEFAULT_CAPACITY);
    CHECK_EQ(mproc_queue_type(q), MPROC_QUEUE);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    CHECK_EQ(mproc_queue_empty(q), 1);
    CHECK_EQ(mproc_queue_full(q), 0);
    char buf[16];
    size_t n = 99;
    CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &n), MPROC_EEMPTY);
    CHECK_OK(mproc_queue_put(q, "one", 3, -1));
    CHECK_OK(mproc_queue_put_nowait(q, "two", 3));
    CHECK_OK(mproc_queue_put(q, "three", 5, 0));
    CHECK_EQ(mproc_queue_empty(q), 0);
    check_full(q, 3, 0.15);
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &n, -1));
    CHECK_EQ(n, 3);
    CHECK(memcmp(buf, "one", 3) == 0);
    CHECK_OK(mproc_queue_put_nowait(q, "four", 4));
    const char *want[] = {"two", "three", "four"};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(mproc_queue_get_nowait(q, buf, sizeof buf, &n));
        CHECK_EQ(n, strlen(want[i]));
        CHECK(memcmp(buf, want[i], n) == 0);
    }
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_queue_get(q, buf, sizeof buf, &n, 0.15), MPROC_EEMPTY);
    CHECK(mproc_test_now() - t0 >= 0.14);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    /* Many more than the ring holds at once, in order, one at a time. */
    for (uint32_t i = 0; i < 100000; i++) {
        CHECK_OK(mproc_queue_put_nowait(q, &i, sizeof i));
        uint32_t v = 0;
        CHECK_OK(mproc_queue_get_nowait(q, &v, sizeof v, &n));
        CHECK_EQ(v, i);
    }
    mproc_queue_free(q);
    mproc_queue_free(NULL);
}

static void test_sizes_in_process(void)
{
    /* Sizes that fit the 4 KiB ring as one frame or several. */
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    CHECK_EQ(mproc_queue_capacity(q), 4096);
    unsigned char *in = malloc(5000), *out = malloc(5000);
    for (size_t len = 0; len <= 4000; len += (len < 64 ? 1 : 97)) {
        size_t n = make_msg(in, 1, (uint32_t)len, len);
        if (n > 4096 - 16)
            break;
        CHECK_OK(mproc_queue_put_nowait(q, in, n));
        size_t got = 0;
        CHECK_OK(mproc_queue_get_nowait(q, out, 5000, &got));
        CHECK_EQ(got, n);
        CHECK(memcmp(in, out, n) == 0);
    }
    /* Empty message, into a NULL buffer and into an allocating get. */
    CHECK_OK(mproc_queue_put(q, NULL, 0, 0));
    CHECK_OK(mproc_queue_put(q, "", 0, 0));
    size_t got = 7;
    CHECK_OK(mproc_queue_get(q, NULL, 0, &got, 0));
    CHECK_EQ(got, 0);
    void *m = NULL;
    CHECK_OK(mproc_queue_get_alloc(q, &m, &got, 0));
    CHECK(m != NULL);
    CHECK_EQ(got, 0);
    free(m);
    /* A buffer too small: the size needed is reported, nothing lost. */
    CHECK_OK(mproc_queue_put(q, "abcdefgh", 8, 0));
    char small[4];
    got = 0;
    CHECK_ERR(mproc_queue_get(q, small, sizeof small, &got, 0), MPROC_EBUFSIZE);
    CHECK_EQ(got, 8);
    CHECK_ERR(mproc_queue_get(q, NULL, 0, &got, 0), MPROC_EBUFSIZE);
    CHECK_EQ(mproc_queue_qsize(q), 1);
    CHECK_OK(mproc_queue_get_alloc(q, &m, &got, 0));
    CHECK_EQ(got, 8);
    CHECK(memcmp(m, "abcdefgh", 8) == 0);
    free(m);
    free(in);
    free(out);
    mproc_queue_free(q);
}

/* Sizes up to 5x the ring, through a forked consumer, both directions of
 * the buffer interface. */
static void test_sizes_larger_than_ring(void)
{
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    static const size_t sizes[] = {0,    1,    15,    16,    17,   1000,
                                   1008, 1024, 2047,  3000,  4080, 4096,
                                   4097, 8191, 12000, 20480, 20000};
    const size_t ns = sizeof sizes / sizeof sizes[0];
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        unsigned char *buf = malloc(30000);
        for (size_t i = 0; i < ns; i++) {
            size_t n = make_msg(buf, 2, (uint32_t)i, sizes[i]);
            if (mproc_queue_put(q, buf, n, 10) != 0)
                mproc_test_exit(1);
        }
        free(buf);
        mproc_test_exit(0);
    }
    for (size_t i = 0; i < ns; i++) {
        size_t need = sizes[i] + sizeof(mhdr);
        size_t got = 0;
        mhdr h;
        if (i % 2) {
            void *m = NULL;
            CHECK_OK(mproc_queue_get_alloc(q, &m, &got, 10));
            CHECK(check_msg(m, got, &h));
            free(m);
        } else {
            unsigned char *buf = malloc(need);
            if (need > 8) {
                /* One byte short first: EBUFSIZE, message kept. */
                int rc = mproc_queue_get(q, buf, need - 1, &got, 10);
                CHECK_ERR(rc, MPROC_EBUFSIZE);
                CHECK_EQ(got, need);
            }
            CHECK_OK(mproc_queue_get(q, buf, need, &got, 10));
            CHECK(check_msg(buf, got, &h));
            free(buf);
        }
        CHECK_EQ(got, need);
        CHECK_EQ(h.seq, i);
    }
    reap(pid, 0);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    mproc_queue_free(q);
}

/* Bounded by bytes: a streamed put that runs out of time is withdrawn; the
 * queue goes on. */
static void test_streamed_put_timeout(void)
{
    mproc_queue *q = mkq_bytes(MPROC_QUEUE, 4096);
    unsigned char *big = calloc(1, 50000);
    CHECK_ERR(mproc_queue_put(q, big, 50000, 0.1), MPROC_EFULL);
    /* Its pieces fill the ring until a consumer skips them. */
    CHECK_ERR(mproc_queue_put(q, "after", 5, 0), MPROC_EFULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        mproc_test_exit(mproc_queue_put(q, "after", 5, 5) == 0 ? 0 : 1);
    char buf[16];
    size_t n;
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &n, 5));
    CHECK_EQ(n, 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    reap(pid, 0);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &n), MPROC_EEMPTY);
    /* Too big for the queue at all: refused before anything is read. */
    CHECK_ERR(mproc_queue_put(q, big, MPROC_QUEUE_MAX_MESSAGE + (size_t)1, 0),
              MPROC_ETOOBIG);
    free(big);
    mproc_queue_free(q);
}

static void test_bytes_bound(void)
{
    /* maxsize and capacity both given: the ring's bytes bound the queue
     * too. 100-byte messages take 128 bytes each, so 32 fill 4 KiB. */
    mproc_queue *q = mkq(MPROC_QUEUE_SIMPLE, 1000, 4096);
    CHECK_EQ(mproc_queue_type(q), MPROC_QUEUE_SIMPLE);
    unsigned char m[100] = {0};
    int k = 0;
    while (mproc_queue_put_nowait(q, m, sizeof m) == 0)
        k++;
    CHECK_EQ(k, 32);
    CHECK_EQ(mproc_queue_full(q), 0); /* the count bound is not reached */
    CHECK_ERR(mproc_queue_put(q, m, sizeof m, 0.05), MPROC_EFULL);
    size_t n;
    CHECK_OK(mproc_queue_get_nowait(q, m, sizeof m, &n));
    CHECK_OK(mproc_queue_put_nowait(q, m, sizeof m));
    CHECK_EQ(mproc_queue_qsize(q), 32);
    mproc_queue_free(q);
    /* maxsize 0, same ring: unbounded, a put never finds it full. */
    q = mkq(MPROC_QUEUE_SIMPLE, 0, 4096);
    for (int i = 0; i < 5000; i++) {
        memcpy(m, &i, sizeof i);
        CHECK_OK(mproc_queue_put_nowait(q, m, sizeof m));
    }
    CHECK_EQ(mproc_queue_qsize(q), 5000);
    CHECK_EQ(mproc_queue_full(q), 0);
    for (int i = 0; i < 5000; i++) {
        int v;
        CHECK_OK(mproc_queue_get_nowait(q, m, sizeof m, &n));
        memcpy(&v, m, sizeof v);
        CHECK_EQ(v, i);
    }
    CHECK_ERR(mproc_queue_get_nowait(q, m, sizeof m, &n), MPROC_EEMPTY);
    mproc_queue_free(q);
}

/* maxsize with the default ring: the count bounds the queue, the bytes do
 * not (messages larger than the ring go to the overflow). */
static void test_count_bound_unbounded_bytes(void)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, 5));
    size_t big = 2 * MPROC_QUEUE_DEFAULT_CAPACITY;
    unsigned char *m = malloc(big);
    for (int i = 0; i < 5; i++) {
        fill_seq(m, big, (uint64_t)i);
        CHECK_OK(mproc_queue_put_nowait(q, m, big));
    }
    check_full(q, 5, 0.1);
    /* A consumer in another process makes room for the count. */
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        usleep(50000);
        void *a;
        size_t n;
        int rc = mproc_queue_get_alloc(q, &a, &n, 5);
        int ok = rc == 0 && n == big && check_seq(a, n, 0);
        free(rc == 0 ? a : NULL);
        mproc_test_exit(ok ? 0 : 1);
    }
    CHECK_OK(mproc_queue_put(q, "x", 1, 5));
    reap(pid, 0);
    for (int i = 1; i < 5; i++) {
        size_t n;
        CHECK_OK(mproc_queue_get(q, m, big, &n, 0));
        CHECK_EQ(n, big);
        CHECK(check_seq(m, n, (uint64_t)i));
    }
    size_t n;
    CHECK_OK(mproc_queue_get(q, m, big, &n, 0));
    CHECK_EQ(n, 1);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    free(m);
    mproc_queue_free(q);
}

static void test_bad_args(void)
{
    mproc_queue *q = NULL;
    mproc_queue_opts o = {MPROC_QUEUE, 0, MPROC_QUEUE_MAX_CAPACITY + 1};
    CHECK_ERR(mproc_queue_new_opts(&q, &o), -EINVAL);
    CHECK(q == NULL);
    o = (mproc_queue_opts){(mproc_queue_variant)7, 0, 0};
    CHECK_ERR(mproc_queue_new_opts(&q, &o), -EINVAL);
    CHECK_ERR(mproc_queue_new(&q, (size_t)1 << 40), -EINVAL);
    CHECK_ERR(mproc_queue_new(NULL, 0), -EINVAL);
    CHECK_OK(mproc_queue_new_opts(&q, NULL));
    size_t n;
    char b[4];
    CHECK_ERR(mproc_queue_put(NULL, "x", 1, 0), -EINVAL);
    CHECK_ERR(mproc_queue_put(q, NULL, 1, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get(NULL, b, 4, &n, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get(q, NULL, 4, &n, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get(q, b, 4, NULL, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get_alloc(q, NULL, &n, 0), -EINVAL);
    CHECK_ERR(mproc_queue_qsize(NULL), -EINVAL);
    CHECK_ERR(mproc_queue_task_done(q), MPROC_ETYPE);
    CHECK_ERR(mproc_queue_join(q, 0), MPROC_ETYPE);
    CHECK_ERR(mproc_queue_fileno(NULL), -EINVAL);
    /* close: this handle only. */
    mproc_queue *other = NULL;
    CHECK_OK(mproc_queue_put(q, "x", 1, 0));
    pid_t pid = fork();
    if (pid == 0) {
        /* A forked child's handle is a different object in memory only by
         * copy; closing it there leaves the parent's usable. */
        mproc_queue_close(q);
        mproc_test_exit(mproc_queue_put(q, "y", 1, 0) == MPROC_ECLOSED ? 0 : 1);
    }
    reap(pid, 0);
    CHECK_OK(mproc_queue_close(q));
    CHECK_OK(mproc_queue_close(q));
    CHECK_ERR(mproc_queue_put(q, "x", 1, 0), MPROC_ECLOSED);
    CHECK_ERR(mproc_queue_get(q, b, 4, &n, 0), MPROC_ECLOSED);
    CHECK_ERR(mproc_queue_fileno(q), MPROC_ECLOSED);
    CHECK_ERR(mproc_queue_empty(q), MPROC_ECLOSED); /* Python: OSError */
    CHECK_EQ(mproc_queue_qsize(q), 1);
    CHECK_EQ(mproc_queue_full(q), 0);
    (void)other;
    mproc_queue_free(q);
    /* SimpleQueue alike. */
    q = mkq(MPROC_QUEUE_SIMPLE, 0, 4096);
    CHECK_EQ(mproc_queue_empty(q), 1);
    CHECK_OK(mproc_queue_close(q));
    CHECK_ERR(mproc_queue_empty(q), MPROC_ECLOSED);
    mproc_queue_free(q);
}

/* Running out of fds fails cleanly and leaves nothing behind. */
static void test_fd_exhaustion(void)
{
    struct rlimit old, lim;
    CHECK_OK(getrlimit(RLIMIT_NOFILE, &old));
    int base = mproc_test_count_fds();
    int highest = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            highest = fd;
    int top = highest + 4;
    lim = old;
    lim.rlim_cur = (rlim_t)top;
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &lim));
    /* Fill every free fd below the limit. */
    int filled[1024], nf = 0;
    for (;;) {
        int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            break;
        filled[nf++] = fd;
    }
    CHECK(nf >= 3);
    mproc_queue *q = NULL;
    for (int free_fds = 0; free_fds < 2; free_fds++) {
        /* 0 free: memfd_create fails; 1 free: eventfd does. */
        if (free_fds)
            close(filled[--nf]);
        CHECK_ERR(mproc_queue_new(&q, 0), -EMFILE);
        CHECK(q == NULL);
    }
    close(filled[--nf]);
    CHECK_OK(mproc_queue_new(&q, 0));
    CHECK_OK(mproc_queue_put(q, "x", 1, 0));
    mproc_queue_free(q);
    while (nf)
        close(filled[--nf]);
    CHECK_OK(setrlimit(RLIMIT_NOFILE, &old));
    CHECK_EQ(mproc_test_count_fds(), base);
}

/* Scribbling over a frame in the shared memory (as a buggy process could)
 * gives MPROC_EPROTO, never a crash or an out-of-bounds copy. */
/* Every get of a damaged queue fails alike, and stores no buffer. */
static void check_eproto(mproc_queue *q)
{
    char buf[64];
    size_t n;
    CHECK_ERR(mproc_queue_get(q, buf, sizeof buf, &n, 0), MPROC_EPROTO);
    void *a = NULL;
    CHECK_ERR(mproc_queue_get_alloc(q, &a, &n, 0), MPROC_EPROTO);
    CHECK(a == NULL);
}

static unsigned char *map_ring_of(mproc_queue *q, size_t *len)
{
    int found = queue_memfd();
    CHECK(found >= 0);
    *len = 4096 + mproc_queue_capacity(q);
    unsigned char *p =
        mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, found, 0);
    CHECK(p != MAP_FAILED);
    return p;
}

static void test_hostile_memory(void)
{
    static const struct {
        size_t off;
        uint32_t val;
        size_t maxsize; /* with the 4 KiB ring: > 0, bounded by bytes */
    } pokes[] = {
        {0, 0xffffff00u, 0},  /* payload length far beyond the data */
        {4, 0x12345678u, 0},  /* flags without the frame magic */
        {8, 0xffffffffu, 0},  /* total length beyond the maximum (low) */
        {12, 0x7fffffffu, 0}, /* total length beyond the maximum (high) */
        {4, 0xf7a50008u, 0},  /* a SEGEND that follows no LINK */
        {4, 0xf7a50004u, 9},  /* a LINK in a queue with no overflow */
    };
    for (size_t i = 0; i < sizeof pokes / sizeof pokes[0]; i++) {
        mproc_queue *q = mkq(MPROC_QUEUE, pokes[i].maxsize, 4096);
        size_t len;
        unsigned char *m = map_ring_of(q, &len);
        CHECK_OK(mproc_queue_put(q, "abcdef", 6, 0));
        memcpy(m + 4096 + pokes[i].off, &pokes[i].val, 4);
        check_eproto(q);
        munmap(m, len);
        mproc_queue_free(q);
    }
}

/* ---- JoinableQueue ------------------------------------------------------ */

static void test_joinable(void)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new_joinable(&q, 0));
    CHECK_EQ(mproc_queue_type(q), MPROC_QUEUE_JOINABLE);
    CHECK_OK(mproc_queue_join(q, 0));
    CHECK_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
    for (int i = 0; i < 5; i++)
        CHECK_OK(mproc_queue_put(q, &i, sizeof i, 0));
    CHECK_ERR(mproc_queue_join(q, 0.05), -ETIMEDOUT);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 5; i++) {
            int v;
            size_t n;
            if (mproc_queue_get(q, &v, sizeof v, &n, 5) != 0 || v != i)
                mproc_test_exit(1);
            usleep(20000);
            if (mproc_queue_task_done(q) != 0)
                mproc_test_exit(2);
        }
        mproc_test_exit(mproc_queue_task_done(q) == MPROC_ETASKDONE ? 0 : 3);
    }
    double t0 = mproc_test_now();
    CHECK_OK(mproc_queue_join(q, 10));
    CHECK(mproc_test_now() - t0 >= 0.08);
    reap(pid, 0);
    CHECK_ERR(mproc_queue_task_done(q), MPROC_ETASKDONE);
    CHECK_OK(mproc_queue_join(q, 0));
    /* A withdrawn streamed message counts as done once a consumer has
     * skipped it. */
    mproc_queue_free(q);
    q = mkq(MPROC_QUEUE_JOINABLE, 1000, 4096); /* bounded by bytes */
    unsigned char *big = calloc(1, 20000);
    CHECK_ERR(mproc_queue_put(q, big, 20000, 0.05), MPROC_EFULL);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        mproc_test_exit(mproc_queue_put(q, "x", 1, 5) == 0 ? 0 : 1);
    size_t n;
    CHECK_OK(mproc_queue_get(q, big, 20000, &n, 5));
    CHECK_EQ(n, 1);
    reap(pid, 0);
    CHECK_ERR(mproc_queue_join(q, 0), -ETIMEDOUT);
    CHECK_OK(mproc_queue_task_done(q));
    CHECK_OK(mproc_queue_join(q, 0));
    free(big);
    mproc_queue_free(q);
}

/* ---- readiness fd ------------------------------------------------------- */

static int readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, ms);
    return r > 0 && (p.revents & POLLIN);
}

static void test_fileno(void)
{
    mproc_queue *q;
    CHECK_OK(mproc_queue_new(&q, 0));
    CHECK_OK(mproc_queue_put(q, "early", 5, 0));
    int fd = mproc_queue_fileno(q);
    CHECK(fd >= 0);
    CHECK_EQ(mproc_queue_fileno(q), fd);
    CHECK(readable(fd, 0));
    char buf[16];
    size_t n;
    CHECK_OK(mproc_queue_get_nowait(q, buf, sizeof buf, &n));
    /* Possibly spuriously readable now; a get that finds it empty clears. */
    CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &n), MPROC_EEMPTY);
    CHECK(!readable(fd, 0));
    /* A put from another process makes it readable; mproc_wait sees it. */
    for (int round = 0; round < 50; round++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            usleep(round % 2 ? 0 : 2000);
            mproc_test_exit(
                mproc_queue_put(q, &round, sizeof round, 1) == 0 ? 0 : 1);
        }
        int ready = 0;
        CHECK_EQ(mproc_wait(&fd, 1, 5, &ready), 1);
        CHECK_EQ(ready, 1);
        int v = -1;
        CHECK_OK(mproc_queue_get(q, &v, sizeof v, &n, 1));
        CHECK_EQ(v, round);
        reap(pid, 0);
        CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &n), MPROC_EEMPTY);
        CHECK(!readable(fd, 0));
    }
    /* epoll sees the same: level-triggered readiness while data waits. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 7};
    CHECK_OK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
    CHECK_EQ(epoll_wait(ep, &ev, 1, 0), 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        mproc_test_exit(mproc_queue_put(q, "ep", 2, 1) == 0 ? 0 : 1);
    CHECK_EQ(epoll_wait(ep, &ev, 1, 5000), 1);
    CHECK_EQ(ev.data.u32, 7);
    reap(pid, 0);
    CHECK_OK(mproc_queue_get_nowait(q, buf, sizeof buf, &n));
    CHECK_ERR(mproc_queue_get_nowait(q, buf, sizeof buf, &n), MPROC_EEMPTY);
    CHECK_EQ(epoll_wait(ep, &ev, 1, 0), 0);
    close(ep);
    /* Two messages, one get: still readable (never unreadable with data). */
    CHECK_OK(mproc_queue_put(q, "a", 1, 0));
    CHECK_OK(mproc_queue_put(q, "b", 1, 0));
    CHECK_OK(mproc_queue_get_nowait(q, buf, sizeof buf, &n));
    CHECK(readable(fd, 0));
    CHECK_OK(mproc_queue_get_nowait(q, buf, sizeof buf, &n));
    mproc_queue_free(q);
}

/* ---- many producers and consumers -------------------------------------- */

#define MP_SLOTS 8
#define MP_SEQS  262144

typedef struct board {
    _Atomic uint32_t next[MP_SLOTS];                /* next seq per slot */
    _Atomic uint8_t sent[MP_SLOTS][MP_SEQS];        /* put returned 0 */
    _Atomic uint8_t got[MP_SLOTS][MP_SEQS];         /* deliveries */
    _Atomic uint32_t last_seen[MP_SLOTS][MP_SLOTS]; /* consumer x slot */
    _Atomic uint32_t bad, order_bad, stop;
    _Atomic uint32_t slow; /* consumers leave a backlog */
    _Atomic uint64_t delivered;
} board;

static size_t pick_len(uint64_t *r, size_t cap)
{
    uint64_t x = rng_next(r) % 100;
    if (x < 60)
        return (size_t)(rng_next(r) % 64);
    if (x < 95)
        return (size_t)(rng_next(r) % (cap / 2));
    return (size_t)(cap + rng_next(r) % (2 * cap)); /* streamed */
}

static void producer(mproc_queue *q, board *b, uint32_t slot, int count,
                     size_t cap, uint64_t seed)
{
    unsigned char *buf = malloc(4 * cap + 64);
    uint64_t r = seed;
    for (int i = 0; count < 0 || i < count; i++) {
        if (atomic_load(&b->stop))
            break;
        uint32_t seq = atomic_fetch_add(&b->next[slot], 1);
        if (seq >= MP_SEQS) {
            /* Out of numbers: idle until told to stop. */
            while (!atomic_load(&b->stop))
                usleep(1000);
            break;
        }
        size_t n = make_msg(buf, slot, seq, pick_len(&r, cap));
        int rc = mproc_queue_put(q, buf, n, 30);
        if (rc != 0) {
            fprintf(stderr, "producer %u: put: %s\n", slot, mproc_errname(rc));
            mproc_test_exit(10);
        }
        atomic_store(&b->sent[slot][seq], 1);
    }
    free(buf);
}

/* Takes messages until a stop message (slot 255); records each. */
static void consumer(mproc_queue *q, board *b, int me)
{
    for (;;) {
        /* Let a backlog of megabytes build up in the overflow. */
        while (atomic_load(&b->slow) && mproc_queue_qsize(q) < 4000)
            usleep(1000);
        void *m = NULL;
        size_t n = 0;
        int rc = mproc_queue_get_alloc(q, &m, &n, 30);
        if (rc != 0) {
            fprintf(stderr, "consumer %d: get: %s\n", me, mproc_errname(rc));
            mproc_test_exit(20);
        }
        mhdr h;
        if (n == 4 && memcmp(m, "STOP", 4) == 0) {
            free(m);
            return;
        }
        if (!check_msg(m, n, &h) || h.slot >= MP_SLOTS || h.seq >= MP_SEQS) {
            atomic_fetch_add(&b->bad, 1);
        } else {
            /* Per consumer, each producer's messages arrive in order. */
            uint32_t prev = atomic_load(&b->last_seen[me][h.slot]);
            if (prev && h.seq + 1 <= prev)
                atomic_fetch_add(&b->order_bad, 1);
            atomic_store(&b->last_seen[me][h.slot], h.seq + 1);
            atomic_fetch_add(&b->got[h.slot][h.seq], 1);
            atomic_fetch_add(&b->delivered, 1);
        }
        free(m);
    }
}

static void test_mpmc_checksums(void)
{
    const size_t cap = 16384;
    mproc_queue *q = mkq(MPROC_QUEUE, 0, cap);
    board *b = shared_map(sizeof *b);
    enum { NP = 3, NC = 3, PER = 1500 };
    pid_t pids[NP + NC];
    for (int i = 0; i < NC; i++) {
        pids[NP + i] = fork();
        CHECK(pids[NP + i] >= 0);
        if (pids[NP + i] == 0) {
            consumer(q, b, i);
            mproc_test_exit(0);
        }
    }
    for (int i = 0; i < NP; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0) {
            producer(q, b, (uint32_t)i, PER, cap, 77 + (uint64_t)i);
            mproc_test_exit(0);
        }
    }
    for (int i = 0; i < NP; i++)
        reap(pids[i], 0);
    for (int i = 0; i < NC; i++)
        CHECK_OK(mproc_queue_put(q, "STOP", 4, 10));
    for (int i = 0; i < NC; i++)
        reap(pids[NP + i], 0);
    CHECK_EQ(atomic_load(&b->bad), 0);
    CHECK_EQ(atomic_load(&b->order_bad), 0);
    CHECK_EQ(atomic_load(&b->delivered), NP * PER);
    for (int s = 0; s < NP; s++)
        for (int i = 0; i < PER; i++)
            CHECK_EQ(atomic_load(&b->got[s][i]), 1);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    munmap(b, sizeof *b);
    mproc_queue_free(q);
}

/* Threads of one process share a handle. */
typedef struct targ {
    mproc_queue *q;
    int id;
    long sum;
} targ;

static void *t_put(void *p)
{
    targ *t = p;
    for (int i = 1; i <= 20000; i++) {
        int v = t->id * 100000 + i;
        if (mproc_queue_put(t->q, &v, sizeof v, 10) != 0)
            return (void *)1;
    }
    return NULL;
}

static void *t_get(void *p)
{
    targ *t = p;
    int last[2] = {0, 0};
    for (int i = 0; i < 20000; i++) {
        int v;
        size_t n;
        if (mproc_queue_get(t->q, &v, sizeof v, &n, 10) != 0 || n != 4)
            return (void *)1;
        int who = v / 100000, k = v % 100000;
        if (who < 0 || who > 1 || k <= last[who])
            return (void *)2;
        last[who] = k;
        t->sum += v;
    }
    return NULL;
}

static void threads_on(mproc_queue *q)
{
    pthread_t th[4];
    targ a[4] = {{q, 0, 0}, {q, 1, 0}, {q, 0, 0}, {q, 0, 0}};
    CHECK_OK(-pthread_create(&th[0], NULL, t_put, &a[0]));
    CHECK_OK(-pthread_create(&th[1], NULL, t_put, &a[1]));
    CHECK_OK(-pthread_create(&th[2], NULL, t_get, &a[2]));
    CHECK_OK(-pthread_create(&th[3], NULL, t_get, &a[3]));
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        CHECK(r == NULL);
    }
    long want = 0;
    for (int i = 1; i <= 20000; i++)
        want += i + 100000 + i;
    CHECK_EQ(a[2].sum + a[3].sum, want);
    mproc_queue_free(q);
}

static void test_threads(void)
{
    /* Bounded by bytes and count; then unbounded on a small ring, where
     * the threads share the handle's overflow windows too. */
    threads_on(mkq(MPROC_QUEUE, 100, 4096));
    threads_on(mkq(MPROC_QUEUE, 0, 4096));
}

/* ---- death of a peer ---------------------------------------------------- */

/* A consumer killed while it sleeps holding the consumer lock: the next
 * consumer takes over at once. */
static void test_kill_blocked_consumer(void)
{
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    pid_t pid = fork();
    if (pid == 0) {
        char b[8];
        size_t n;
        mproc_queue_get(q, b, sizeof b, &n, -1);
        mproc_test_exit(1);
    }
    usleep(100000);
    kill(pid, SIGKILL);
    reap(pid, -1);
    CHECK_OK(mproc_queue_put(q, "ok", 2, 1));
    char b[8];
    size_t n;
    CHECK_OK(mproc_queue_get(q, b, sizeof b, &n, 2));
    CHECK_EQ(n, 2);
    mproc_queue_free(q);
}

/*
 * A producer that dies midway through a message larger than the ring, while
 * a consumer receives it: its source buffer ends in an inaccessible page, so
 * it faults inside the copy, holding the producer lock. The consumer drops
 * the unfinished message and gets the next one.
 */
static void die_in_put(mproc_queue *q)
{
    size_t half = 1 << 20;
    unsigned char *buf = mmap(NULL, 2 * half, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        mproc_test_exit(7);
    memset(buf, 'b', half);
    mprotect(buf + half, half, PROT_NONE);
    signal(SIGSEGV, SIG_DFL);
    mproc_queue_put(q, buf, 2 * half, -1);
    mproc_test_exit(8); /* not reached */
}

/* A consumer that dies midway through taking a message of big bytes: its
 * buffer ends in an inaccessible page, so it faults inside the copy,
 * holding the consumer lock. */
static void die_in_get(mproc_queue *q, size_t big)
{
    unsigned char *buf = mmap(NULL, big, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        mproc_test_exit(7);
    mprotect(buf + big / 2, big / 2, PROT_NONE);
    signal(SIGSEGV, SIG_DFL);
    size_t n;
    mproc_queue_get(q, buf, big, &n, 10);
    mproc_test_exit(8); /* not reached */
}

static void test_kill_streaming_producer(void)
{
    mproc_queue *q = mkq_bytes(MPROC_QUEUE, 4096);
    for (int variant = 0; variant < 2; variant++) {
        pid_t cons = fork();
        CHECK(cons >= 0);
        if (cons == 0) {
            void *m = NULL;
            size_t n = 0;
            int rc = mproc_queue_get_alloc(q, &m, &n, variant ? 1 : 10);
            int ok = variant ? rc == MPROC_EEMPTY
                             : rc == 0 && n == 4 && memcmp(m, "next", 4) == 0;
            free(m);
            mproc_test_exit(ok ? 0 : 4);
        }
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            die_in_put(q);
        reap(pid, -1);
        if (variant == 0) {
            /* The next producer repairs the lock and withdraws it. */
            CHECK_OK(mproc_queue_put(q, "next", 4, 5));
        }
        /* Variant 1: the consumer notices the death by itself. */
        reap(cons, 0);
        CHECK_EQ(mproc_queue_qsize(q), 0);
    }
    CHECK_OK(mproc_queue_put(q, "z", 1, 1));
    char b[4];
    size_t n;
    CHECK_OK(mproc_queue_get(q, b, sizeof b, &n, 1));
    CHECK_EQ(b[0], 'z');
    mproc_queue_free(q);
}

/* A consumer that dies midway through receiving a message larger than the
 * ring (its buffer ends in an inaccessible page): the next consumer skips
 * the rest of that message, the producer finishes, nothing else is lost. */
static void test_kill_streaming_consumer(void)
{
    mproc_queue *q = mkq_bytes(MPROC_QUEUE, 4096);
    const size_t big = 1 << 20;
    pid_t prod = fork();
    CHECK(prod >= 0);
    if (prod == 0) {
        unsigned char *m = malloc(big);
        memset(m, 'm', big);
        int ok = mproc_queue_put(q, m, big, 10) == 0 &&
                 mproc_queue_put(q, "after", 5, 10) == 0;
        free(m);
        mproc_test_exit(ok ? 0 : 1);
    }
    pid_t cons = fork();
    CHECK(cons >= 0);
    if (cons == 0) {
        die_in_get(q, big);
    }
    reap(cons, -1);
    char buf[16];
    size_t n = 0;
    CHECK_OK(mproc_queue_get(q, buf, sizeof buf, &n, 10));
    CHECK_EQ(n, 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    reap(prod, 0);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    mproc_queue_free(q);
}

/*
 * The kill loop: producers and consumers run flat out on a small ring with
 * messages of mixed sizes (some streamed); the parent SIGKILLs one of them
 * at a random moment, hundreds of times, and starts a replacement. Then
 * every delivered message must be intact, none delivered twice, the
 * messages lost no more than the consumers killed, and the queue working.
 */
static void kill_loop(size_t cap, size_t maxsize, int KILLS, bool slow)
{
    mproc_queue *q = mkq(MPROC_QUEUE_JOINABLE, maxsize, cap);
    int memfd = queue_memfd();
    long long mem_max = 0;
    board *b = shared_map(sizeof *b);
    atomic_store(&b->slow, slow);
    enum { NP = 3, NC = 3 };
    pid_t pids[NP + NC];
    uint64_t r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    if (getenv("MPROC_TEST_SEED"))
        r = strtoull(getenv("MPROC_TEST_SEED"), NULL, 0);
    printf("     kill loop seed %llu\n", (unsigned long long)r);
    int consumer_kills = 0, producer_kills = 0;

    for (int i = 0; i < NP + NC; i++) {
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0) {
            if (i < NP)
                producer(q, b, (uint32_t)i, -1, cap, (uint64_t)i * 1000);
            else
                consumer(q, b, i - NP);
            mproc_test_exit(0);
        }
    }
    double t0 = mproc_test_now();
    for (int k = 0; k < KILLS; k++) {
        /* Let some messages through since the last kill (up to 100 ms, so
         * that slow runs under valgrind still kill mid-traffic). */
        uint64_t seen = atomic_load(&b->delivered);
        for (int w = 0; w < 100 && atomic_load(&b->delivered) < seen + 5; w++)
            usleep(1000);
        usleep((useconds_t)(rng_next(&r) % 3000));
        int i = (int)(rng_next(&r) % (NP + NC));
        kill(pids[i], SIGKILL);
        int st;
        CHECK_EQ(waitpid(pids[i], &st, 0), pids[i]);
        if (!WIFSIGNALED(st))
            mproc_test_fail(__FILE__, __LINE__, "child %d exited %d", i,
                            WEXITSTATUS(st));
        if (i < NP)
            producer_kills++;
        else
            consumer_kills++;
        long long mem = queue_mem(memfd);
        if (mem > mem_max)
            mem_max = mem;
        pids[i] = fork();
        CHECK(pids[i] >= 0);
        if (pids[i] == 0) {
            if (i < NP)
                producer(q, b, (uint32_t)i, -1, cap,
                         (uint64_t)i * 1000 + (uint64_t)k + 1);
            else
                consumer(q, b, i - NP);
            mproc_test_exit(0);
        }
    }
    double t_kill = mproc_test_now() - t0;
    /* Stop the producers cleanly, then the consumers. */
    atomic_store(&b->slow, 0);
    atomic_store(&b->stop, 1);
    for (int i = 0; i < NP; i++)
        reap(pids[i], 0);
    for (int i = 0; i < NC; i++)
        CHECK_OK(mproc_queue_put(q, "STOP", 4, 10));
    for (int i = 0; i < NC; i++)
        reap(pids[NP + i], 0);
    CHECK_EQ(mproc_queue_qsize(q), 0);

    CHECK_EQ(atomic_load(&b->bad), 0);
    CHECK_EQ(atomic_load(&b->order_bad), 0);
    long sent = 0, lost = 0, dup = 0;
    for (int s = 0; s < NP; s++) {
        uint32_t top = atomic_load(&b->next[s]);
        if (top > MP_SEQS)
            top = MP_SEQS;
        for (uint32_t i = 0; i < top; i++) {
            uint8_t g = atomic_load(&b->got[s][i]);
            if (g > 1)
                dup++;
            if (atomic_load(&b->sent[s][i])) {
                sent++;
                if (g == 0)
                    lost++;
            }
        }
    }
    printf("     kill loop: %d producer + %d consumer kills in %.1fs, "
           "%ld sent, %lu delivered, %ld lost, queue memory up to %lld "
           "KiB\n",
           producer_kills, consumer_kills, t_kill, sent,
           (unsigned long)atomic_load(&b->delivered), lost, mem_max >> 10);
    CHECK_EQ(dup, 0);
    CHECK(lost <= consumer_kills);
    CHECK(sent >= KILLS);
    /* Still works, in both directions of every lock. */
    for (int i = 0; i < 100; i++) {
        int v = -1;
        size_t n;
        CHECK_OK(mproc_queue_put(q, &i, sizeof i, 1));
        if (i % 3 == 0)
            CHECK_OK(mproc_queue_put(q, &i, sizeof i, 1));
        CHECK_OK(mproc_queue_get(q, &v, sizeof v, &n, 1));
        CHECK_EQ(v, i);
        if (i % 3 == 0)
            CHECK_OK(mproc_queue_get(q, &v, sizeof v, &n, 1));
    }
    CHECK_EQ(mproc_queue_qsize(q), 0);
    /* Whatever the killed left in the overflow went back with the rest:
     * the memfd holds its header and ring. */
    if (slow)
        CHECK(mem_max > (long long)cap + (4 << 20)); /* it did overflow */
    if (!under_valgrind())
        CHECK(queue_mem(memfd) <= 4096 + (long long)cap + (128 << 10));
    munmap(b, sizeof *b);
    mproc_queue_free(q);
}

/* Unbounded on a small ring: the ring and the overflow both in use, runs
 * opened and closed all the time. */
static void test_kill_loop(void)
{
    kill_loop(8192, 0, 300, false);
}

/* Unbounded with slow consumers: a backlog of megabytes in the overflow
 * while producers and consumers are killed. */
static void test_kill_loop_overflow(void)
{
    kill_loop(8192, 0, 300, true);
}

/* Bounded by bytes and count: producers also wait for room and the count,
 * messages larger than a quarter of the ring are streamed. */
static void test_kill_loop_bounded(void)
{
    kill_loop(4096, 4, 150, false);
}

/* ---- unbounded: the overflow -------------------------------------------- */

/* The messages of the big put-before-consumers test: 100,000 of 1 KiB and
 * four of 10 MiB among them. */
#define BIG_N     100004u
#define BIG_LARGE ((size_t)10 << 20)

static size_t big_len(uint32_t i)
{
    return i % 33334 == 1 ? BIG_LARGE : 1024;
}

/* A consumer started after all the puts: takes every message, checks its
 * length, bytes and place, then that no overflow window is left mapped. */
static int t_take_all(const mproc_args *a)
{
    mproc_queue *q = mproc_args_queue(a, 0);
    if (!q)
        return 2;
    unsigned char *buf = malloc(BIG_LARGE);
    if (!buf)
        return 3;
    for (uint32_t i = 0; i < BIG_N; i++) {
        size_t n = 0;
        int rc = mproc_queue_get(q, buf, BIG_LARGE, &n, 10);
        if (rc != 0)
            return 4;
        if (n != big_len(i) || !check_seq(buf, n, i))
            return 5; /* out of order, torn or wrong */
    }
    size_t n;
    if (mproc_queue_get_nowait(q, buf, 16, &n) != MPROC_EEMPTY)
        return 6;
    /* Back in the ring, only the header and the ring stay mapped (a fork
     * child's copy of the handle drops the parent's producer window at its
     * first put). */
    if (mproc_queue_put_nowait(q, "x", 1) != 0 ||
        mproc_queue_get_nowait(q, buf, 16, &n) != 0 ||
        queue_mapped() != 4096 + (long long)mproc_queue_capacity(q))
        return 7;
    free(buf);
    return 0;
}

/*
 * Python's Queue() is unbounded: put everything, then start the workers.
 * 100,000 x 1 KiB and 4 x 10 MiB (140 MB, 140 times the ring) are put with
 * timeout 0 before any consumer exists, then taken by a child under each
 * start method, every byte and the order checked. Memory grows in the
 * overflow as they wait and goes back to the system as they are taken, and
 * no overflow window stays mapped anywhere.
 */
static void test_unbounded_before_consumers(void)
{
    unsigned char *buf = malloc(BIG_LARGE);
    for (int m = 0; m < 3; m++) {
        mproc_queue *q;
        CHECK_OK(mproc_queue_new(&q, 0));
        int memfd = queue_memfd();
        long long cap = (long long)mproc_queue_capacity(q);
        for (uint32_t i = 0; i < BIG_N; i++) {
            fill_seq(buf, big_len(i), i);
            CHECK_OK(mproc_queue_put_nowait(q, buf, big_len(i)));
        }
        CHECK_EQ(mproc_queue_qsize(q), BIG_N);
        CHECK(queue_mem(memfd) >= 140000000LL);
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_queue(a, q));
        mproc_process *p =
            mproc_test_start(t_take_all, a, mproc_test_methods[m]);
        mproc_args_free(a);
        CHECK_OK(mproc_process_join(p, 100));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        CHECK_EQ(mproc_queue_qsize(q), 0);
        /* The overflow's pages are back: the header and the ring remain. */
        CHECK(queue_mem(memfd) <= 4096 + cap + (64 << 10));
        /* Back to the ring: this process's window on the overflow goes. */
        CHECK_OK(mproc_queue_put_nowait(q, "x", 1));
        size_t n;
        CHECK_OK(mproc_queue_get_nowait(q, buf, 16, &n));
        CHECK_EQ(queue_mapped(), 4096 + cap);
        mproc_queue_free(q);
    }
    free(buf);
}

/* Memory follows the backlog: it grows as messages wait in the overflow
 * and goes back as they are taken, a megabyte or two behind. */
static void test_unbounded_memory_returns(void)
{
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    int memfd = queue_memfd();
    const size_t mib = 1 << 20;
    unsigned char *m = malloc(mib);
    long long base = queue_mem(memfd);
    for (uint32_t i = 0; i < 64; i++) {
        fill_seq(m, mib, i);
        CHECK_OK(mproc_queue_put_nowait(q, m, mib));
    }
    long long full = queue_mem(memfd);
    CHECK(full >= (64LL << 20));
    CHECK(full <= (66LL << 20));
    for (uint32_t i = 0; i < 32; i++) {
        size_t n;
        CHECK_OK(mproc_queue_get_nowait(q, m, mib, &n));
        CHECK_EQ(n, mib);
        CHECK(check_seq(m, n, i));
    }
    long long half = queue_mem(memfd);
    CHECK(half <= (35LL << 20));
    CHECK(half >= (31LL << 20));
    for (uint32_t i = 32; i < 64; i++) {
        size_t n;
        CHECK_OK(mproc_queue_get_nowait(q, m, mib, &n));
        CHECK(check_seq(m, n, i));
    }
    CHECK(queue_mem(memfd) <= base + 8192);
    CHECK_EQ(queue_mapped(), 4096 + 4096);
    free(m);
    mproc_queue_free(q);
}

/*
 * FIFO across ring and overflow whatever the interleaving: one producer
 * and one consumer on a 4 KiB ring, messages from empty to three rings
 * long, each side pausing at random, so that the queue keeps going from
 * the ring to the overflow (runs opened, drained, closed by either side)
 * and back. The consumer checks every message's place and bytes.
 */
static void test_unbounded_fifo_interleavings(void)
{
    enum { N = 20000 };
    for (int round = 0; round < 2; round++) {
        mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
        uint64_t seed = (uint64_t)time(NULL) * 2 + (uint64_t)round;
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            unsigned char *buf = malloc(3 * 4096);
            uint64_t r = seed;
            for (uint32_t i = 0; i < N; i++) {
                size_t len =
                    (size_t)(rng_next(&r) % 4 == 0 ? rng_next(&r) % (3 * 4096)
                                                   : rng_next(&r) % 200);
                fill_seq(buf, len, i);
                if (mproc_queue_put(q, buf, len, round ? 0 : -1) != 0)
                    mproc_test_exit(1);
                if (rng_next(&r) % 500 == 0)
                    usleep((useconds_t)(rng_next(&r) % 3000));
            }
            free(buf);
            mproc_test_exit(0);
        }
        unsigned char *buf = malloc(3 * 4096);
        uint64_t r = seed ^ 0x5555;
        for (uint32_t i = 0; i < N; i++) {
            size_t n = 0;
            CHECK_OK(mproc_queue_get(q, buf, 3 * 4096, &n, 10));
            if (!check_seq(buf, n, i))
                mproc_test_fail(__FILE__, __LINE__, "message %u: wrong", i);
            if (rng_next(&r) % 400 == 0)
                usleep((useconds_t)(rng_next(&r) % 3000));
        }
        reap(pid, 0);
        CHECK_EQ(mproc_queue_qsize(q), 0);
        free(buf);
        mproc_queue_free(q);
    }
}

/*
 * Deaths while the overflow is in use. A producer killed while it writes a
 * message into the overflow (its source faults halfway) publishes nothing.
 * A consumer killed while it copies a message out of the overflow (its
 * buffer faults halfway) leaves the message whole for the next consumer,
 * which gets it intact. Memory goes back either way.
 */
static void test_kill_in_overflow(void)
{
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    int memfd = queue_memfd();
    long long base = queue_mem(memfd);
    /* More than the ring holds: the rest goes to the overflow, and so
     * does everything after until a consumer comes. */
    for (uint32_t i = 0; i < 200; i++) {
        unsigned char m[100];
        fill_seq(m, sizeof m, i);
        CHECK_OK(mproc_queue_put_nowait(q, m, sizeof m));
    }
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        die_in_put(q);
    reap(pid, -1);
    CHECK_EQ(mproc_queue_qsize(q), 200);
    /* Then a 2 MiB message, and a consumer that dies in the middle of it. */
    const size_t big = 2 << 20;
    unsigned char *m = malloc(big);
    fill_seq(m, big, 200);
    CHECK_OK(mproc_queue_put_nowait(q, m, big));
    CHECK_OK(mproc_queue_put_nowait(q, "after", 5));
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        unsigned char small[100];
        for (uint32_t i = 0; i < 200; i++) {
            size_t n;
            if (mproc_queue_get(q, small, sizeof small, &n, 5) != 0 ||
                !check_seq(small, n, i))
                mproc_test_exit(3);
        }
        die_in_get(q, big);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
    CHECK_EQ(mproc_queue_qsize(q), 2);
    void *got = NULL;
    size_t n = 0;
    CHECK_OK(mproc_queue_get_alloc(q, &got, &n, 5));
    CHECK_EQ(n, big);
    CHECK(check_seq(got, n, 200));
    free(got);
    char b[8];
    CHECK_OK(mproc_queue_get(q, b, sizeof b, &n, 5));
    CHECK_EQ(n, 5);
    CHECK(memcmp(b, "after", 5) == 0);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    if (!under_valgrind())
        CHECK(queue_mem(memfd) <= base + 8192);
    free(m);
    mproc_queue_free(q);
}

/* Scribbled overflow memory (as a buggy process could) gives MPROC_EPROTO,
 * never a crash, a hang or a copy out of bounds. The first overflow run of
 * a queue with a 4 KiB ring starts 64 KiB into its memfd. */
static void test_hostile_overflow(void)
{
    enum { LOG_OFF = 64 << 10 };
    for (int poke = 0; poke < 5; poke++) {
        mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
        int memfd = queue_memfd();
        unsigned char m[100];
        for (uint32_t i = 0; i < 40; i++) {
            fill_seq(m, sizeof m, i);
            CHECK_OK(mproc_queue_put_nowait(q, m, sizeof m));
        }
        size_t len = LOG_OFF + 4096;
        unsigned char *p =
            mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        CHECK(p != MAP_FAILED);
        /* The LINK in the ring: a frame with only the LINK flag. */
        size_t link = 0;
        for (size_t off = 4096; off < 8192 && !link; off += 16) {
            uint32_t flags;
            memcpy(&flags, p + off + 4, 4);
            if (flags == 0xf7a50004u)
                link = off;
        }
        CHECK(link != 0);
        uint32_t v32;
        uint64_t v64;
        switch (poke) {
        case 0: /* the first overflow frame's length past the data */
            v32 = 0xffffff00u;
            memcpy(p + LOG_OFF, &v32, 4);
            break;
        case 1: /* its flags without the frame magic */
            v32 = 0x12345678u;
            memcpy(p + LOG_OFF + 4, &v32, 4);
            break;
        case 2: /* its total length other than its length */
            v64 = 7;
            memcpy(p + LOG_OFF + 8, &v64, 8);
            break;
        case 3: /* the LINK's position not on a run boundary */
            v64 = 48;
            memcpy(p + link + 8, &v64, 8);
            break;
        default: /* the LINK's position far from the overflow's tail */
            v64 = (uint64_t)1 << 37;
            memcpy(p + link + 8, &v64, 8);
            break;
        }
        size_t n;
        int got = 0, rc;
        while ((rc = mproc_queue_get_nowait(q, m, sizeof m, &n)) == 0)
            CHECK(check_seq(m, n, (uint32_t)got++));
        CHECK_ERR(rc, MPROC_EPROTO);
        CHECK(got > 20 && got < 40); /* the ring's messages came first */
        check_eproto(q);
        munmap(p, len);
        mproc_queue_free(q);
    }
}

/*
 * RLIMIT_FSIZE (ulimit -f): the memfd is sized once, at creation, and the
 * overflow made as large as the limit allows; a put that finds it full
 * returns -ENOSPC (never SIGXFSZ, which would kill), and works again once
 * consumers took messages. When not even 64 KiB of overflow fits, the
 * queue has none and is bounded by its ring.
 */
static void test_unbounded_fsize_limit(void)
{
    struct rlimit old, lim;
    CHECK_OK(getrlimit(RLIMIT_FSIZE, &old));
    lim = old;
    lim.rlim_cur = (64 << 10) + (256 << 10); /* 256 KiB of overflow */
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &lim));
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    unsigned char m[1000];
    uint32_t put = 0;
    int rc;
    for (;;) {
        fill_seq(m, sizeof m, put);
        if ((rc = mproc_queue_put_nowait(q, m, sizeof m)) != 0)
            break;
        put++;
    }
    CHECK_ERR(rc, -ENOSPC);
    CHECK(put > 200 && put < 300);
    CHECK_EQ(mproc_queue_qsize(q), put);
    for (uint32_t i = 0; i < put; i++) {
        size_t n;
        CHECK_OK(mproc_queue_get_nowait(q, m, sizeof m, &n));
        CHECK(check_seq(m, n, i));
    }
    for (uint32_t i = 0; i < put; i++)
        CHECK_OK(mproc_queue_put_nowait(q, m, sizeof m));
    mproc_queue_free(q);
    lim.rlim_cur = 4096 + 4096 + 1000;
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &lim));
    q = mkq(MPROC_QUEUE, 0, 4096);
    int k = 0;
    while (mproc_queue_put_nowait(q, m, 100) == 0)
        k++;
    CHECK_EQ(k, 32); /* 128 bytes each in 4 KiB */
    mproc_queue_free(q);
    lim.rlim_cur = 4096 + 1000;
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &lim));
    mproc_queue_opts o = {MPROC_QUEUE, 0, 4096};
    q = NULL;
    CHECK_ERR(mproc_queue_new_opts(&q, &o), -EFBIG); /* not even the ring */
    CHECK(q == NULL);
    CHECK_OK(setrlimit(RLIMIT_FSIZE, &old));
}

/* JoinableQueue and the readiness fd count messages in the overflow. */
static void test_unbounded_joinable_fileno(void)
{
    mproc_queue *q = mkq(MPROC_QUEUE_JOINABLE, 0, 4096);
    int fd = mproc_queue_fileno(q);
    CHECK(fd >= 0);
    enum { N = 500 };
    unsigned char m[1024];
    for (uint32_t i = 0; i < N; i++) {
        fill_seq(m, sizeof m, i);
        CHECK_OK(mproc_queue_put_nowait(q, m, sizeof m));
    }
    CHECK(readable(fd, 0));
    CHECK_ERR(mproc_queue_join(q, 0.05), -ETIMEDOUT);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (uint32_t i = 0; i < N; i++) {
            size_t n;
            if (mproc_queue_get(q, m, sizeof m, &n, 5) != 0 ||
                !check_seq(m, n, i) || mproc_queue_task_done(q) != 0)
                mproc_test_exit(1);
        }
        mproc_test_exit(mproc_queue_task_done(q) == MPROC_ETASKDONE ? 0 : 2);
    }
    CHECK_OK(mproc_queue_join(q, 20));
    reap(pid, 0);
    size_t n;
    CHECK_ERR(mproc_queue_get_nowait(q, m, sizeof m, &n), MPROC_EEMPTY);
    CHECK(!readable(fd, 0));
    mproc_queue_free(q);
}

/* ---- children under every start method --------------------------------- */

static int t_echo(const mproc_args *a)
{
    mproc_queue *in = mproc_args_queue(a, 0);
    mproc_queue *out = mproc_args_queue(a, 1);
    if (!in || !out)
        return 2;
    if (mproc_queue_put(out, "Sending from Subprocess to Parent Process", 41,
                        5) != 0)
        return 3;
    for (;;) {
        void *m;
        size_t n;
        if (mproc_queue_get_alloc(in, &m, &n, 5) != 0)
            return 4;
        int stop = n == 0;
        /* Echo with a mark of who handled it. */
        int rc = mproc_queue_put(out, m, n, 5);
        free(m);
        if (rc)
            return 5;
        if (stop)
            return 0;
    }
}

static void test_start_methods(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_queue *in, *out;
        CHECK_OK(mproc_queue_new(&in, 0));
        CHECK_OK(mproc_queue_new_joinable(&out, 10));
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_queue(a, in));
        CHECK_OK(mproc_args_add_queue(a, out));
        CHECK(mproc_args_queue(a, 0) == in);
        CHECK(mproc_args_queue(a, 2) == NULL);
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_echo, a));
        mproc_args_free(a);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        char buf[64];
        size_t n;
        CHECK_OK(mproc_queue_get(out, buf, sizeof buf, &n, 10));
        CHECK_EQ(n, 41);
        CHECK(memcmp(buf, "Sending from Subprocess to Parent Process", 41) ==
              0);
        CHECK_OK(mproc_queue_task_done(out));
        /* A big one too, streamed both ways through 1 MiB rings. */
        size_t big = 3u << 20;
        unsigned char *data = malloc(big);
        size_t dn = make_msg(data, 9, 9, big - sizeof(mhdr));
        CHECK_OK(mproc_queue_put(in, data, dn, 10));
        CHECK_OK(mproc_queue_put(in, "", 0, 10));
        void *back;
        CHECK_OK(mproc_queue_get_alloc(out, &back, &n, 10));
        CHECK_EQ(n, dn);
        CHECK(memcmp(back, data, dn) == 0);
        free(back);
        CHECK_OK(mproc_queue_get(out, buf, sizeof buf, &n, 10));
        CHECK_EQ(n, 0);
        CHECK_OK(mproc_queue_task_done(out));
        CHECK_OK(mproc_queue_task_done(out));
        CHECK_OK(mproc_queue_join(out, 1));
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        free(data);
        mproc_queue_free(in);
        mproc_queue_free(out);
    }
}

/* The names before the renaming (docs/style.md) still build and are the
 * same functions, unless MPROC_NO_DEPRECATED is defined. */
static void test_former_names(void)
{
#ifndef MPROC_NO_DEPRECATED
    mproc_queue *q;
    CHECK_OK(mproc_simple_queue_new(&q));
    CHECK_EQ(mproc_queue_get_type(q), MPROC_QUEUE_SIMPLE);
    mproc_queue_free(q);
    CHECK_OK(mproc_joinable_queue_new(&q, 3));
    CHECK_EQ(mproc_queue_type(q), MPROC_QUEUE_JOINABLE);
    mproc_queue_free(q);
    mproc_value *v;
    CHECK_OK(mproc_rawvalue_new(&v, MPROC_CTYPE_INT32));
    CHECK_EQ(mproc_value_has_lock(v), 0);
    mproc_value_free(v);
    mproc_array *a;
    CHECK_OK(mproc_rawarray_new(&a, MPROC_CTYPE_UINT8, 4, NULL));
    CHECK_EQ(mproc_array_has_lock(a), 0);
    mproc_array_free(a);
    mproc_shm *s;
    CHECK_OK(mproc_shm_anonymous(&s, 4096));
    CHECK(mproc_shm_name(s) == NULL);
    mproc_shm_free(s);
    CHECK_EQ(mproc_process_cpu_count(), mproc_cpu_count_usable());
#endif
}

/* ---- objects: put_obj / get_obj between processes ------------------------ */

/* The child: takes n objects from q and puts, for each, the list
 * [obj, len(obj)] on r; then a None. */
static int t_obj_relay(const mproc_args *args)
{
    mproc_queue *q = mproc_args_queue(args, 0), *r = mproc_args_queue(args, 1);
    int64_t n = mproc_args_int(args, 2);
    for (int64_t i = 0; i < n; i++) {
        mproc_obj *o;
        if (mproc_queue_get_obj(q, &o, 10, NULL, 0) != 0)
            return 1;
        mproc_obj *l = mproc_obj_list_new();
        mproc_obj_list_append(l, mproc_obj_int((int64_t)mproc_obj_len(o)));
        mproc_obj_list_append(l, o);
        int rc = mproc_queue_put_obj(r, l, 10);
        mproc_obj_unref(l);
        if (rc != 0)
            return 2;
    }
    mproc_obj *none = mproc_obj_none();
    return mproc_queue_put_obj(r, none, 10) == 0 ? 0 : 3;
}

static void test_objects(void)
{
    for (int m = 0; m < 3; m++) {
        mproc_queue *q, *r;
        CHECK_OK(mproc_queue_new(&q, 0));
        CHECK_OK(mproc_queue_new(&r, 0));
        enum { N = 200 };
        /* put before the consumer exists (the queue is unbounded) */
        for (int i = 0; i < N; i++) {
            mproc_obj *o = mproc_obj_dict_new();
            for (int k = 0; k < i % 17; k++)
                CHECK_OK(mproc_obj_dict_set(
                    o, mproc_obj_int(k),
                    mproc_obj_int_from_str("123456789012345678901234567")));
            CHECK_OK(
                mproc_obj_dict_set(o, mproc_obj_str_c("i"), mproc_obj_int(i)));
            CHECK_OK(mproc_queue_put_obj(q, o, 5));
            mproc_obj_unref(o);
        }
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_queue(a, q));
        CHECK_OK(mproc_args_add_queue(a, r));
        CHECK_OK(mproc_args_add_int(a, N));
        mproc_process *p;
        CHECK_OK(mproc_process_new(&p, t_obj_relay, a));
        mproc_args_free(a);
        CHECK_OK(mproc_process_set_start_method(p, mproc_test_methods[m]));
        CHECK_OK(mproc_process_start(p));
        for (int i = 0; i < N; i++) {
            mproc_obj *l;
            CHECK_OK(mproc_queue_get_obj(r, &l, 10, NULL, 0));
            CHECK_EQ(mproc_obj_type_of(l), MPROC_OBJ_LIST);
            int64_t len, got;
            CHECK_OK(mproc_obj_int_value(mproc_obj_item(l, 0), &len));
            CHECK_EQ(len, i % 17 + 1);
            mproc_obj *d = mproc_obj_item(l, 1);
            CHECK_OK(mproc_obj_int_value(mproc_obj_dict_get_str(d, "i"), &got));
            CHECK_EQ(got, i); /* in order, none lost */
            mproc_obj_unref(l);
        }
        mproc_obj *end;
        CHECK_OK(mproc_queue_get_obj(r, &end, 10, NULL, 0));
        CHECK_EQ(mproc_obj_type_of(end), MPROC_OBJ_NONE);
        mproc_obj_unref(end);
        CHECK_OK(mproc_process_join(p, 10));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        /* bytes that are no pickle: consumed, reported, the next is read */
        char err[128];
        mproc_obj *o = mproc_obj_bool(false);
        CHECK_OK(mproc_queue_put(q, "raw", 3, 1));
        CHECK_OK(mproc_queue_put_obj(q, o, 1));
        CHECK_ERR(mproc_queue_get_obj(q, &end, 1, err, sizeof err),
                  MPROC_EPICKLE);
        CHECK(end == NULL && err[0]);
        CHECK_OK(mproc_queue_get_obj(q, &end, 1, err, sizeof err));
        CHECK_EQ(mproc_obj_eq(end, o), 1);
        mproc_obj_unref(end);
        CHECK_ERR(mproc_queue_get_obj(q, &end, 0, NULL, 0), MPROC_EEMPTY);
        CHECK_ERR(mproc_queue_put_obj(q, NULL, 0), -EINVAL);
        mproc_queue_close(q);
        CHECK_ERR(mproc_queue_put_obj(q, o, 0), MPROC_ECLOSED);
        mproc_queue_free(q);
        mproc_queue_free(r);
    }
}

/* ---- put_many / get_many ---------------------------------------------- */

/* Length of batch message seq: mostly small, now and then empty, one in
 * 97 larger than a quarter of a 4 KiB ring (streamed through it). */
static size_t many_len(uint32_t seq)
{
    if (seq % 97 == 13)
        return 1500 + seq % 700;
    if (seq % 31 == 7)
        return sizeof(mhdr);
    return sizeof(mhdr) + (seq * 7919u) % 120;
}

/* Fills msgs[0..k) with self-checking messages seq0.. (slot 5) in buf. */
static void many_fill(unsigned char *buf, const void **msgs, size_t *lens,
                      uint32_t seq0, size_t k)
{
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t seq = seq0 + (uint32_t)i;
        lens[i] = make_msg(buf + off, 5, seq, many_len(seq) - sizeof(mhdr));
        msgs[i] = buf + off;
        off += lens[i];
    }
}

/* Checks got messages laid out back to back in buf: each intact and the
 * next in sequence after *seq (which is advanced). 1 when all hold. */
static int many_check(const unsigned char *buf, const size_t *lens, int got,
                      uint32_t *seq)
{
    size_t off = 0;
    for (int i = 0; i < got; i++) {
        mhdr h;
        if (!check_msg(buf + off, lens[i], &h) || h.slot != 5 ||
            h.seq != *seq || lens[i] != many_len(h.seq))
            return 0;
        (*seq)++;
        off += lens[i];
    }
    return 1;
}

#define MANY_BATCH 64
#define MANY_BUF   (MANY_BATCH * 2300)

/*
 * Batches in one process: order and content across put_many, put, get and
 * get_many; get_many's buffer limits (the first that does not fit reports
 * its size, a later one stays first); the count bound stopping a batch
 * midway; empty batches, closed handles and bad arguments.
 */
static void test_many_basics(void)
{
    unsigned char *src = malloc(MANY_BUF), *dst = malloc(MANY_BUF);
    const void *msgs[MANY_BATCH];
    size_t lens[MANY_BATCH], got_lens[MANY_BATCH];
    /* A 4 KiB ring with an overflow: batches go through the ring, streamed
     * and to the overflow. */
    mproc_queue *q = mkq(MPROC_QUEUE, 0, 4096);
    uint32_t put = 0, seq = 0;
    for (int round = 0; round < 40; round++) {
        size_t k = 1 + (size_t)(round * 13) % MANY_BATCH;
        many_fill(src, msgs, lens, put, k);
        CHECK_EQ(mproc_queue_put_many(q, msgs, lens, k, 5), (long long)k);
        put += (uint32_t)k;
        /* A single put between batches keeps its place. */
        unsigned char one[2300];
        size_t n1 = make_msg(one, 5, put, many_len(put) - sizeof(mhdr));
        CHECK_OK(mproc_queue_put(q, one, n1, 5));
        put++;
        CHECK_EQ(mproc_queue_qsize(q), (long long)(put - seq));
        /* Take them back: alternately with get_many and get. */
        while (seq < put) {
            if (round % 3 == 1) {
                size_t n;
                CHECK_OK(mproc_queue_get(q, dst, MANY_BUF, &n, 5));
                got_lens[0] = n;
                CHECK(many_check(dst, got_lens, 1, &seq));
                continue;
            }
            int got = mproc_queue_get_many(q, dst, MANY_BUF, got_lens,
                                           1 + (size_t)round % MANY_BATCH, 5);
            CHECK(got >= 1);
            CHECK(many_check(dst, got_lens, got, &seq));
        }
    }
    CHECK_ERR(mproc_queue_get_many(q, dst, MANY_BUF, got_lens, 4, 0),
              MPROC_EEMPTY);
    double t0 = mproc_test_now();
    CHECK_ERR(mproc_queue_get_many(q, dst, MANY_BUF, got_lens, 4, 0.2),
              MPROC_EEMPTY);
    CHECK(mproc_test_now() - t0 >= 0.18);

    /* Buffer limits: 3 messages of 100 bytes. */
    unsigned char hundred[100];
    memset(hundred, 'h', sizeof hundred);
    const void *hm[3] = {hundred, hundred, hundred};
    size_t hl[3] = {100, 100, 100};
    CHECK_EQ(mproc_queue_put_many(q, hm, hl, 3, 0), 3);
    got_lens[0] = 0;
    CHECK_ERR(mproc_queue_get_many(q, dst, 99, got_lens, 3, 0), MPROC_EBUFSIZE);
    CHECK_EQ(got_lens[0], 100);
    CHECK_EQ(mproc_queue_qsize(q), 3);
    CHECK_EQ(mproc_queue_get_many(q, dst, 250, got_lens, 3, 0), 2);
    CHECK_EQ(got_lens[0], 100);
    CHECK_EQ(got_lens[1], 100);
    CHECK_EQ(mproc_queue_get_many(q, dst, 100, got_lens, 3, 0), 1);
    CHECK(memcmp(dst, hundred, 100) == 0);
    /* Empty messages fit in no buffer at all. */
    const void *em[2] = {NULL, ""};
    size_t el[2] = {0, 0};
    CHECK_EQ(mproc_queue_put_many(q, em, el, 2, 0), 2);
    CHECK_EQ(mproc_queue_get_many(q, NULL, 0, got_lens, 8, 0), 2);
    CHECK_EQ(got_lens[0], 0);
    CHECK_EQ(got_lens[1], 0);

    /* Arguments. */
    CHECK_EQ(mproc_queue_put_many(q, NULL, NULL, 0, 0), 0);
    CHECK_ERR(mproc_queue_put_many(NULL, hm, hl, 3, 0), -EINVAL);
    CHECK_ERR(mproc_queue_put_many(q, NULL, hl, 3, 0), -EINVAL);
    CHECK_ERR(mproc_queue_put_many(q, hm, NULL, 3, 0), -EINVAL);
    const void *bad[2] = {hundred, NULL};
    CHECK_ERR(mproc_queue_put_many(q, bad, hl, 2, 0), -EINVAL);
    size_t huge[2] = {1, MPROC_QUEUE_MAX_MESSAGE + (size_t)1};
    CHECK_ERR(mproc_queue_put_many(q, hm, huge, 2, 0), MPROC_ETOOBIG);
    CHECK_ERR(mproc_queue_put_many(q, hm, hl, (size_t)INT_MAX + 1, 0), -EINVAL);
    CHECK_EQ(mproc_queue_qsize(q), 0); /* nothing of a refused batch */
    CHECK_ERR(mproc_queue_get_many(NULL, dst, 10, got_lens, 1, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get_many(q, dst, 10, NULL, 1, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get_many(q, NULL, 10, got_lens, 1, 0), -EINVAL);
    CHECK_ERR(mproc_queue_get_many(q, dst, 10, got_lens, 0, 0), -EINVAL);
    CHECK_OK(mproc_queue_close(q));
    CHECK_ERR(mproc_queue_put_many(q, hm, hl, 3, 0), MPROC_ECLOSED);
    CHECK_ERR(mproc_queue_get_many(q, dst, 10, got_lens, 1, 0), MPROC_ECLOSED);
    mproc_queue_free(q);

    /* The count bound stops a batch midway; a JoinableQueue counts each. */
    q = mkq(MPROC_QUEUE_JOINABLE, 5, 0);
    many_fill(src, msgs, lens, 0, 8);
    CHECK_EQ(mproc_queue_put_many(q, msgs, lens, 8, 0), 5);
    CHECK_ERR(mproc_queue_put_many(q, msgs + 5, lens + 5, 3, 0), MPROC_EFULL);
    t0 = mproc_test_now();
    CHECK_ERR(mproc_queue_put_many(q, msgs + 5, lens + 5, 3, 0.2), MPROC_EFULL);
    CHECK(mproc_test_now() - t0 >= 0.18);
    seq = 0;
    int got = mproc_queue_get_many(q, dst, MANY_BUF, got_lens, 2, 0);
    CHECK_EQ(got, 2);
    CHECK(many_check(dst, got_lens, got, &seq));
    CHECK_EQ(mproc_queue_put_many(q, msgs + 5, lens + 5, 3, 0), 2);
    got = mproc_queue_get_many(q, dst, MANY_BUF, got_lens, MANY_BATCH, 0);
    CHECK_EQ(got, 5);
    CHECK(many_check(dst, got_lens, got, &seq));
    for (int i = 0; i < 7; i++)
        CHECK_OK(mproc_queue_task_done(q));
    CHECK_OK(mproc_queue_join(q, 0));
    mproc_queue_free(q);
    free(src);
    free(dst);
}

/* A child that takes `count` messages with get_many and puts them back
 * with put_many as they came, in batches of what it got. */
static int t_many_echo(const mproc_args *a)
{
    mproc_queue *in = mproc_args_queue(a, 0), *out = mproc_args_queue(a, 1);
    int64_t count = mproc_args_int(a, 2);
    unsigned char *buf = malloc(MANY_BUF);
    if (!in || !out || !buf)
        return 2;
    size_t lens[MANY_BATCH];
    const void *msgs[MANY_BATCH];
    for (int64_t done = 0; done < count;) {
        int got = mproc_queue_get_many(in, buf, MANY_BUF, lens, MANY_BATCH, 10);
        if (got < 1)
            return 3;
        size_t off = 0;
        for (int i = 0; i < got; i++) {
            msgs[i] = buf + off;
            off += lens[i];
        }
        if (mproc_queue_put_many(out, msgs, lens, (size_t)got, 10) != got)
            return 4;
        done += got;
    }
    free(buf);
    return 0;
}

/* Batches through a child and back under each start method, while the
 * parent puts and takes concurrently. */
static void test_many_start_methods(void)
{
    const uint32_t N = 6000;
    unsigned char *src = malloc(MANY_BUF), *dst = malloc(MANY_BUF);
    const void *msgs[MANY_BATCH];
    size_t lens[MANY_BATCH];
    for (int m = 0; m < 3; m++) {
        mproc_queue *in = mkq(MPROC_QUEUE, 0, 4096);
        mproc_queue *out = mkq(MPROC_QUEUE, 200, 0);
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_queue(a, in));
        CHECK_OK(mproc_args_add_queue(a, out));
        CHECK_OK(mproc_args_add_int(a, N));
        mproc_process *p =
            mproc_test_start(t_many_echo, a, mproc_test_methods[m]);
        mproc_args_free(a);
        uint32_t put = 0, seq = 0;
        while (seq < N) {
            if (put < N) {
                size_t k = N - put < 37 ? N - put : 37;
                many_fill(src, msgs, lens, put, k);
                CHECK_EQ(mproc_queue_put_many(in, msgs, lens, k, 10),
                         (long long)k);
                put += (uint32_t)k;
            }
            int got = mproc_queue_get_many(out, dst, MANY_BUF, lens, MANY_BATCH,
                                           put < N ? 0 : 10);
            if (got == MPROC_EEMPTY && put < N)
                continue;
            CHECK(got >= 1);
            CHECK(many_check(dst, lens, got, &seq));
        }
        CHECK_OK(mproc_process_join(p, 20));
        CHECK_EQ(mproc_process_exitcode(p), 0);
        mproc_process_free(p);
        mproc_queue_free(in);
        mproc_queue_free(out);
    }
    free(src);
    free(dst);
}

/* A producer putting numbered batches until it is killed. */
static int t_many_producer(const mproc_args *a)
{
    mproc_queue *q = mproc_args_queue(a, 0);
    unsigned char *buf = malloc(MANY_BUF);
    if (!q || !buf)
        return 2;
    const void *msgs[MANY_BATCH];
    size_t lens[MANY_BATCH];
    for (uint32_t put = 0;;) {
        many_fill(buf, msgs, lens, put, MANY_BATCH);
        int rc = mproc_queue_put_many(q, msgs, lens, MANY_BATCH, -1);
        if (rc < 1)
            return 3;
        put += (uint32_t)rc;
    }
}

/*
 * A producer SIGKILLed in the middle of put_many, again and again, under
 * each start method, on a queue with an overflow (batches go to the ring
 * and the overflow) and on one bounded by count (the batch waits for room
 * while the parent takes): what is in the queue is a prefix of its
 * messages, whole and in order, and the queue goes on working (the next
 * producer repairs the lock the dead one held).
 */
static void test_kill_many_producer(void)
{
    unsigned char *dst = malloc(MANY_BUF);
    size_t lens[MANY_BATCH];
    for (int m = 0; m < 3; m++) {
        for (int bounded = 0; bounded < 2; bounded++) {
            mproc_queue *q =
                bounded ? mkq(MPROC_QUEUE, 100, 0) : mkq(MPROC_QUEUE, 0, 4096);
            mproc_args *a = mproc_args_new();
            CHECK_OK(mproc_args_add_queue(a, q));
            mproc_process *p =
                mproc_test_start(t_many_producer, a, mproc_test_methods[m]);
            mproc_args_free(a);
            uint32_t seq = 0;
            /* Take some while it puts, then kill it mid-batch. */
            uint32_t before = bounded ? 500 + 77 * (uint32_t)m : 0;
            while (seq < before) {
                int got = mproc_queue_get_many(q, dst, MANY_BUF, lens,
                                               1 + seq % MANY_BATCH, 10);
                CHECK(got >= 1);
                CHECK(many_check(dst, lens, got, &seq));
            }
            if (!bounded)
                while (mproc_queue_qsize(q) < 3000)
                    usleep(1000);
            CHECK_OK(mproc_process_kill(p));
            CHECK_OK(mproc_process_join(p, 10));
            CHECK_EQ(mproc_process_exitcode(p), -SIGKILL);
            mproc_process_free(p);
            int got;
            while ((got = mproc_queue_get_many(q, dst, MANY_BUF, lens,
                                               MANY_BATCH, 0)) > 0)
                CHECK(many_check(dst, lens, got, &seq));
            CHECK_ERR(got, MPROC_EEMPTY);
            CHECK(seq >= before);
            CHECK_EQ(mproc_queue_qsize(q), 0);
            /* Still a working queue. */
            const void *one[2] = {"a", "bc"};
            size_t ol[2] = {1, 2};
            CHECK_EQ(mproc_queue_put_many(q, one, ol, 2, 5), 2);
            CHECK_EQ(mproc_queue_get_many(q, dst, 16, lens, 4, 5), 2);
            CHECK(memcmp(dst, "abc", 3) == 0);
            mproc_queue_free(q);
        }
    }
    free(dst);
}

/* A consumer taking batches until it is killed (it only counts them). */
static int t_many_consumer(const mproc_args *a)
{
    mproc_queue *q = mproc_args_queue(a, 0);
    unsigned char *buf = malloc(MANY_BUF);
    if (!q || !buf)
        return 2;
    size_t lens[MANY_BATCH];
    for (;;)
        if (mproc_queue_get_many(q, buf, MANY_BUF, lens, MANY_BATCH, -1) < 1)
            return 3;
}

/*
 * A consumer SIGKILLed in the middle of get_many, under each start method,
 * while the parent puts batches into a queue bounded by count (so the
 * parent keeps waiting for it): the messages left are a suffix of what was
 * put, whole, in order, none twice, and the parent then puts and takes on.
 */
static void test_kill_many_consumer(void)
{
    unsigned char *src = malloc(MANY_BUF), *dst = malloc(MANY_BUF);
    const void *msgs[MANY_BATCH];
    size_t lens[MANY_BATCH];
    for (int m = 0; m < 3; m++) {
        mproc_queue *q = mkq(MPROC_QUEUE, 150, 0);
        mproc_args *a = mproc_args_new();
        CHECK_OK(mproc_args_add_queue(a, q));
        mproc_process *p =
            mproc_test_start(t_many_consumer, a, mproc_test_methods[m]);
        mproc_args_free(a);
        uint32_t put = 0;
        uint32_t stop = 4000 + 1000 * (uint32_t)m;
        while (put < stop) {
            many_fill(src, msgs, lens, put, MANY_BATCH);
            int rc = mproc_queue_put_many(q, msgs, lens, MANY_BATCH, 10);
            CHECK(rc >= 1);
            put += (uint32_t)rc;
        }
        CHECK_OK(mproc_process_kill(p));
        CHECK_OK(mproc_process_join(p, 10));
        mproc_process_free(p);
        /* What is left: put - k .. put - 1 for some k. */
        long left = mproc_queue_qsize(q);
        CHECK(left >= 0 && left <= 150);
        uint32_t seq = put - (uint32_t)left;
        int got;
        while ((got = mproc_queue_get_many(q, dst, MANY_BUF, lens, MANY_BATCH,
                                           0)) > 0)
            CHECK(many_check(dst, lens, got, &seq));
        CHECK_ERR(got, MPROC_EEMPTY);
        CHECK_EQ(seq, put);
        many_fill(src, msgs, lens, put, 10);
        CHECK_EQ(mproc_queue_put_many(q, msgs, lens, 10, 5), 10);
        CHECK_EQ(mproc_queue_get_many(q, dst, MANY_BUF, lens, MANY_BATCH, 5),
                 10);
        CHECK(many_check(dst, lens, 10, &seq));
        mproc_queue_free(q);
    }
    free(src);
    free(dst);
}

static const mproc_test tests[] = {
    {"fifo_and_state", test_fifo_and_state, 20},
    {"objects", test_objects, 60},
    {"sizes_in_process", test_sizes_in_process, 20},
    {"sizes_larger_than_ring", test_sizes_larger_than_ring, 30},
    {"streamed_put_timeout", test_streamed_put_timeout, 20},
    {"bytes_bound", test_bytes_bound, 20},
    {"count_bound_unbounded_bytes", test_count_bound_unbounded_bytes, 20},
    {"bad_args", test_bad_args, 20},
    {"fd_exhaustion", test_fd_exhaustion, 20},
    {"hostile_memory", test_hostile_memory, 20},
    {"joinable", test_joinable, 20},
    {"fileno", test_fileno, 30},
    {"mpmc_checksums", test_mpmc_checksums, 60},
    {"threads", test_threads, 30},
    {"kill_blocked_consumer", test_kill_blocked_consumer, 20},
    {"kill_streaming_producer", test_kill_streaming_producer, 30},
    {"kill_streaming_consumer", test_kill_streaming_consumer, 30},
    {"kill_loop", test_kill_loop, 90},
    {"kill_loop_overflow", test_kill_loop_overflow, 120},
    {"kill_loop_bounded", test_kill_loop_bounded, 60},
    {"start_methods", test_start_methods, 60},
    {"unbounded_before_consumers", test_unbounded_before_consumers, 300},
    {"unbounded_memory_returns", test_unbounded_memory_returns, 30},
    {"unbounded_fifo_interleavings", test_unbounded_fifo_interleavings, 120},
    {"kill_in_overflow", test_kill_in_overflow, 30},
    {"hostile_overflow", test_hostile_overflow, 20},
    {"unbounded_fsize_limit", test_unbounded_fsize_limit, 20},
    {"unbounded_joinable_fileno", test_unbounded_joinable_fileno, 30},
    {"former_names", test_former_names, 20},
    {"many_basics", test_many_basics, 30},
    {"many_start_methods", test_many_start_methods, 60},
    {"kill_many_producer", test_kill_many_producer, 90},
    {"kill_many_consumer", test_kill_many_consumer, 60},
};

MPROC_TEST_MAIN(tests)
