/*
 * pool/pool_impl.h - what the two halves of the pool share: the parent
 * side (engine.h and the files around it) and the worker loop (worker.c).
 *
 * Transport. Each worker has its own SOCK_SEQPACKET socketpair with the
 * parent: messages keep their boundaries, stay below POOL__MSG_MAX bytes,
 * and items bigger than POOL__OOL_MIN travel out of line in a memfd passed
 * with SCM_RIGHTS. The parent keeps at most POOL__INFLIGHT messages queued
 * per worker, so its non-blocking sends never find a full socket.
 *
 * Board. One shared memfd holds a slot per worker in which the worker
 * publishes the sequence number of the task it is running and when it
 * started, and a ring per worker into which it writes each result as soon
 * as the task returns (committed by advancing wpos). So when a worker dies
 * the parent still finds every result it produced, knows exactly which
 * task killed it and which queued tasks never started (those go to other
 * workers); and it can kill a worker whose current task is overdue. A
 * worker whose ring is full waits on a futex the parent wakes after it
 * consumed.
 *
 * Ring entry: {int32 status, uint32 len, uint64 seq} then len bytes padded
 * to 8 (for POOL__OOL_LEN: a u64 size; the bytes came as a memfd in a
 * WM_OOLFD message). An entry never wraps: when fewer than 16 bytes are
 * left before the end the reader skips to the start; otherwise a
 * POOL__WRAP status marks the skip.
 */
#ifndef MPROC_POOL_IMPL_H
#define MPROC_POOL_IMPL_H

#include "core/core.h"
#include "mproc/pool.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define POOL__MSG_MAX   (64 * 1024)
#define POOL__BATCH_MAX (56 * 1024) /* payload the parent packs per message */
#define POOL__OOL_MIN   (16 * 1024) /* larger items go out of line */
#define POOL__MAX_FDS   64          /* fds per message */
#define POOL__INFLIGHT  2           /* messages queued per worker */
#define POOL__OOL_LEN   0xffffffffu /* item len meaning "out of line" */
#define POOL__FDCACHE   8           /* shared buffers a worker keeps mapped */
/* Workers in a row that may die while starting before the pool gives up. */
#define POOL__STARTUP_DEATHS 10

/* Parent -> worker message types. */
enum { PM_FNDEF = 1, PM_TASKS = 2, PM_RANGE = 3, PM_EXIT = 4 };
/* Worker -> parent: results are in the ring; WM_NOTIFY says "look";
 * WM_OOLFD carries the memfd of one big result (sent before its entry). */
enum { WM_NOTIFY = 1, WM_INITFAIL = 2, WM_OOLFD = 3 };
/* Function kinds. */
enum { FK_BYTES = 1, FK_ARGS = 2, FK_RECORDS = 3 };
/* Or'ed into a PM_TASKS header's kind: write the results as chunks; the
 * items are in the input arena (a pool__arena follows the header). */
#define POOL__FK_CHUNK 0x80
#define POOL__FK_ARENA 0x40

typedef struct pool__hdr {
    uint8_t type;
    uint8_t kind;
    uint16_t nfds;
    uint32_t count; /* items */
    uint64_t first_seq;
    uint32_t fnid;
    int32_t code; /* WM_INITFAIL */
} pool__hdr;

/* Each item: header, then len bytes padded to 8 (or, when len is
 * POOL__OOL_LEN, a u64 size; the bytes are in the next fd). For results
 * `a` is the status (0 or a failure code; the bytes are then the message);
 * for tasks `a` is the number of fds the item's argument list took. */
typedef struct pool__item {
    int32_t a;
    uint32_t len;
} pool__item;

/* PM_RANGE payload. Buffers are named by id; the fd of a buffer the worker
 * has not seen yet rides along (flags bit 0: in, bit 1: out). */
typedef struct pool__range {
    uint64_t in_id, in_off, in_size;
    uint64_t out_id, out_off, out_size;
    uint64_t start, count;
    uint32_t flags, pad;
} pool__range;

/* The inputs of a map over bytes, packed by the caller into a shared
 * buffer (named by id; its fd rides along, flags bit 0, the first time a
 * worker gets it): total uint64 end offsets (item k ends at ends[k] and
 * begins at ends[k - 1] rounded up to 8, or 0) from the buffer's start,
 * then the items from byte 8 * total on. A message runs items first to
 * first + count. */
typedef struct pool__arena {
    uint64_t id, first, total;
    uint32_t flags, pad;
} pool__arena;

enum { SLOT_STARTING = 0, SLOT_INIT = 1, SLOT_READY = 2 };

typedef struct pool__slot {
    _Atomic uint32_t state;
    _Atomic int32_t pid;
    _Atomic uint64_t cur_seq;   /* task running or last run (0: none) */
    _Atomic uint64_t cur_start; /* CLOCK_MONOTONIC_COARSE ns at its start */
    _Atomic uint64_t done_seq;  /* last task finished */
    _Atomic uint64_t wpos;      /* ring bytes written (worker) */
    _Atomic uint64_t rpos;      /* ring bytes consumed (parent) */
    _Atomic uint32_t space;     /* futex: bumped when rpos moves */
    _Atomic uint32_t waiting;   /* the worker sleeps on space */
    char pad[8];
} pool__slot;

_Static_assert(sizeof(pool__slot) == 64, "board slot is one cache line");

typedef struct pool__entry {
    int32_t status;
    uint32_t len;
    uint64_t seq;
} pool__entry;

#define POOL__RING (256 * 1024) /* result ring per worker */
#define POOL__WRAP (INT32_MIN + 1)

/*
 * Chunk entries. For a PM_TASKS message flagged POOL__FK_CHUNK (a map
 * over bytes) the worker appends the plain successful results of a run of
 * consecutive tasks to one entry: status POOL__CHUNK, seq the first
 * task's, len the bytes after the entry header. They are a pool__chunkhdr,
 * then cap uint32 end offsets (result k ends at ends[k] and begins at
 * ends[k - 1] rounded up to 8, or 0), padded to 8, then the results. The
 * worker fills it in place beyond wpos, bumping count after each result
 * (so a dead worker's open chunk still gives the results it produced),
 * and commits it (len, then wpos) at the end of the message, before a
 * result that is not plain or bigger than POOL__CHUNK_ITEM, or when the
 * ring has no room for the next one.
 */
#define POOL__CHUNK      (INT32_MIN + 2)
#define POOL__CHUNK_ITEM 4096 /* larger results take entries of their own */
#define POOL__CHUNK_CAP  4096 /* results per chunk at most */

typedef struct pool__chunkhdr {
    _Atomic uint32_t count;
    uint32_t cap;
} pool__chunkhdr;

/* Bytes before a chunk's results: entry header, chunk header, table. */
static inline size_t pool__chunk_base(uint32_t cap)
{
    return sizeof(pool__entry) + sizeof(pool__chunkhdr) +
           ((4 * (size_t)cap + 7) & ~(size_t)7);
}

/* What a worker process is started with (the pool's shareable kind). */
typedef struct pool__wcfg {
    int chan;
    int peer; /* the parent's end: a fork child closes its copy */
    int board_fd;
    pool__slot *board; /* mapping of the whole board */
    size_t board_len;
    size_t ring_off; /* rings start here in the board */
    uint32_t slot;
    pid_t owner;
    mproc_init_fn init;
    mproc_args *initargs;
    bool imported;
} pool__wcfg;

extern const mproc_kind mproc__pool_wkind;

/* The worker process target (worker.c). */
int mproc__pool_worker_main(const mproc_args *args);

static inline size_t pool__pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* The room an entry of n bytes (ool: the 8-byte size of a memfd's bytes)
 * takes in a ring at byte position wpos, in *need, plus in *waste the
 * bytes skipped to the ring's start when it would not fit before the end.
 * Returns *need + *waste. */
static inline size_t pool__entry_room(uint64_t wpos, size_t n, bool ool,
                                      size_t *need, size_t *waste)
{
    size_t off = (size_t)(wpos % POOL__RING);
    *need = sizeof(pool__entry) + (ool ? 8 : pool__pad8(n));
    *waste = POOL__RING - off < *need ? POOL__RING - off : 0;
    return *need + *waste;
}

/* Writes an entry at *wpos of ring (the room of pool__entry_room, checked
 * free by the writer) and advances *wpos; the reader sees it once the
 * writer publishes *wpos. */
static inline void pool__entry_put(unsigned char *ring, uint64_t *wpos,
                                   size_t need, size_t waste, int32_t status,
                                   uint64_t seq, const void *p, size_t n,
                                   bool ool)
{
    size_t off = (size_t)(*wpos % POOL__RING);
    if (waste) {
        if (waste >= sizeof(pool__entry)) {
            pool__entry m = {.status = POOL__WRAP};
            memcpy(ring + off, &m, sizeof m);
        }
        *wpos += waste;
        off = 0;
    }
    pool__entry e = {
        .status = status, .len = ool ? POOL__OOL_LEN : (uint32_t)n, .seq = seq};
    unsigned char *d = ring + off;
    memcpy(d, &e, sizeof e);
    if (ool) {
        uint64_t size = n;
        memcpy(d + sizeof e, &size, 8);
    } else if (n) {
        memcpy(d + sizeof e, p, n); /* the padding is never read */
    }
    *wpos += need;
}

/* The coarse clock (a few ns, one tick of resolution) stamps tasks: the
 * worker reads it around every task, and task timeouts compare with it. */
static inline uint64_t pool__coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t pool__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* sendmsg of one message with fds, never blocking (MSG_DONTWAIT unless
 * block) and never raising SIGPIPE. Returns 0 or -errno. */
int mproc__pool_send(int sock, const void *p, size_t n, const int *fds,
                     size_t nfds, bool block);
/* recvmsg of one message; fds (close-on-exec) stored up to *nfds. Returns
 * bytes, 0 at EOF, -EAGAIN, -errno. Truncated messages: MPROC_EPROTO. */
ssize_t mproc__pool_recv(int sock, void *p, size_t n, int *fds, size_t *nfds,
                         bool block);

#endif
