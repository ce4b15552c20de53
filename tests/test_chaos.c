/*
 * test_chaos.c - the promises under random SIGKILLs, bounded in time (a
 * few seconds each; `make soak` runs them for minutes with
 * MPROC_CHAOS_SECONDS). A killer thread SIGKILLs random victims at random
 * moments while they work:
 *   pool     workers while starting and mid-task: every task ends, either
 *            right or with MPROC_EWORKER; the pool never breaks;
 *   queue    producers and consumers: no message torn or duplicated, none
 *            lost but one in flight in a killed process;
 *   lock     holders: every survivor gets the lock (-EOWNERDEAD once per
 *            death), and the counter it guards accounts for every
 *            increment but at most one per kill.
 * Nothing may hang, and the harness checks no child, fd or segment leaked.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double chaos_seconds(void)
{
    const char *s = getenv("MPROC_CHAOS_SECONDS");
    double v = s ? atof(s) : 0;
    return v > 0 ? v : 2.0;
}

/* A small fast generator; each process seeds its own. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void nap_us(unsigned us)
{
    struct timespec ts = {0, (long)us * 1000};
    nanosleep(&ts, NULL);
}

/* ---- pool -----------------------------------------------------------------
 */

/* A start-up long enough to be hit now and then; at its end a worker
 * appends a byte to the file its argument names (the killer counts the
 * workers that got through). */
static int chaos_init(const mproc_args *a)
{
    nap_us(2000);
    int fd = open(mproc_args_str(a, 0), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, "r", 1);
        close(fd);
    }
    return 0;
}

static int chaos_task(const void *in, size_t len, mproc_out *out)
{
    int64_t x;
    if (len != sizeof x)
        return -EINVAL;
    memcpy(&x, in, sizeof x);
    nap_us((unsigned)(x % 7) * 100);
    x = x * x;
    return mproc_out_write(out, &x, sizeof x);
}

typedef struct pool_killer {
    mproc_pool *pool;
    _Atomic int stop;
    int kills;
    uint64_t seed;
    const char *ready; /* the file chaos_init appends to */
} pool_killer;

/* Kills a random worker every 5-30 ms; but after 5 kills with no new
 * worker through its start-up it waits for one: 10 start-up deaths in a
 * row break a pool by design (MPROC_ESTARTUP), which a loaded machine,
 * where starts are slow, would otherwise reach now and then. */
static void *pool_killer_main(void *arg)
{
    pool_killer *k = arg;
    struct stat st;
    off_t seen = 0;
    int since = 0; /* kills since a worker last got through */
    while (!atomic_load(&k->stop)) {
        nap_us(5000 + (unsigned)(rnd(&k->seed) % 25000));
        if (stat(k->ready, &st) == 0 && st.st_size > seen) {
            seen = st.st_size;
            since = 0;
        }
        if (since >= 5)
            continue;
        since++;
        pid_t pids[8];
        int n = mproc_pool_pids(k->pool, pids, 8);
        if (n > 0 && kill(pids[rnd(&k->seed) % (uint64_t)n], SIGKILL) == 0)
            k->kills++;
    }
    return NULL;
}

static void test_pool_chaos(void)
{
    double until = mproc_test_now() + chaos_seconds();
    int rounds = 0, kills = 0;
    size_t failed = 0, done = 0;
    char ready[64];
    snprintf(ready, sizeof ready, "/tmp/mproc-chaos-ready-%d", (int)getpid());
    int rfd = open(ready, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(rfd >= 0);
    close(rfd);
    mproc_args *ia = mproc_args_of("s", ready);
    CHECK(ia != NULL);
    for (int m = 0; mproc_test_now() < until || rounds < 3; m = (m + 1) % 3) {
        mproc_pool_opts o = {.processes = 3,
                             .initializer = chaos_init,
                             .initargs = ia,
                             .method = mproc_test_methods[m]};
        mproc_pool *p;
        CHECK_OK(mproc_pool_new(&p, &o));
        enum { N = 400 };
        int64_t v[N];
        mproc_iov it[N];
        for (int i = 0; i < N; i++) {
            v[i] = i;
            it[i] = (mproc_iov){&v[i], sizeof v[i]};
        }
        pool_killer k = {.pool = p,
                         .seed = 0x9e3779b97f4a7c15ull + (unsigned)m,
                         .ready = ready};
        pthread_t th;
        CHECK_OK(pthread_create(&th, NULL, pool_killer_main, &k));
        mproc_call_opts co = {.chunksize = 1};
        mproc_results *r = NULL;
        int rc = mproc_pool_map(p, chaos_task, it, N, &co, &r);
        atomic_store(&k.stop, 1);
        pthread_join(th, NULL);
        CHECK(rc == 0 || rc == MPROC_EWORKER);
        CHECK(r != NULL);
        for (size_t i = 0; i < N; i++) {
            const void *d;
            size_t n;
            int ri = mproc_results_get(r, i, &d, &n);
            if (ri == 0) {
                int64_t y;
                CHECK_EQ(n, sizeof y);
                memcpy(&y, d, sizeof y);
                CHECK_EQ(y, v[i] * v[i]);
                done++;
            } else {
                CHECK_ERR(ri, MPROC_EWORKER); /* never EINIT, ESTARTUP */
                failed++;
            }
        }
        /* A task fails only with the worker that ran it. */
        CHECK(mproc_results_failed(r) <= (size_t)k.kills);
        mproc_results_free(r);
        /* The pool still works after the storm. */
        int64_t x = 12;
        const void *d = NULL;
        size_t n = 0;
        mproc_task_error err;
        CHECK_OK(
            mproc_pool_apply(p, chaos_task, &x, sizeof x, NULL, NULL, &err));
        (void)d;
        (void)n;
        mproc_pool_free(p);
        kills += k.kills;
        rounds++;
    }
    printf("     pool: %d rounds, %d workers killed, %zu tasks ok, %zu "
           "failed with their worker\n",
           rounds, kills, done, failed);
    mproc_args_free(ia);
    unlink(ready);
    CHECK(kills > 0);
}

/* ---- queue ----------------------------------------------------------------
 */

/* A message: producer id, sequence number, then filler derived from both,
 * so a torn or mixed message is seen. */
enum { QMSG = 48 };

static void make_msg(unsigned char *m, uint32_t prod, uint32_t seq)
{
    memcpy(m, &prod, 4);
    memcpy(m + 4, &seq, 4);
    for (int i = 8; i < QMSG; i++)
        m[i] = (unsigned char)(prod * 131 + seq * 7 + (uint32_t)i);
}

static bool check_msg(const unsigned char *m, size_t n, uint32_t *prod,
                      uint32_t *seq)
{
    if (n != QMSG)
        return false;
    memcpy(prod, m, 4);
    memcpy(seq, m + 4, 4);
    for (int i = 8; i < QMSG; i++)
        if (m[i] != (unsigned char)(*prod * 131 + *seq * 7 + (uint32_t)i))
            return false;
    return true;
}

/* A producer: puts messages 0, 1, ... under its own id (each incarnation
 * has one, so a replacement never repeats a message), until killed or
 * out of numbers. progress[prod] is the count it put. */
static void producer(mproc_queue *q, uint32_t prod, _Atomic uint32_t *progress,
                     uint32_t cap)
{
    for (uint32_t seq = 0; seq < cap; seq++) {
        unsigned char m[QMSG];
        make_msg(m, prod, seq);
        while (mproc_queue_put(q, m, QMSG, 1) < 0)
            ; /* full for a second: try again */
        atomic_store(&progress[prod], seq + 1);
    }
    pause();
}

/* A consumer: takes messages and marks them seen (seen[] counts takes). */
static void consumer(mproc_queue *q, _Atomic uint8_t *seen, uint32_t nprod,
                     uint32_t cap, _Atomic uint32_t *bad)
{
    for (;;) {
        unsigned char m[QMSG + 8];
        size_t n;
        if (mproc_queue_get(q, m, sizeof m, &n, 1) < 0)
            continue;
        uint32_t p, s;
        if (!check_msg(m, n, &p, &s) || p >= nprod || s >= cap) {
            atomic_fetch_add(bad, 1);
            continue;
        }
        atomic_fetch_add(&seen[p * cap + s], 1);
    }
}

static void test_queue_chaos(void)
{
    /* ids: 2 running producers, each replacement a new id */
    enum { NPROD = 2, NCONS = 2, MAXID = 512, CAP = 1 << 14 };
    size_t shared_len =
        sizeof(_Atomic uint32_t) * (MAXID + 1) + (size_t)MAXID * CAP;
    mproc_shm *shm;
    CHECK_OK(mproc_shm_new_anonymous(&shm, shared_len));
    _Atomic uint32_t *progress = mproc_shm_buf(shm);
    _Atomic uint32_t *bad = &progress[MAXID];
    _Atomic uint8_t *seen = (_Atomic uint8_t *)(progress + MAXID + 1);
    uint32_t ids = 0, prod_id[NPROD];
    mproc_queue *q;
    mproc_queue_opts qo = {.type = MPROC_QUEUE, .capacity = 64 << 10};
    CHECK_OK(mproc_queue_new_opts(&q, &qo));
    pid_t prods[NPROD], conss[NCONS];
    for (int i = 0; i < NPROD + NCONS; i++) {
        uint32_t id = i < NPROD ? ids++ : 0;
        pid_t pid = fork();
        if (pid == 0) {
            if (i < NPROD)
                producer(q, id, progress, CAP);
            else
                consumer(q, seen, MAXID, CAP, bad);
            _exit(0);
        }
        if (i < NPROD)
            prods[i] = pid, prod_id[i] = id;
        else
            conss[i - NPROD] = pid;
    }
    uint64_t seed = 0x2545f4914f6cdd1dull;
    int kills = 0;
    double until = mproc_test_now() + chaos_seconds();
    while (mproc_test_now() < until && ids < MAXID) {
        nap_us(2000 + (unsigned)(rnd(&seed) % 20000));
        int v = (int)(rnd(&seed) % (NPROD + NCONS));
        pid_t *slot = v < NPROD ? &prods[v] : &conss[v - NPROD];
        kill(*slot, SIGKILL);
        CHECK_EQ(waitpid(*slot, NULL, 0), *slot);
        kills++;
        uint32_t id = v < NPROD ? ids++ : 0;
        pid_t pid = fork(); /* a replacement carries on */
        if (pid == 0) {
            if (v < NPROD)
                producer(q, id, progress, CAP);
            else
                consumer(q, seen, MAXID, CAP, bad);
            _exit(0);
        }
        *slot = pid;
        if (v < NPROD)
            prod_id[v] = id;
    }
    (void)prod_id;
    /* Stop the producers; let the consumers drain, then stop them. */
    for (int i = 0; i < NPROD; i++) {
        kill(prods[i], SIGKILL);
        waitpid(prods[i], NULL, 0);
    }
    double t0 = mproc_test_now();
    while (mproc_queue_qsize(q) > 0 && mproc_test_now() - t0 < 20)
        nap_us(10000);
    CHECK_EQ(mproc_queue_qsize(q), 0);
    nap_us(50000);
    for (int i = 0; i < NCONS; i++) {
        kill(conss[i], SIGKILL);
        waitpid(conss[i], NULL, 0);
    }
    CHECK_EQ(atomic_load(bad), 0); /* nothing torn, mixed or invented */
    size_t lost = 0, total = 0;
    for (uint32_t p = 0; p < ids; p++) {
        uint32_t n = atomic_load(&progress[p]);
        for (uint32_t s = 0; s < CAP; s++) {
            uint8_t c = atomic_load(&seen[(size_t)p * CAP + s]);
            CHECK(c <= 1); /* never delivered twice */
            lost += s < n && c == 0;
        }
        total += n;
    }
    /* A message is lost only with a killed process: a producer killed
     * after its put but before it counted it adds one the other way. */
    CHECK(lost <= (size_t)kills);
    printf("     queue: %zu messages, %d kills, %zu lost in flight\n", total,
           kills, lost);
    CHECK(total > 1000);
    mproc_queue_free(q);
    mproc_shm_free(shm);
}

/* ---- lock -----------------------------------------------------------------
 */

typedef struct lock_shared {
    _Atomic uint64_t counter; /* under the lock (atomic only for the check) */
    _Atomic uint64_t done[8]; /* increments each worker counted */
    _Atomic uint32_t owner_dead;
} lock_shared;

static void lock_worker(mproc_lock *l, lock_shared *s, int id)
{
    for (;;) {
        int r = mproc_lock_acquire(l, -1);
        if (r == -EOWNERDEAD) {
            atomic_fetch_add(&s->owner_dead, 1);
            mproc_lock_consistent(l); /* the counter has no invariant */
        } else if (r < 0) {
            _exit(3);
        }
        atomic_store(&s->counter, atomic_load(&s->counter) + 1);
        atomic_fetch_add(&s->done[id], 1);
        mproc_lock_release(l);
    }
}

static void test_lock_chaos(void)
{
    enum { NW = 4 };
    mproc_shm *shm;
    CHECK_OK(mproc_shm_new_anonymous(&shm, sizeof(lock_shared)));
    lock_shared *s = mproc_shm_buf(shm);
    mproc_lock *l;
    CHECK_OK(mproc_lock_new(&l));
    pid_t w[NW];
    for (int i = 0; i < NW; i++) {
        w[i] = fork();
        if (w[i] == 0)
            lock_worker(l, s, i);
    }
    uint64_t seed = 0x853c49e6748fea9bull;
    int kills = 0;
    double until = mproc_test_now() + chaos_seconds();
    while (mproc_test_now() < until) {
        nap_us(1000 + (unsigned)(rnd(&seed) % 10000));
        int v = (int)(rnd(&seed) % NW);
        kill(w[v], SIGKILL);
        CHECK_EQ(waitpid(w[v], NULL, 0), w[v]);
        kills++;
        w[v] = fork();
        if (w[v] == 0)
            lock_worker(l, s, v);
    }
    for (int i = 0; i < NW; i++) {
        kill(w[i], SIGKILL);
        waitpid(w[i], NULL, 0);
    }
    /* The lock is still usable: its last holder may have died too. */
    int r = mproc_lock_acquire(l, 5);
    CHECK(r == 0 || r == -EOWNERDEAD);
    if (r == -EOWNERDEAD) {
        atomic_fetch_add(&s->owner_dead, 1);
        CHECK_OK(mproc_lock_consistent(l));
    }
    uint64_t counted = 0;
    for (int i = 0; i < NW; i++)
        counted += atomic_load(&s->done[i]);
    uint64_t c = atomic_load(&s->counter);
    /* Each kill may cost one increment counted but not done, or done but
     * not counted; nothing else is lost. */
    CHECK(c + (uint64_t)kills + NW >= counted);
    CHECK(counted + (uint64_t)kills + NW >= c);
    CHECK(atomic_load(&s->owner_dead) <= (uint32_t)kills + NW);
    CHECK_OK(mproc_lock_release(l));
    printf("     lock: %llu increments, %d kills, %u owner-dead hand-overs\n",
           (unsigned long long)c, kills, atomic_load(&s->owner_dead));
    mproc_lock_free(l);
    mproc_shm_free(shm);
}

static const mproc_test tests[] = {
    {"pool_chaos", test_pool_chaos, 600},
    {"queue_chaos", test_queue_chaos, 600},
    {"lock_chaos", test_lock_chaos, 600},
};

MPROC_TEST_MAIN(tests)
