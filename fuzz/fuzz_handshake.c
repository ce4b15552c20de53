/*
 * fuzz_handshake.c - both roles of the authentication handshake
 * (conn/auth.c) on a peer's bytes. The first input byte picks the role:
 * even, the server (we deliver a challenge; the input is the client's
 * answer), odd, the client (the input is the server's challenge and its
 * verdict). A random nonce means no input can pass as the server; the
 * parsers are what is fuzzed. Any result is fine but a crash, a leak or an
 * undocumented code.
 */
#include "fuzz_util.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int client = data[0] & 1;
    int peer;
    mproc_conn *c = fuzz_conn(data + 1, size - 1, &peer);
    if (!c)
        return 0;
    static const char key[] = "fuzzing key";
    int rc = client ? mproc_conn_answer_challenge(c, key, sizeof key - 1, 0)
                    : mproc_conn_deliver_challenge(c, key, sizeof key - 1, 0);
    if (rc > 0 || (rc < 0 && rc != MPROC_EAUTH && rc != MPROC_EPROTO &&
                   rc != MPROC_ETOOBIG && rc != MPROC_EEOF &&
                   rc != MPROC_ETRUNC && rc != -ECONNRESET && rc != -EPIPE &&
                   rc != -ETIMEDOUT && rc != -ENOMEM && rc != -ELIBACC))
        abort();
    mproc_conn_free(c);
    close(peer);
    return 0;
}
