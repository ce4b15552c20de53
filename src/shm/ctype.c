/*
 * shm/ctype.c - the element types of Value and Array (ctypes' codes 'b',
 * 'i', 'd', ...): sizes and names, conversions between an element and
 * C integers and doubles with Python's range rules, and Python's repr of
 * elements (floats as repr(float) prints them, chars as bytes reprs).
 */
#include "shm/shm_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- types ----------------------------------------------------------- */

int shm__norm_type(int t)
{
    switch (t) {
    case 'l':
        return 'q';
    case 'L':
        return 'Q';
    case 'c':
    case 'b':
    case 'B':
    case 'h':
    case 'H':
    case 'i':
    case 'I':
    case 'q':
    case 'Q':
    case 'f':
    case 'd':
        return t;
    default:
        return 0;
    }
}

size_t mproc_ctype_size(int type)
{
    switch (shm__norm_type(type)) {
    case 'c':
    case 'b':
    case 'B':
        return 1;
    case 'h':
    case 'H':
        return 2;
    case 'i':
    case 'I':
    case 'f':
        return 4;
    case 'q':
    case 'Q':
    case 'd':
        return 8;
    default:
        return 0;
    }
}

const char *mproc_ctype_name(int type)
{
    if (type == MPROC_CTYPE_STRUCT)
        return "struct";
    switch (shm__norm_type(type)) {
    case 'c':
        return "char";
    case 'b':
        return "int8";
    case 'B':
        return "uint8";
    case 'h':
        return "int16";
    case 'H':
        return "uint16";
    case 'i':
        return "int32";
    case 'I':
        return "uint32";
    case 'q':
        return "int64";
    case 'Q':
        return "uint64";
    case 'f':
        return "float";
    case 'd':
        return "double";
    default:
        return NULL;
    }
}

bool shm__is_float(int t)
{
    return t == 'f' || t == 'd';
}

static bool is_signed(int t)
{
    return t == 'b' || t == 'h' || t == 'i' || t == 'q';
}

/* Range of an integer type ('c' counts as unsigned char: bytes 0..255). */
void shm__int_range(int t, int64_t *lo, uint64_t *hi)
{
    switch (t) {
    case 'b':
        *lo = INT8_MIN, *hi = INT8_MAX;
        break;
    case 'h':
        *lo = INT16_MIN, *hi = INT16_MAX;
        break;
    case 'i':
        *lo = INT32_MIN, *hi = INT32_MAX;
        break;
    case 'q':
        *lo = INT64_MIN, *hi = INT64_MAX;
        break;
    case 'c':
    case 'B':
        *lo = 0, *hi = UINT8_MAX;
        break;
    case 'H':
        *lo = 0, *hi = UINT16_MAX;
        break;
    case 'I':
        *lo = 0, *hi = UINT32_MAX;
        break;
    default:
        *lo = 0, *hi = UINT64_MAX;
        break;
    }
}

/* The integer in e as sign + magnitude parts: *neg set for negatives. */
void shm__elem_int(int t, const elem *e, bool *neg, uint64_t *mag, int64_t *sv)
{
    int64_t s = 0;
    uint64_t u = 0;
    switch (t) {
    case 'b':
        s = e->i8; /* NOLINT(bugprone-signed-char-misuse): an int8 */
        break;
    case 'h':
        s = e->i16;
        break;
    case 'i':
        s = e->i32;
        break;
    case 'q':
        s = e->i64;
        break;
    case 'c':
    case 'B':
        u = e->u8;
        break;
    case 'H':
        u = e->u16;
        break;
    case 'I':
        u = e->u32;
        break;
    default:
        u = e->u64;
        break;
    }
    if (is_signed(t)) {
        *neg = s < 0;
        *mag = s < 0 ? 0 : (uint64_t)s;
        *sv = s;
    } else {
        *neg = false;
        *mag = u;
        *sv = (int64_t)u;
    }
}

void shm__elem_from_int(int t, elem *e, int64_t s, uint64_t u, bool use_u)
{
    uint64_t bits = use_u ? u : (uint64_t)s;
    e->u64 = 0;
    switch (mproc_ctype_size(t)) {
    case 1:
        e->u8 = (uint8_t)bits;
        break;
    case 2:
        e->u16 = (uint16_t)bits;
        break;
    case 4:
        e->u32 = (uint32_t)bits;
        break;
    default:
        e->u64 = bits;
        break;
    }
}

double shm__elem_double(int t, const elem *e)
{
    if (t == 'f')
        return e->f;
    if (t == 'd')
        return e->d;
    bool neg;
    uint64_t mag;
    int64_t sv;
    shm__elem_int(t, e, &neg, &mag, &sv);
    return neg ? (double)sv : (double)mag;
}

/* ---- Python-style formatting ------------------------------------------ */

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len < b->cap) {
        size_t room = b->cap - 1 - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->p + b->len, s, k);
        b->p[b->len + k] = '\0';
    }
    b->len += n;
}

void shm__sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* repr(float): the shortest decimal that reads back as x, in Python's
 * layout (fixed for 1e-4 <= |x| < 1e16, with ".0" when integral; else
 * exponent with a sign and at least two digits). */
static void sb_double(sbuf *b, double x)
{
    if (isnan(x)) {
        shm__sb_str(b, "nan");
        return;
    }
    if (isinf(x)) {
        shm__sb_str(b, x < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x)
            break;
    }
    /* tmp: [-]d[.ddd]e(+|-)XX */
    const char *s = tmp;
    char out[64];
    size_t o = 0;
    if (*s == '-')
        out[o++] = *s++;
    char dig[24] = {'0'};
    size_t nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.')
            dig[nd++] = *s;
    int e = atoi(s + 1);
    if (nd == 0)
        nd = 1;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    if (e >= -4 && e < 16) {
        if (e >= 0) {
            for (int i = 0; i <= e; i++)
                out[o++] = (size_t)i < nd ? dig[i] : '0';
            out[o++] = '.';
            if ((size_t)e + 1 < nd)
                for (size_t i = (size_t)e + 1; i < nd; i++)
                    out[o++] = dig[i];
            else
                out[o++] = '0';
        } else {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -e - 1; i++)
                out[o++] = '0';
            for (size_t i = 0; i < nd; i++)
                out[o++] = dig[i];
        }
        out[o] = '\0';
    } else {
        out[o++] = dig[0];
        if (nd > 1) {
            out[o++] = '.';
            for (size_t i = 1; i < nd; i++)
                out[o++] = dig[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", e < 0 ? '-' : '+',
                 e < 0 ? -e : e);
    }
    shm__sb_str(b, out);
}

/* repr(bytes): b'...' with Python's choice of quotes and escapes. */
void shm__sb_bytes(sbuf *b, const unsigned char *p, size_t n)
{
    bool sq = memchr(p, '\'', n) != NULL, dq = memchr(p, '"', n) != NULL;
    unsigned char quote = sq && !dq ? '"' : '\'';
    char q[2] = {(char)quote, 0};
    shm__sb_str(b, "b");
    shm__sb_str(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        char t[8];
        if (c == quote || c == '\\')
            snprintf(t, sizeof t, "\\%c", c);
        else if (c == '\t')
            snprintf(t, sizeof t, "\\t");
        else if (c == '\n')
            snprintf(t, sizeof t, "\\n");
        else if (c == '\r')
            snprintf(t, sizeof t, "\\r");
        else if (c < 0x20 || c >= 0x7f)
            snprintf(t, sizeof t, "\\x%02x", c);
        else
            snprintf(t, sizeof t, "%c", c);
        shm__sb_str(b, t);
    }
    shm__sb_str(b, q);
}

void shm__sb_elem(sbuf *b, int t, const elem *e)
{
    char tmp[32];
    if (shm__is_float(t)) {
        sb_double(b, shm__elem_double(t, e));
    } else if (t == 'c') {
        shm__sb_bytes(b, &e->u8, 1);
    } else {
        bool neg;
        uint64_t mag;
        int64_t sv;
        shm__elem_int(t, e, &neg, &mag, &sv);
        if (neg)
            snprintf(tmp, sizeof tmp, "%lld", (long long)sv);
        else
            snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)mag);
        shm__sb_str(b, tmp);
    }
}
