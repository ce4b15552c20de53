/*
 * obj/num.c - numbers: ints beyond int64 kept as their two's-complement
 * little-endian bytes (what pickle's LONG1/LONG4 carry), converted to and
 * from magnitudes of 32-bit limbs for decimal text, doubles and hashing;
 * Python's numeric hash (modulo 2**61 - 1, so that 1, 1.0 and True hash
 * alike); the shortest repr of a double; text to double in the C locale.
 * No arithmetic beyond that: transport needs only the bytes.
 */
#include "obj/obj_impl.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_BITS    61
#define HASH_MODULUS (((uint64_t)1 << HASH_BITS) - 1)
#define HASH_INF     314159

mproc_obj *mproc__int_from_mag(const uint32_t *mag, size_t n, bool neg)
{
    if (n > (SIZE_MAX - 1) / 4)
        return NULL;
    size_t nb = 4 * n + 1;
    unsigned char stackb[64];
    unsigned char *b = nb <= sizeof stackb ? stackb : malloc(nb);
    if (!b)
        return NULL;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            b[4 * i + k] = (unsigned char)(mag[i] >> (8 * k));
    b[nb - 1] = 0;
    if (neg) {
        unsigned carry = 1;
        for (size_t i = 0; i < nb; i++) {
            unsigned v = (unsigned)(unsigned char)~b[i] + carry;
            b[i] = (unsigned char)v;
            carry = v >> 8;
        }
    }
    mproc_obj *o = mproc_obj_int_from_bytes(b, nb);
    if (b != stackb)
        free(b);
    return o;
}

int mproc__int_mag(const unsigned char *b, size_t n, uint32_t **magp,
                   size_t *nmag, bool *negp)
{
    bool neg = n && (b[n - 1] & 0x80);
    size_t nl = n / 4 + 2;
    uint32_t *mag = calloc(nl, sizeof *mag);
    if (!mag)
        return -ENOMEM;
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned v = b[i];
        if (neg) {
            v = (unsigned)(unsigned char)~b[i] + carry;
            carry = v >> 8;
            v &= 0xff;
        }
        mag[i / 4] |= (uint32_t)v << (8 * (i % 4));
    }
    while (nl && mag[nl - 1] == 0)
        nl--;
    *magp = mag;
    *nmag = nl;
    *negp = neg;
    return 0;
}

/* The magnitude of any int object (small ones too). */
static int obj_mag(const mproc_obj *o, uint32_t **mag, size_t *n, bool *neg)
{
    if (mproc__int_big(o))
        return mproc__int_mag(mproc__int_big(o), mproc__int_nbig(o), mag, n,
                              neg);
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)mproc__int_v(o) >> (8 * i));
    return mproc__int_mag(b, 8, mag, n, neg);
}

void mproc__int_decimal(const mproc_obj *o, mproc__buf *b)
{
    char tmp[24];
    if (!mproc__int_big(o)) {
        /* Digits from the end (no snprintf: a repr of many small ints,
         * up to 64 MiB of them, spent most of its time there). */
        int64_t v = mproc__int_v(o);
        uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        char *p = tmp + sizeof tmp;
        do {
            *--p = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            *--p = '-';
        mproc__buf_put(b, p, (size_t)(tmp + sizeof tmp - p));
        return;
    }
    uint32_t *mag;
    size_t n;
    bool neg;
    if (mproc__int_mag(mproc__int_big(o), mproc__int_nbig(o), &mag, &n, &neg) <
        0) {
        b->oom = true;
        return;
    }
    /* Base 10^9 digits, least significant first: n limbs of 32 bits need
     * at most n * 32 / 29 + 1 of them. */
    size_t cap = n * 32 / 29 + 2, nd = 0;
    uint32_t *dec = malloc(cap * sizeof *dec);
    if (!dec) {
        free(mag);
        b->oom = true;
        return;
    }
    for (size_t i = n; i-- > 0;) {
        uint64_t carry = mag[i];
        for (size_t j = 0; j < nd; j++) {
            uint64_t t = (uint64_t)dec[j] << 32 | carry;
            dec[j] = (uint32_t)(t % 1000000000u);
            carry = t / 1000000000u;
        }
        while (carry) {
            dec[nd++] = (uint32_t)(carry % 1000000000u);
            carry /= 1000000000u;
        }
    }
    if (neg)
        mproc__buf_put(b, "-", 1);
    int k = snprintf(tmp, sizeof tmp, "%u", nd ? dec[nd - 1] : 0u);
    mproc__buf_put(b, tmp, (size_t)k);
    for (size_t j = nd ? nd - 1 : 0; j-- > 0;) {
        k = snprintf(tmp, sizeof tmp, "%09u", dec[j]);
        mproc__buf_put(b, tmp, (size_t)k);
    }
    free(dec);
    free(mag);
}

mproc_obj *mproc_obj_int_from_str(const char *s)
{
    if (!s)
        return NULL;
    bool neg = false;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    size_t nd = strspn(s, "0123456789");
    if (nd == 0 || s[nd] != 0)
        return NULL;
    if (nd <= 18) {
        int64_t v = strtoll(s, NULL, 10);
        return mproc_obj_int(neg ? -v : v);
    }
    size_t cap = nd / 9 + 2, n = 0;
    uint32_t *mag = calloc(cap, sizeof *mag);
    if (!mag)
        return NULL;
    for (size_t i = 0; i < nd;) {
        size_t take = (nd - i) % 9 ? (nd - i) % 9 : 9;
        uint32_t chunk = 0, mul = 1;
        for (size_t k = 0; k < take; k++) {
            chunk = chunk * 10 + (uint32_t)(s[i + k] - '0');
            mul *= 10;
        }
        i += take;
        uint64_t carry = chunk;
        for (size_t j = 0; j < n; j++) {
            uint64_t t = (uint64_t)mag[j] * mul + carry;
            mag[j] = (uint32_t)t;
            carry = t >> 32;
        }
        if (carry)
            mag[n++] = (uint32_t)carry;
    }
    mproc_obj *o = mproc__int_from_mag(mag, n, neg);
    free(mag);
    return o;
}

/* ---- hashing ---------------------------------------------------------- */

static int64_t signed_hash(uint64_t mod, bool neg)
{
    int64_t h = neg ? -(int64_t)mod : (int64_t)mod;
    return h == -1 ? -2 : h;
}

int64_t mproc__hash_i64(int64_t v)
{
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    return signed_hash(u % HASH_MODULUS, v < 0);
}

int64_t mproc__hash_big(const unsigned char *b, size_t n)
{
    bool neg = n && (b[n - 1] & 0x80);
    /* |x| mod P from the most significant byte down; the magnitude of a
     * negative number is ~x + 1, taken as (~x mod P) + 1. */
    unsigned __int128 h = 0;
    for (size_t i = n; i-- > 0;) {
        unsigned char c = neg ? (unsigned char)~b[i] : b[i];
        h = ((h << 8) | c) % HASH_MODULUS;
    }
    if (neg)
        h = (h + 1) % HASH_MODULUS;
    return signed_hash((uint64_t)h, neg);
}

int64_t mproc__hash_double(double d)
{
    if (isnan(d))
        return 0;
    if (isinf(d))
        return d > 0 ? HASH_INF : -HASH_INF;
    int e;
    double m = frexp(d, &e);
    bool neg = m < 0;
    if (neg)
        m = -m;
    uint64_t x = 0;
    while (m) {
        x = ((x << 28) & HASH_MODULUS) | x >> (HASH_BITS - 28);
        m *= 268435456.0; /* 2**28 */
        e -= 28;
        uint64_t y = (uint64_t)m;
        m -= (double)y;
        x += y;
        if (x >= HASH_MODULUS)
            x -= HASH_MODULUS;
    }
    e = e >= 0 ? e % HASH_BITS : HASH_BITS - 1 - ((-1 - e) % HASH_BITS);
    x = ((x << e) & HASH_MODULUS) | x >> (HASH_BITS - e);
    return signed_hash(x, neg);
}

/* ---- ints and doubles ------------------------------------------------- */

#define TWO63 9223372036854775808.0

bool mproc__int_eq_double(const mproc_obj *o, double d)
{
    if (!isfinite(d) || d != trunc(d))
        return false;
    if (!mproc__int_big(o))
        return d >= -TWO63 && d < TWO63 && (int64_t)d == mproc__int_v(o);
    if (d > -TWO63 && d < TWO63)
        return false; /* a big int is outside int64 */
    int e;
    double m = frexp(fabs(d), &e);
    uint64_t mant = (uint64_t)ldexp(m, 53);
    int shift = e - 53;
    size_t nl = (size_t)(53 + shift) / 32 + 2;
    uint32_t *mag = calloc(nl, sizeof *mag);
    if (!mag)
        return false;
    for (int bit = 0; bit < 53; bit++)
        if (mant >> bit & 1) {
            int at = bit + shift;
            mag[at / 32] |= (uint32_t)1 << (at % 32);
        }
    mproc_obj *t = mproc__int_from_mag(mag, nl, d < 0);
    free(mag);
    bool eq =
        t && mproc__int_big(t) && mproc__int_nbig(t) == mproc__int_nbig(o) &&
        memcmp(mproc__int_big(t), mproc__int_big(o), mproc__int_nbig(o)) == 0;
    mproc_obj_unref(t);
    return eq;
}

int mproc__int_to_double(const mproc_obj *o, double *out)
{
    if (!mproc__int_big(o)) {
        *out = (double)mproc__int_v(o);
        return 0;
    }
    uint32_t *mag;
    size_t n;
    bool neg;
    if (obj_mag(o, &mag, &n, &neg) < 0)
        return -ENOMEM;
    /* The top 64 bits, with every lower bit folded into the last one
     * ("sticky"): one rounding, to nearest even, as Python does. */
    size_t nbits = 32 * (n - 1);
    for (uint32_t top = mag[n - 1]; top; top >>= 1)
        nbits++;
    uint64_t t = 0;
    bool sticky = false;
    for (size_t bit = nbits; bit-- > 0;) {
        unsigned v = mag[bit / 32] >> (bit % 32) & 1;
        if (nbits - bit <= 64)
            t = t << 1 | v;
        else if (v)
            sticky = true;
    }
    free(mag);
    if (sticky)
        t |= 1;
    int scale = nbits > 64 ? (int)(nbits - 64) : 0;
    if (nbits > 1100)
        return -ERANGE;
    double d = ldexp((double)t, scale);
    if (isinf(d))
        return -ERANGE;
    *out = neg ? -d : d;
    return 0;
}

/* ---- text ------------------------------------------------------------- */

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

double mproc__strtod(const char *s, char **end)
{
    pthread_once(&c_locale_once, make_c_locale);
    if (c_locale)
        return strtod_l(s, end, c_locale);
    return strtod(s, end);
}

void mproc__double_repr(double d, mproc__buf *b)
{
    if (isnan(d)) {
        mproc__buf_put(b, "nan", 3);
        return;
    }
    if (isinf(d)) {
        mproc__buf_put(b, d < 0 ? "-inf" : "inf", d < 0 ? 4 : 3);
        return;
    }
    if (signbit(d))
        mproc__buf_put(b, "-", 1);
    d = fabs(d);
    if (d == 0) {
        mproc__buf_put(b, "0.0", 3);
        return;
    }
    /* The fewest significant digits that read back as d. */
    char e[40], digits[20];
    int exp10 = 0;
    size_t nd = 0;
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, d);
        char *ep = strchr(e, 'e');
        if (!ep)
            return;
        nd = 0;
        for (char *p = e; p < ep; p++)
            if (*p >= '0' && *p <= '9')
                digits[nd++] = *p;
        exp10 = atoi(ep + 1);
        /* Read it back in the C locale, whatever the program's. */
        char back[48];
        snprintf(back, sizeof back, "%.*se%d", (int)nd, digits,
                 exp10 - (int)nd + 1);
        if (mproc__strtod(back, NULL) == d)
            break;
    }
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    int decpt = exp10 + 1; /* d = 0.DIGITS * 10**decpt */
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            mproc__buf_put(b, "0.", 2);
            for (int i = 0; i < -decpt; i++)
                mproc__buf_put(b, "0", 1);
            mproc__buf_put(b, digits, nd);
        } else if ((size_t)decpt < nd) {
            mproc__buf_put(b, digits, (size_t)decpt);
            mproc__buf_put(b, ".", 1);
            mproc__buf_put(b, digits + decpt, nd - (size_t)decpt);
        } else {
            mproc__buf_put(b, digits, nd);
            for (size_t i = nd; i < (size_t)decpt; i++)
                mproc__buf_put(b, "0", 1);
            mproc__buf_put(b, ".0", 2);
        }
        return;
    }
    mproc__buf_put(b, digits, 1);
    if (nd > 1) {
        mproc__buf_put(b, ".", 1);
        mproc__buf_put(b, digits + 1, nd - 1);
    }
    char x[16];
    int k = snprintf(x, sizeof x, "e%c%02d", exp10 < 0 ? '-' : '+',
                     exp10 < 0 ? -exp10 : exp10);
    mproc__buf_put(b, x, (size_t)k);
}
