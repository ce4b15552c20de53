/*
 * ex64_shared_memory.c - multiprocessing.shared_memory, after the example
 * in Python's documentation, with the second handle in another process
 * that attaches by name (as an unrelated program could).
 *
 *   shm_a = shared_memory.SharedMemory(create=True, size=10)
 *   buffer = shm_a.buf
 *   print(len(buffer))
 *   buffer[:4] = bytearray([22, 33, 44, 55])
 *   buffer[4] = 100
 *   # in another process:
 *   shm_b = shared_memory.SharedMemory(shm_a.name)
 *   print(array.array('b', shm_b.buf[:5]))
 *   shm_b.buf[:5] = b'howdy'
 *   shm_b.close()
 *   # back in the first one:
 *   print(bytes(shm_a.buf[:5]))
 *   shm_a.close()
 *   shm_a.unlink()
 *
 * Prints:
 *   10
 *   array('b', [22, 33, 44, 55, 100])
 *   b'howdy'
 */
#include <mproc.h>
#include <stdio.h>
#include <string.h>

static int other(const mproc_args *args)
{
    mproc_shm *shm_b;
    if (mproc_shm_attach(&shm_b, mproc_args_str(args, 0), 0) < 0)
        return 1;
    const signed char *b = mproc_shm_buf(shm_b);
    printf("array('b', [%d, %d, %d, %d, %d])\n", b[0], b[1], b[2], b[3], b[4]);
    memcpy(mproc_shm_buf(shm_b), "howdy", 5);
    mproc_shm_free(shm_b); /* close */
    return 0;
}

int main(void)
{
    mproc_shm *shm_a;
    int r = mproc_shm_create(&shm_a, NULL, 10, 0); /* name: psm_... */
    if (r < 0) {
        fprintf(stderr, "ex64: %s\n", mproc_strerror(r));
        return 1;
    }
    unsigned char *buffer = mproc_shm_buf(shm_a);
    printf("%zu\n", mproc_shm_size(shm_a));
    memcpy(buffer, (unsigned char[]){22, 33, 44, 55}, 4);
    buffer[4] = 100;
    fflush(stdout);

    mproc_args *args = mproc_args_of("s", mproc_shm_name(shm_a));
    mproc_process *p = NULL;
    if (!args || (r = mproc_process_new(&p, other, args)) < 0 ||
        (r = mproc_process_start(p)) < 0 ||
        (r = mproc_process_join(p, -1)) < 0) {
        fprintf(stderr, "ex64: %s\n", mproc_strerror(r));
        r = -1;
    } else {
        printf("b'%.5s'\n", (const char *)buffer);
    }
    mproc_process_free(p);
    mproc_args_free(args);
    mproc_shm_unlink(shm_a); /* once, by one process */
    mproc_shm_free(shm_a);   /* close */
    return r < 0;
}
