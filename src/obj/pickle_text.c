/*
 * obj/pickle_text.c - the text forms of protocols 0 and 1 in the decoder:
 * STRING (a quoted Python 2 str literal, its escapes decoded, as bytes),
 * UNICODE (raw-unicode-escape), INT and LONG (decimal, and "00"/"01" for
 * False/True), FLOAT (repr text), and the decimal memo index of GET and
 * PUT. Malformed text fails with MPROC_EPICKLE.
 */
#include "obj/pickle_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- text forms (protocols 0 and 1) ----------------------------------- */

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* STRING: a quoted Python 2 str literal, escapes decoded, as bytes. */
int mproc__pk_load_string(loader *L)
{
    const unsigned char *s = NULL;
    size_t n = 0;
    if (mproc__pk_take_long_line(L, &s, &n) < 0)
        return L->status;
    while (n && (s[n - 1] == '\r' || s[n - 1] == ' '))
        n--;
    if (n < 2 || (s[0] != '\'' && s[0] != '"') || s[n - 1] != s[0])
        return mproc__pk_fail(L, "STRING not in quotes");
    s++;
    n -= 2;
    mproc__buf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c != '\\' || i + 1 == n) {
            mproc__buf_put(&b, &c, 1);
            continue;
        }
        unsigned char e = s[++i];
        const char *simple = strchr("\\'\"abfnrtv", e);
        if (simple && e) {
            static const char out[] = "\\'\"\a\b\f\n\r\t\v";
            mproc__buf_put(&b, &out[simple - "\\'\"abfnrtv"], 1);
        } else if (e == '\n') {
            /* a continued line */
        } else if (e >= '0' && e <= '7') {
            unsigned v = e - '0';
            for (int k = 0;
                 k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                v = v * 8 + (s[++i] - '0');
            c = (unsigned char)v;
            mproc__buf_put(&b, &c, 1);
        } else if (e == 'x' && i + 2 < n && hexval(s[i + 1]) >= 0 &&
                   hexval(s[i + 2]) >= 0) {
            c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
            mproc__buf_put(&b, &c, 1);
        } else if (e == 'x') {
            mproc__buf_free(&b);
            return mproc__pk_fail(L, "STRING with a bad \\x escape");
        } else {
            mproc__buf_put(&b, s + i - 1, 2);
        }
    }
    mproc_obj *o = NULL;
    int r = b.oom ? mproc__pk_nomem(L)
                  : mproc__pk_new_bytes(L, MPROC_OBJ_BYTES, b.p, b.len, &o);
    mproc__buf_free(&b);
    return r < 0 ? r : push(L, o);
}

/* UNICODE: raw-unicode-escape text (latin-1 bytes, \uXXXX, \UXXXXXXXX
 * after an odd run of backslashes). */
int mproc__pk_load_unicode(loader *L)
{
    const unsigned char *s = NULL;
    size_t n = 0;
    if (mproc__pk_take_long_line(L, &s, &n) < 0)
        return L->status;
    mproc__buf b = {0};
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            mproc__utf8_put(&b, s[i++]);
            continue;
        }
        size_t run = 0;
        while (i < n && s[i] == '\\') {
            run++;
            i++;
        }
        bool esc = run % 2 == 1 && i < n && (s[i] == 'u' || s[i] == 'U');
        for (size_t k = 0; k < run - esc; k++)
            mproc__buf_put(&b, "\\", 1);
        if (!esc)
            continue;
        size_t digits = s[i] == 'u' ? 4 : 8;
        uint32_t cp = 0;
        if (n - i - 1 < digits) {
            mproc__buf_free(&b);
            return mproc__pk_fail(L, "UNICODE with a truncated \\u escape");
        }
        for (size_t k = 1; k <= digits; k++) {
            int h = hexval(s[i + k]);
            if (h < 0) {
                mproc__buf_free(&b);
                return mproc__pk_fail(L, "UNICODE with a bad \\u escape");
            }
            cp = cp << 4 | (uint32_t)h;
        }
        if (cp > 0x10ffff) {
            mproc__buf_free(&b);
            return mproc__pk_fail(L, "UNICODE escape beyond U+10FFFF");
        }
        mproc__utf8_put(&b, cp);
        i += digits + 1;
    }
    int r = b.oom ? mproc__pk_nomem(L) : charge(L, OBJ_COST + b.len);
    if (r == 0)
        r = push(L, mproc__str_trusted((const char *)b.p, b.len));
    mproc__buf_free(&b);
    return r;
}

int mproc__pk_line_uint(loader *L, uint64_t *v)
{
    char buf[32];
    size_t n = 0;
    if (mproc__pk_take_line(L, buf, sizeof buf, &n) < 0)
        return L->status;
    if (n == 0 || strspn(buf, "0123456789") != n || n > 18)
        return mproc__pk_fail(L, "bad memo index in text");
    *v = strtoull(buf, NULL, 10);
    return 0;
}

/* INT and LONG text: decimal, "00"/"01" for False/True, LONG's 'L'. */
int mproc__pk_load_int_text(loader *L, bool is_long)
{
    const unsigned char *s = NULL;
    size_t n = 0;
    if (mproc__pk_take_long_line(L, &s, &n) < 0)
        return L->status;
    if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
        return push(L, mproc_obj_bool(s[1] == '1'));
    if (is_long && n && s[n - 1] == 'L')
        n--;
    if (n == 0 || n > 100000)
        return mproc__pk_fail(L, "bad integer text of %zu bytes", n);
    char *t = malloc(n + 1);
    if (!t)
        return mproc__pk_nomem(L);
    memcpy(t, s, n);
    t[n] = 0;
    mproc_obj *o = mproc_obj_int_from_str(t);
    free(t);
    if (!o)
        return mproc__pk_fail(L, "bad integer text");
    if (charge(L, OBJ_COST + n / 2) < 0) {
        mproc_obj_unref(o);
        return L->status;
    }
    return push(L, o);
}

int mproc__pk_load_float_text(loader *L)
{
    char buf[400], *end;
    if (mproc__pk_take_line(L, buf, sizeof buf, NULL) < 0)
        return L->status;
    double d = mproc__strtod(buf, &end);
    if (end == buf || *end)
        return mproc__pk_fail(L, "bad float text");
    return push(L, mproc_obj_float(d));
}
