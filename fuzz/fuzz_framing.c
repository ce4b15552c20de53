/*
 * fuzz_framing.c - the connection framing (conn/conn.c) on a peer's bytes:
 * every message of the stream is received until the stream fails or ends,
 * in the way the first input byte picks: allocated (without a limit, or
 * with a 4 KiB one), into a buffer of 300 bytes, or into one of 4 (too
 * short: the message must stay).
 * Nothing may crash, leak or read out of bounds; every failure must be one
 * of the documented codes.
 */
#include "fuzz_util.h"

#include <stdlib.h>

static int documented(int rc)
{
    return rc == MPROC_EEOF || rc == MPROC_ETRUNC || rc == MPROC_EPROTO ||
           rc == MPROC_ETOOBIG || rc == MPROC_EBUFSIZE || rc == -ENOMEM ||
           rc == -ECONNRESET || rc == -ETIMEDOUT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    {
        int peer;
        mproc_conn *c = fuzz_conn(data + 1, size - 1, &peer);
        if (!c)
            return 0;
        for (int i = 0; i < 64; i++) {
            int rc;
            if (mode <= 1) {
                void *m = NULL;
                size_t n = 0;
                rc = mproc_conn_recv_bytes(c, &m, &n, mode ? 4096 : 0, 0);
                free(m);
            } else {
                char buf[300];
                size_t n = 0;
                rc = mode == 2
                         ? mproc_conn_recv_bytes_into(c, buf, sizeof buf, &n, 0)
                         : mproc_conn_recv_bytes_into(c, buf, 4, &n, 0);
                if (rc == MPROC_EBUFSIZE && mode == 3)
                    break; /* the message stays: another call would loop */
            }
            if (rc < 0) {
                if (!documented(rc))
                    abort();
                break;
            }
        }
        mproc_conn_free(c);
        close(peer);
    }
    return 0;
}
