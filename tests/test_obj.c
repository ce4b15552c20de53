/*
 * test_obj.c - values (mproc/obj.h) and the pickle codec. The model:
 * constructors, UTF-8 checks, big ints, dict keys as Python merges them
 * (1 == 1.0 == True), ownership on every failure path; Python's hash
 * values and exact repr strings; values nested far deeper than the C
 * stack could recurse. The codec: every protocol round-trips, CPython's
 * own bytes decode, and hostile streams (truncated at every byte, bit
 * flips, unknown globals and opcodes, depth, memo and memory bombs,
 * self-containing values) fail with MPROC_EPICKLE and a message, never
 * crash, hang or leak. Against every installed CPython (2.7, 3.6-3.13,
 * tests/py/pickle_peer.py): thousands of random nested values pickled
 * with every protocol the interpreter has are decoded, re-encoded and
 * unpickled there to an equal value, and their repr is Python 3.13's.
 */
#include "harness.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char *repr_of(const mproc_obj *o)
{
    char *s = NULL;
    CHECK_OK(mproc_obj_repr(o, &s, NULL));
    return s;
}

#define CHECK_REPR(o, want)                                                    \
    do {                                                                       \
        mproc_obj *o_ = (o);                                                   \
        CHECK(o_ != NULL);                                                     \
        char *s_ = repr_of(o_);                                                \
        CHECK_STR(s_, want);                                                   \
        free(s_);                                                              \
        mproc_obj_unref(o_);                                                   \
    } while (0)

static mproc_obj *big(const char *dec)
{
    mproc_obj *o = mproc_obj_int_from_str(dec);
    CHECK(o != NULL);
    return o;
}

/* ---- the model -------------------------------------------------------- */

static void test_scalars(void)
{
    int64_t v;
    mproc_obj *i = mproc_obj_int(-5);
    CHECK_EQ(mproc_obj_type_of(i), MPROC_OBJ_INT);
    CHECK_OK(mproc_obj_int_value(i, &v));
    CHECK_EQ(v, -5);
    CHECK_STR(mproc_obj_type_name(i), "int");
    mproc_obj_unref(i);

    /* 2**70 and -2**200 from bytes and from text are the same value. */
    unsigned char b70[10] = {0};
    b70[8] = 0x40;
    mproc_obj *a = mproc_obj_int_from_bytes(b70, sizeof b70);
    mproc_obj *t = big("1180591620717411303424");
    CHECK_EQ(mproc_obj_eq(a, t), 1);
    CHECK_ERR(mproc_obj_int_value(a, &v), -ERANGE);
    unsigned char out[16];
    CHECK_EQ(mproc_obj_int_bytes(a, out, sizeof out), 9);
    CHECK(out[8] == 0x40);
    double d;
    CHECK_OK(mproc_obj_float_value(a, &d));
    CHECK(d == ldexp(1, 70));
    mproc_obj *f = mproc_obj_float(ldexp(1, 70));
    CHECK_EQ(mproc_obj_eq(a, f), 1);
    mproc_obj *f2 = mproc_obj_float(ldexp(1, 70) + ldexp(1, 18));
    CHECK_EQ(mproc_obj_eq(a, f2), 0);
    mproc_obj_unref(f2);
    mproc_obj_unref(f);
    mproc_obj_unref(a);
    mproc_obj_unref(t);
    CHECK_REPR(big("-1606938044258990275541962092341162602522202993782792"
                   "835301376"),
               "-1606938044258990275541962092341162602522202993782792835301"
               "376");
    /* Redundant sign bytes are dropped: 8 bytes of -1 is -1, int64. */
    unsigned char m1[12];
    memset(m1, 0xff, sizeof m1);
    a = mproc_obj_int_from_bytes(m1, sizeof m1);
    CHECK_OK(mproc_obj_int_value(a, &v));
    CHECK_EQ(v, -1);
    CHECK_EQ(mproc_obj_int_bytes(a, NULL, 0), 1);
    mproc_obj_unref(a);
    a = mproc_obj_int_from_bytes(NULL, 0);
    CHECK_OK(mproc_obj_int_value(a, &v));
    CHECK_EQ(v, 0);
    CHECK(!mproc_obj_truth(a));
    CHECK_EQ(mproc_obj_int_bytes(a, NULL, 0), 0);
    mproc_obj_unref(a);
    CHECK(mproc_obj_int_from_str("12x") == NULL);
    CHECK(mproc_obj_int_from_str("") == NULL);
    CHECK(mproc_obj_int_from_str("-") == NULL);
    /* int64's edges from text. */
    a = big("-9223372036854775808");
    CHECK_OK(mproc_obj_int_value(a, &v));
    CHECK(v == INT64_MIN);
    mproc_obj_unref(a);
    a = big("9223372036854775808");
    CHECK_ERR(mproc_obj_int_value(a, &v), -ERANGE);
    mproc_obj_unref(a);
    /* A big int past double's range. */
    char huge[400];
    memset(huge, '9', 320);
    huge[320] = 0;
    a = big(huge);
    CHECK_ERR(mproc_obj_float_value(a, &d), -ERANGE);
    mproc_obj_unref(a);

    /* None, bools: static. */
    CHECK(mproc_obj_none() == mproc_obj_none());
    mproc_obj_unref(mproc_obj_none());
    CHECK_EQ(mproc_obj_int_value(mproc_obj_bool(true), &v), 0);
    CHECK_EQ(v, 1);
    CHECK_ERR(mproc_obj_int_value(mproc_obj_none(), &v), MPROC_ETYPE);
    CHECK_STR(mproc_obj_type_name(mproc_obj_none()), "NoneType");

    /* str: UTF-8 checked, lone surrogates kept as Python has them. */
    mproc_obj *e = mproc_obj_str("\xc3\xa9", 2);
    CHECK(e != NULL);
    mproc_obj_unref(e);
    CHECK(mproc_obj_str("\xc3", 1) == NULL);             /* truncated */
    CHECK(mproc_obj_str("\xc0\x80", 2) == NULL);         /* overlong */
    CHECK(mproc_obj_str("\xf4\x90\x80\x80", 4) == NULL); /* > U+10FFFF */
    CHECK(mproc_obj_str("\xff", 1) == NULL);
    CHECK(mproc_obj_str(NULL, 1) == NULL);
    mproc_obj *s = mproc_obj_str("\xed\xa0\x80", 3); /* U+D800 */
    CHECK(s != NULL);
    CHECK_REPR(s, "'\\ud800'");
    s = mproc_obj_str("a\0b", 3);
    size_t n;
    CHECK(memcmp(mproc_obj_str_value(s, &n), "a\0b", 4) == 0);
    CHECK_EQ(n, 3);
    CHECK_EQ(mproc_obj_len(s), 3);
    mproc_obj_unref(s);

    mproc_obj *ba = mproc_obj_bytearray("ab", 2);
    CHECK_OK(mproc_obj_bytearray_extend(ba, "cd", 2));
    CHECK(memcmp(mproc_obj_bytes_value(ba, &n), "abcd", 4) == 0);
    CHECK_EQ(n, 4);
    mproc_obj *by = mproc_obj_bytes("abcd", 4);
    CHECK_EQ(mproc_obj_eq(ba, by), 1); /* b'abcd' == bytearray(b'abcd') */
    int64_t h;
    CHECK_ERR(mproc_obj_hash(ba, &h), MPROC_ETYPE);
    CHECK_ERR(mproc_obj_bytearray_extend(by, "x", 1), -EINVAL);
    mproc_obj_unref(ba);
    mproc_obj_unref(by);
}

static void test_containers(void)
{
    mproc_obj *d = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_int(1), mproc_obj_str_c("a")));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_str_c("k"), mproc_obj_int(2)));
    /* 1.0 and True are the key 1: the first key stays, the value changes. */
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_float(1.0), mproc_obj_str_c("b")));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_bool(true), mproc_obj_str_c("c")));
    CHECK_EQ(mproc_obj_len(d), 2);
    char *r = repr_of(d);
    CHECK_STR(r, "{1: 'c', 'k': 2}");
    free(r);
    int64_t v;
    CHECK_OK(mproc_obj_int_value(mproc_obj_dict_get_str(d, "k"), &v));
    CHECK_EQ(v, 2);
    CHECK(mproc_obj_dict_get_str(d, "nope") == NULL);
    /* Unhashable keys are refused, and both references dropped. */
    CHECK_ERR(mproc_obj_dict_set(d, mproc_obj_list_new(), mproc_obj_int(1)),
              MPROC_ETYPE);
    CHECK_ERR(mproc_obj_dict_set(d, mproc_obj_tuple_of(1, mproc_obj_list_new()),
                                 mproc_obj_int(1)),
              MPROC_ETYPE);
    /* A failed constructor passed straight in. */
    CHECK_ERR(mproc_obj_dict_set(d, NULL, mproc_obj_int(1)), -ENOMEM);
    CHECK_ERR(mproc_obj_dict_set(NULL, mproc_obj_int(1), mproc_obj_int(1)),
              -EINVAL);
    /* Many keys: the index, deletion keeping the order. */
    for (int i = 0; i < 1000; i++)
        CHECK_OK(
            mproc_obj_dict_set(d, mproc_obj_int(i + 10), mproc_obj_int(i)));
    CHECK_EQ(mproc_obj_len(d), 1002);
    mproc_obj *k = mproc_obj_float(510.0);
    CHECK_OK(mproc_obj_int_value(mproc_obj_dict_get(d, k), &v));
    CHECK_EQ(v, 500);
    CHECK_OK(mproc_obj_dict_del(d, k));
    CHECK_ERR(mproc_obj_dict_del(d, k), -ENOENT);
    CHECK(mproc_obj_dict_get(d, k) == NULL);
    mproc_obj_unref(k);
    for (int i = 0; i < 1000; i += 3) {
        k = mproc_obj_int(i + 10);
        int rc = mproc_obj_dict_del(d, k);
        CHECK(rc == 0 || (i == 500 && rc == -ENOENT));
        mproc_obj_unref(k);
    }
    mproc_obj *key, *val;
    CHECK_OK(mproc_obj_dict_item(d, 2, &key, &val));
    CHECK_OK(mproc_obj_int_value(key, &v));
    CHECK_EQ(v, 11);
    for (int i = 1; i < 1000; i += 3) {
        k = mproc_obj_int(i + 10);
        CHECK(mproc_obj_dict_get(d, k) != NULL);
        mproc_obj_unref(k);
    }
    CHECK_ERR(mproc_obj_dict_item(d, 5000, &key, &val), -EINVAL);
    mproc_obj_unref(d);

    mproc_obj *s = mproc_obj_set_new();
    CHECK_OK(mproc_obj_set_add(s, mproc_obj_int(3)));
    CHECK_OK(mproc_obj_set_add(s, mproc_obj_float(3.0)));
    CHECK_OK(mproc_obj_set_add(s, mproc_obj_str_c("x")));
    CHECK_EQ(mproc_obj_len(s), 2);
    mproc_obj *three = mproc_obj_bool(true);
    CHECK_EQ(mproc_obj_contains(s, three), 0);
    mproc_obj *x = mproc_obj_str_c("x");
    CHECK_EQ(mproc_obj_contains(s, x), 1);
    mproc_obj_unref(x);
    CHECK_ERR(mproc_obj_set_add(s, mproc_obj_dict_new()), MPROC_ETYPE);
    mproc_obj *fs = mproc_obj_frozenset_new();
    CHECK_OK(mproc_obj_set_add(fs, mproc_obj_str_c("x")));
    CHECK_OK(mproc_obj_set_add(fs, mproc_obj_int(3)));
    CHECK_EQ(mproc_obj_eq(s, fs), 1); /* {3, 'x'} == frozenset({'x', 3}) */
    mproc_obj_unref(fs);
    mproc_obj_unref(s);

    mproc_obj *t = mproc_obj_tuple_new(2);
    CHECK_REPR(mproc_obj_ref(t), "(None, None)");
    CHECK_OK(mproc_obj_tuple_set(t, 1, mproc_obj_int(7)));
    CHECK_ERR(mproc_obj_tuple_set(t, 2, mproc_obj_int(7)), -EINVAL);
    CHECK_ERR(mproc_obj_tuple_set(t, 0, NULL), -ENOMEM);
    CHECK_REPR(t, "(None, 7)");
    CHECK(mproc_obj_tuple_of(2, mproc_obj_int(1), NULL) == NULL);

    mproc_obj *l = mproc_obj_list_new();
    CHECK_ERR(mproc_obj_list_append(l, NULL), -ENOMEM);
    CHECK_ERR(mproc_obj_list_append(NULL, mproc_obj_int(1)), -EINVAL);
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(1)));
    CHECK_OK(mproc_obj_list_set(l, 0, mproc_obj_int(2)));
    CHECK_ERR(mproc_obj_list_set(l, 1, mproc_obj_int(2)), -EINVAL);
    CHECK_OK(mproc_obj_int_value(mproc_obj_item(l, 0), &v));
    CHECK_EQ(v, 2);
    CHECK(mproc_obj_item(l, 1) == NULL);
    mproc_obj_unref(l);

    mproc_obj *e = mproc_obj_reduce(
        "builtins", "ValueError", mproc_obj_tuple_of(1, mproc_obj_str_c("bad")),
        NULL, false);
    CHECK_EQ(mproc_obj_is_exception(e), 1);
    CHECK_STR(mproc_obj_type_name(e), "ValueError");
    CHECK_REPR(e, "ValueError('bad')");
    mproc_obj *bb = mproc_obj_reduce("threading", "BrokenBarrierError",
                                     mproc_obj_tuple_new(0), NULL, false);
    CHECK_EQ(mproc_obj_is_exception(bb), 1);
    mproc_obj_unref(bb);
    CHECK(mproc_obj_reduce("builtins", "x", mproc_obj_list_new(), NULL,
                           false) == NULL);
    CHECK(mproc_obj_reduce("", "x", NULL, NULL, false) == NULL);
    CHECK(mproc_obj_reduce("a\nb", "x", NULL, NULL, false) == NULL);
}

static void test_hash_eq(void)
{
    int64_t h1, h2, h3;
    mproc_obj *a = mproc_obj_int(1), *b = mproc_obj_float(1.0);
    CHECK_OK(mproc_obj_hash(a, &h1));
    CHECK_OK(mproc_obj_hash(b, &h2));
    CHECK_OK(mproc_obj_hash(mproc_obj_bool(true), &h3));
    CHECK(h1 == 1 && h2 == 1 && h3 == 1);
    CHECK_EQ(mproc_obj_eq(a, b), 1);
    CHECK_EQ(mproc_obj_eq(a, mproc_obj_bool(true)), 1);
    mproc_obj_unref(a);
    mproc_obj_unref(b);
    /* CPython 3.13's values. */
    static const struct {
        const char *what;
        int64_t want;
    } cases[] = {
        {"(1, 2)", -3550055125485641917},
        {"2**70", 512},
        {"-2**200", -131072},
        {"1.5", 1152921504606846977},
        {"-0.1", -230584300921369408},
        {"1e300", 1224995262755759164},
        {"()", 5740354900026072187},
        {"frozenset({1, 2, 3})", -272375401224217160},
        {"frozenset()", 133146708735736},
        {"(2**64, 2.5, True, (1,))", -5336767678537113375},
        {"-2**63", -4},
        {"2**63", 4},
        {"-1", -2},
    };
    mproc_obj *objs[] = {
        mproc_obj_tuple_of(2, mproc_obj_int(1), mproc_obj_int(2)),
        big("1180591620717411303424"),
        big("-160693804425899027554196209234116260252220299378279283530137"
            "6"),
        mproc_obj_float(1.5),
        mproc_obj_float(-0.1),
        mproc_obj_float(1e300),
        mproc_obj_tuple_new(0),
        mproc_obj_frozenset_new(),
        mproc_obj_frozenset_new(),
        mproc_obj_tuple_of(4, big("18446744073709551616"), mproc_obj_float(2.5),
                           mproc_obj_bool(true),
                           mproc_obj_tuple_of(1, mproc_obj_int(1))),
        mproc_obj_int(INT64_MIN),
        big("9223372036854775808"),
        mproc_obj_int(-1),
    };
    for (int i = 1; i <= 3; i++)
        CHECK_OK(mproc_obj_set_add(objs[7], mproc_obj_int(4 - i)));
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t h;
        CHECK_OK(mproc_obj_hash(objs[i], &h));
        if (h != cases[i].want)
            mproc_test_fail(__FILE__, __LINE__, "hash(%s) = %lld, want %lld",
                            cases[i].what, (long long)h,
                            (long long)cases[i].want);
        mproc_obj_unref(objs[i]);
    }
    /* Equal values hash alike: big ints against their doubles. */
    mproc_obj *x = big("-36893488147419103232"); /* -2**65 */
    mproc_obj *y = mproc_obj_float(-ldexp(1, 65));
    CHECK_EQ(mproc_obj_eq(x, y), 1);
    CHECK_OK(mproc_obj_hash(x, &h1));
    CHECK_OK(mproc_obj_hash(y, &h2));
    CHECK(h1 == h2);
    mproc_obj_unref(x);
    mproc_obj_unref(y);
    mproc_obj *nan = mproc_obj_float(NAN);
    mproc_obj *nan2 = mproc_obj_float(NAN);
    CHECK_EQ(mproc_obj_eq(nan, nan), 1); /* the same object */
    CHECK_EQ(mproc_obj_eq(nan, nan2), 0);
    mproc_obj_unref(nan);
    mproc_obj_unref(nan2);
    mproc_obj *s = mproc_obj_str_c("1"), *bs = mproc_obj_bytes("1", 1);
    CHECK_EQ(mproc_obj_eq(s, bs), 0);
    mproc_obj_unref(s);
    mproc_obj_unref(bs);
}

static void test_repr(void)
{
    mproc_obj *d = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_int(1), mproc_obj_int(1)));
    CHECK_REPR(d, "{1: 1}");
    mproc_obj *l = mproc_obj_list_new();
    for (int i = 0; i < 3; i++)
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(i * i)));
    CHECK_REPR(l, "[0, 1, 4]");
    CHECK_REPR(mproc_obj_bytes("howdy", 5), "b'howdy'");
    CHECK_REPR(mproc_obj_str_c("\xc3\xa9"), "'\xc3\xa9'");
    CHECK_REPR(mproc_obj_tuple_of(1, mproc_obj_int(1)), "(1,)");
    CHECK_REPR(mproc_obj_tuple_new(0), "()");
    CHECK_REPR(mproc_obj_list_new(), "[]");
    CHECK_REPR(mproc_obj_dict_new(), "{}");
    CHECK_REPR(mproc_obj_set_new(), "set()");
    CHECK_REPR(mproc_obj_frozenset_new(), "frozenset()");
    mproc_obj *fs = mproc_obj_frozenset_new();
    CHECK_OK(mproc_obj_set_add(fs, mproc_obj_int(1)));
    CHECK_REPR(fs, "frozenset({1})");
    mproc_obj *s = mproc_obj_set_new();
    CHECK_OK(mproc_obj_set_add(s, mproc_obj_str_c("a")));
    CHECK_OK(mproc_obj_set_add(s, mproc_obj_none()));
    CHECK_REPR(s, "{'a', None}");
    CHECK_REPR(mproc_obj_bytearray("\x00\xff'", 3),
               "bytearray(b\"\\x00\\xff\\'\")");
    CHECK_REPR(mproc_obj_bytes("\x00\xff'", 3), "b\"\\x00\\xff'\"");
    CHECK_REPR(mproc_obj_bytearray(NULL, 0), "bytearray(b'')");
    CHECK_REPR(mproc_obj_bytes("'\"\\\t\n\r\x7f", 7),
               "b'\\'\"\\\\\\t\\n\\r\\x7f'");
    CHECK_REPR(mproc_obj_str_c("it's"), "\"it's\"");
    CHECK_REPR(mproc_obj_str_c("'\""), "'\\'\"'");
    CHECK_REPR(mproc_obj_str_c("\x01\x7f\xc2\x80\xc2\xa0\xc2\xa1"),
               "'\\x01\\x7f\\x80\\xa0\xc2\xa1'");
    /* U+200B (Cf), U+2028 (Zl), U+E000 (Co), U+10FFFF (Cn); U+1F600 and
     * U+4E2D print as they are. */
    CHECK_REPR(
        mproc_obj_str_c("\xe2\x80\x8b\xe2\x80\xa8\xee\x80\x80"
                        "\xf4\x8f\xbf\xbf\xf0\x9f\x98\x80\xe4\xb8\xad"),
        "'\\u200b\\u2028\\ue000\\U0010ffff\xf0\x9f\x98\x80\xe4\xb8\xad'");
    CHECK_REPR(mproc_obj_none(), "None");
    CHECK_REPR(mproc_obj_bool(false), "False");
    CHECK_REPR(mproc_obj_int(INT64_MIN), "-9223372036854775808");
    static const struct {
        double d;
        const char *want;
    } floats[] = {
        {0.1, "0.1"},
        {1.0, "1.0"},
        {-0.0, "-0.0"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {1e-4, "0.0001"},
        {1e-5, "1e-05"},
        {2.5e-7, "2.5e-07"},
        {1.5e300, "1.5e+300"},
        {INFINITY, "inf"},
        {-INFINITY, "-inf"},
        {NAN, "nan"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {123456.789, "123456.789"},
        {0.30000000000000004, "0.30000000000000004"},
        {1234567890123456.0, "1234567890123456.0"},
        {12345678901234567.0, "1.2345678901234568e+16"},
    };
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++)
        CHECK_REPR(mproc_obj_float(floats[i].d), floats[i].want);
    CHECK_REPR(mproc_obj_reduce("builtins", "KeyError", mproc_obj_tuple_new(0),
                                NULL, false),
               "KeyError()");
    CHECK_REPR(mproc_obj_reduce("builtins", "OSError",
                                mproc_obj_tuple_of(2, mproc_obj_int(2),
                                                   mproc_obj_str_c("x")),
                                NULL, false),
               "OSError(2, 'x')");
    CHECK_REPR(mproc_obj_reduce("builtins", "set", NULL, NULL, false),
               "<class 'set'>");
    CHECK_REPR(mproc_obj_reduce("a.b", "C", NULL, NULL, false),
               "<class 'a.b.C'>");
}

/* A list nested n deep: [[[...]]]. */
static mproc_obj *nested(size_t n)
{
    mproc_obj *o = mproc_obj_list_new();
    for (size_t i = 0; i < n; i++) {
        mproc_obj *l = mproc_obj_list_new();
        CHECK_OK(mproc_obj_list_append(l, o));
        o = l;
    }
    return o;
}

static void test_deep(void)
{
    /* A million levels free without recursing (ASan's stack would not
     * survive it); printing, hashing, comparing and pickling stop. */
    mproc_obj *o = nested(1000000);
    char *s;
    CHECK_ERR(mproc_obj_repr(o, &s, NULL), -ELOOP);
    CHECK(s == NULL);
    void *b;
    size_t n;
    CHECK_ERR(mproc_pickle_dumps(o, 4, &b, &n), -ELOOP);
    CHECK(b == NULL);
    CHECK_ERR(mproc_obj_eq(o, o) == 1 ? -ELOOP : 0, -ELOOP);
    mproc_obj *o2 = nested(2000);
    mproc_obj *o3 = nested(2000);
    CHECK_ERR(mproc_obj_eq(o2, o3), -ELOOP);
    mproc_obj *t = mproc_obj_tuple_of(1, mproc_obj_int(1));
    for (int i = 0; i < 2000; i++)
        t = mproc_obj_tuple_of(1, t);
    int64_t h;
    CHECK_ERR(mproc_obj_hash(t, &h), -ELOOP);
    mproc_obj *d = mproc_obj_dict_new();
    CHECK_ERR(mproc_obj_dict_set(d, t, mproc_obj_none()), -ELOOP);
    mproc_obj_unref(d);
    mproc_obj_unref(o);
    mproc_obj_unref(o2);
    mproc_obj_unref(o3);
    /* Just under the limit works both ways. */
    o = nested(MPROC_OBJ_MAX_DEPTH - 2);
    CHECK_OK(mproc_pickle_dumps(o, 4, &b, &n));
    mproc_obj *back;
    char err[200];
    CHECK_OK(mproc_pickle_loads(b, n, NULL, &back, err, sizeof err));
    CHECK_EQ(mproc_obj_eq(o, back), 1);
    mproc_obj_unref(back);
    mproc_pickle_limits lim = {.max_depth = 100};
    CHECK_ERR(mproc_pickle_loads(b, n, &lim, &back, err, sizeof err),
              MPROC_EPICKLE);
    CHECK(strstr(err, "nested deeper than 100") != NULL);
    free(b);
    mproc_obj_unref(o);
}

/* ---- the codec -------------------------------------------------------- */

/* A value with every type in it. */
static mproc_obj *sample(void)
{
    mproc_obj *d = mproc_obj_dict_new();
    mproc_obj *l = mproc_obj_list_new();
    for (int i = 0; i < 2500; i++)
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(i * 37 - 40000)));
    CHECK_OK(mproc_obj_list_append(l, big("-9223372036854775809")));
    CHECK_OK(mproc_obj_list_append(l, big("1180591620717411303424")));
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(INT64_MAX)));
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(1LL << 40)));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_str_c("ints"), l));
    char bigtext[300];
    memset(bigtext, '7', 299);
    bigtext[299] = 0;
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_str_c("huge"), big(bigtext)));
    CHECK_OK(
        mproc_obj_dict_set(d, mproc_obj_float(2.5), mproc_obj_float(-0.0)));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_none(), mproc_obj_bool(true)));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_bool(false), mproc_obj_none()));
    CHECK_OK(
        mproc_obj_dict_set(d, mproc_obj_bytes("k\0\xff", 3),
                           mproc_obj_tuple_of(3, mproc_obj_bytes(NULL, 0),
                                              mproc_obj_bytearray("\x80x", 2),
                                              mproc_obj_bytearray(NULL, 0))));
    char text[600];
    memset(text, 'z', 599);
    text[599] = 0;
    CHECK_OK(mproc_obj_dict_set(
        d, mproc_obj_str_c("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xed\xa0\x80"),
        mproc_obj_str_c(text)));
    mproc_obj *s = mproc_obj_set_new(), *fs = mproc_obj_frozenset_new();
    for (int i = 0; i < 1200; i++) {
        CHECK_OK(mproc_obj_set_add(s, mproc_obj_int(i)));
        if (i < 5)
            CHECK_OK(mproc_obj_set_add(fs, mproc_obj_str(text, (size_t)i)));
    }
    CHECK_OK(mproc_obj_dict_set(d, fs, s));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_str_c("es"), mproc_obj_set_new()));
    mproc_obj *t = mproc_obj_tuple_new(5);
    for (size_t i = 0; i < 5; i++)
        CHECK_OK(mproc_obj_tuple_set(t, i, mproc_obj_tuple_new(i)));
    CHECK_OK(mproc_obj_dict_set(d, t, mproc_obj_list_new()));
    CHECK_OK(mproc_obj_dict_set(
        d, mproc_obj_str_c("exc"),
        mproc_obj_reduce(
            "builtins", "ValueError",
            mproc_obj_tuple_of(2, mproc_obj_str_c("bad"), mproc_obj_int(3)),
            NULL, false)));
    char *chunk = calloc(70000, 1);
    CHECK(chunk);
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_str_c("blob"),
                                mproc_obj_bytes(chunk, 70000)));
    free(chunk);
    return d;
}

static void test_roundtrip(void)
{
    mproc_obj *v = sample();
    for (int p = 2; p <= 5; p++) {
        void *b;
        size_t n;
        CHECK_OK(mproc_pickle_dumps(v, p, &b, &n));
        CHECK(((unsigned char *)b)[0] == 0x80 && ((unsigned char *)b)[1] == p);
        mproc_obj *back;
        char err[200];
        int r = mproc_pickle_loads(b, n, NULL, &back, err, sizeof err);
        if (r < 0)
            mproc_test_fail(__FILE__, __LINE__, "protocol %d: %s", p, err);
        CHECK_EQ(mproc_obj_eq(v, back), 1);
        /* The same types, not only equal values: the reprs match. */
        char *r1 = repr_of(v), *r2 = repr_of(back);
        CHECK_STR(r1, r2);
        free(r1);
        free(r2);
        mproc_obj_unref(back);
        free(b);
    }
    void *b;
    size_t n;
    CHECK_ERR(mproc_pickle_dumps(v, 1, &b, &n), -EINVAL);
    CHECK_ERR(mproc_pickle_dumps(v, 6, &b, &n), -EINVAL);
    CHECK_ERR(mproc_pickle_dumps(NULL, 4, &b, &n), -EINVAL);
    CHECK_OK(mproc_pickle_dumps(v, -1, &b, &n));
    CHECK(((unsigned char *)b)[1] == 5);
    free(b);
    mproc_obj_unref(v);
    /* The bytes docs/wire.md shows for b'abc'. */
    v = mproc_obj_bytes("abc", 3);
    CHECK_OK(mproc_pickle_dumps(v, 4, &b, &n));
    CHECK_EQ(n, 8);
    CHECK(memcmp(b, "\x80\x04\x43\x03\x61\x62\x63\x2e", 8) == 0);
    free(b);
    mproc_obj_unref(v);
}

/* Pickles CPython wrote (pickle.dumps, the protocol noted), and the
 * repr Python prints for them. */
static const struct {
    const char *what;
    const char *bytes;
    size_t len;
    const char *repr;
} cpython[] = {
#define P(what, b, r)                                                          \
    {                                                                          \
        what, b, sizeof(b) - 1, r                                              \
    }
    P("3.13 p5 dict",
      "\x80\x05\x95\x17\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01"
      "a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00"
      "es.",
      "{'a': [1, 2.5]}"),
    P("2.7 p2 set",
      "\x80\x02"
      "c__builtin__\nset\nq\x00]q\x01K\x01"
      "a\x85q\x02"
      "Rq\x03.",
      "{1}"),
    P("3.13 p0 bytes",
      "c_codecs\nencode\np0\n(V\xff\np1\nVlatin1\np2\ntp3\nRp4\n"
      ".",
      "b'\\xff'"),
    P("2.7 p0 tuple", "(V\\u20ac\np0\nS'x'\np1\nL10L\ntp2\n.",
      "('\xe2\x82\xac', b'x', 10)"),
    P("2.7 p1 tuple",
      "(I01\nL18446744073709551616L\nG?\xf8\x00\x00\x00\x00\x00"
      "\x00]q\x00Natq\x01.",
      "(True, 18446744073709551616, 1.5, [None])"),
    P("3.13 p2 bytearray",
      "\x80\x02"
      "c__builtin__\nbytearray\nq\x00"
      "c_codecs\nenco"
      "de\nq\x01X\x02\x00\x00\x00\xc3\xbfq\x02X\x06\x00\x00\x00"
      "latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.",
      "bytearray(b'\\xff')"),
    P("3.13 p4 frozenset",
      "\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02\x91"
      "\x94.",
      "frozenset({1, 2})"),
    P("3.13 p4 KeyError",
      "\x80\x04\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "built"
      "ins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94"
      "R\x94.",
      "KeyError('k')"),
    P("3.13 p3 exc state",
      "\x80\x03"
      "cbuiltins\nValueError\nq\x00X\x01\x00\x00\x00x"
      "q\x01\x85q\x02Rq\x03.",
      "ValueError('x')"),
    P("3.13 p2 Token",
      "\x80\x02"
      "cmultiprocessing.managers\nToken\nq\x00)\x81q\x01"
      "X\x04\x00\x00\x00"
      "dictq\x02X\x09\x00\x00\x00"
      "127.0.0.1"
      "q\x03M\x88\x13\x86q\x04X\x02\x00\x00\x00"
      "7fq\x05\x87q\x06"
      "b.",
      "Token()"),
    P("3.13 p0 Token",
      "ccopy_reg\n_reconstructor\np0\n(cmultiprocessing.manager"
      "s\nToken\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n(Vdic"
      "t\np5\n(V127.0.0.1\np6\nI5000\ntp7\nV7f\np8\ntp9\nb.",
      "Token()"),
    P("3.13 p4 array",
      "\x80\x04\x95J\x00\x00\x00\x00\x00\x00\x00\x8c\x05"
      "array"
      "\x94\x8c\x14_array_reconstructor\x94\x93\x94(\x8c\x05"
      "a"
      "rray\x94\x8c\x05"
      "array\x94\x93\x94\x8c\x01i\x94K\x08"
      "C"
      "\x08\x01\x00\x00\x00\x02\x00\x00\x00\x94t\x94R\x94.",
      "_array_reconstructor(<class 'array.array'>, 'i', 8, "
      "b'\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x00')"),
    P("3.13 p2 array",
      "\x80\x02"
      "carray\narray\nq\x00X\x01\x00\x00\x00iq\x01]q\x02"
      "(K\x01K\x02"
      "e\x86q\x03Rq\x04.",
      "array('i', [1, 2])"),
    P("3.13 p4 exc dict",
      "\x80\x04\x95"
      "0\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "bui"
      "ltins\x94\x8c\nValueError\x94\x93\x94\x8c\x01v\x94\x85\x94"
      "R\x94}\x94\x8c\x04note\x94K\x01sb.",
      "ValueError('v')"),
    P("3.13 p4 range",
      "\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "builtins\x94\x8c\x05range\x94\x93\x94K\x00K\x0aK\x01\x87\x94R\x94.",
      "range(0, 10, 1)"),
    P("3.13 p0 range",
      "c__builtin__\x0axrange\x0ap0\x0a(I1\x0aI9\x0aI2\x0atp1\x0aRp2\x0a.",
      "range(1, 9, 2)"),
    P("3.13 p4 dict keys (a manager's)",
      "\x80\x04\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "builtins\x94\x8c\x04list\x94\x93\x94]\x94(K\x01K\x03"
      "e\x85\x94R\x94.",
      "[1, 3]"),
    P("3.13 p4 BrokenBarrierError",
      "\x80\x04\x95'\x00\x00\x00\x00\x00\x00\x00\x8c\tthreading\x94"
      "\x8c\x12"
      "BrokenBarrierError\x94\x93\x94)R\x94.",
      "BrokenBarrierError()"),
    P("3.13 p4 slice",
      "\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x08"
      "builtins\x94\x8c\x05slice\x94\x93\x94K\x00K\x02N\x87\x94R\x94.",
      "slice(0, 2, None)"),
    P("3.13 p2 slice",
      "\x80\x02"
      "c__builtin__\x0aslice\x0aq\x00NNJ\xff\xff\xff\xff\x87q\x01Rq\x02.",
      "slice(None, None, -1)"),
    P("3.13 p4 queue.Empty",
      "\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x06_queue\x94\x8c\x05"
      "Empty\x94\x93\x94)R\x94.",
      "Empty()"),
    P("3.13 p2 queue.Full",
      "\x80\x02"
      "cQueue\x0a"
      "Full\x0aq\x00)Rq\x01.",
      "Full()"),
    P("3.13 p4 RebuildProxy",
      "\x80\x04\x95|\x00\x00\x00\x00\x00\x00\x00\x8c\x18multiprocessing."
      "managers\x94\x8c\x0cRebuildProxy\x94\x93\x94(h\x00\x8c\x09"
      "DictProxy\x94\x93\x94h\x00\x8c\x05Token\x94\x93\x94)\x81\x94\x8c\x04"
      "dict\x94\x8c\x09"
      "127.0.0.1\x94M\x88\x13\x86\x94\x8c\x02"
      "7f\x94\x87\x94"
      "b\x8c\x06pickle\x94}\x94t\x94R\x94.",
      "RebuildProxy(<class 'multiprocessing.managers.DictProxy'>, Token(), "
      "'pickle', {})"),
    P("3.13 p2 RebuildProxy AutoProxy",
      "\x80\x02"
      "cmultiprocessing.managers\x0aRebuildProxy\x0aq\x00(cmultiprocessing."
      "managers\x0a"
      "AutoProxy\x0aq\x01"
      "cmultiprocessing.managers\x0aToken\x0aq\x02)\x81q\x03X\x04\x00\x00\x00"
      "dictq\x04X\x09\x00\x00\x00"
      "127.0.0.1q\x05M\x88\x13\x86q\x06X\x02\x00\x00\x00"
      "7fq\x07\x87q\x08"
      "bX\x06\x00\x00\x00pickleq\x09}q\x0aX\x07\x00\x00\x00"
      "exposedq\x0bX\x03\x00\x00\x00getq\x0c\x85q\x0dstq\x0eRq\x0f.",
      "RebuildProxy(<class 'multiprocessing.managers.AutoProxy'>, Token(), "
      "'pickle', {'exposed': ('get',)})"),
#undef P
};

static void test_cpython_bytes(void)
{
    for (size_t i = 0; i < sizeof cpython / sizeof *cpython; i++) {
        mproc_obj *o;
        char err[200];
        int r = mproc_pickle_loads(cpython[i].bytes, cpython[i].len, NULL, &o,
                                   err, sizeof err);
        if (r < 0)
            mproc_test_fail(__FILE__, __LINE__, "%s: %s", cpython[i].what, err);
        char *s = repr_of(o);
        if (strcmp(s, cpython[i].repr) != 0)
            mproc_test_fail(__FILE__, __LINE__, "%s: %s", cpython[i].what, s);
        free(s);
        mproc_obj_unref(o);
    }
}

static int loads_err(const void *b, size_t n, const mproc_pickle_limits *lim,
                     char *err, size_t cap)
{
    mproc_obj *o = (mproc_obj *)1;
    int r = mproc_pickle_loads(b, n, lim, &o, err, cap);
    if (r == 0)
        mproc_obj_unref(o);
    else
        CHECK(o == NULL);
    return r;
}

#define CHECK_REFUSED(bytes, msg)                                              \
    do {                                                                       \
        char e_[256];                                                          \
        CHECK_ERR(loads_err(bytes, sizeof(bytes) - 1, NULL, e_, sizeof e_),    \
                  MPROC_EPICKLE);                                              \
        if (!strstr(e_, msg))                                                  \
            mproc_test_fail(__FILE__, __LINE__, "message \"%s\" lacks %s", e_, \
                            msg);                                              \
    } while (0)

static void test_hostile(void)
{
    /* Code: globals outside the allow-list, whatever the opcode. */
    CHECK_REFUSED("cos\nsystem\n(S'echo hi'\ntR.", "global os.system");
    CHECK_REFUSED("\x80\x04\x8c\x02os\x8c\x06system\x93.", "global os.system");
    CHECK_REFUSED("c__builtin__\neval\n.", "global builtins.eval");
    CHECK_REFUSED("cbuiltins\ngetattr\n.", "global builtins.getattr");
    /* Allowed globals on shapes CPython never writes. */
    CHECK_REFUSED("c__builtin__\nset\n(I1\nI2\ntR.", "REDUCE on builtins.set");
    CHECK_REFUSED("\x80\x02"
                  "c_codecs\nencode\nX\x01\x00\x00\x00"
                  "aX\x05\x00\x00"
                  "\x00utf-8\x86R.",
                  "REDUCE on _codecs.encode");
    CHECK_REFUSED("\x80\x02"
                  "cmultiprocessing.managers\nToken\n)R.",
                  "REDUCE on multiprocessing.managers.Token");
    CHECK_REFUSED("\x80\x02N)R.", "REDUCE on a NoneType");
    /* list: of one list or tuple */
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nlist\nK\x01\x85R.",
                  "REDUCE on builtins.list");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nlist\n)\x81.",
                  "NEWOBJ on builtins.list");
    /* range and slice: three ints (or Nones for a slice), step not 0. */
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nrange\nK\x00K\x05K\x00\x87R.",
                  "REDUCE on builtins.range");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nrange\nK\x00K\x05\x86R.",
                  "REDUCE on builtins.range");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nrange\nK\x00NK\x01\x87R.",
                  "REDUCE on builtins.range");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nrange\nK\x00K\x05K\x01\x87\x81.",
                  "NEWOBJ on builtins.range");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nslice\nK\x00X\x01\x00\x00\x00"
                  "aN\x87R.",
                  "REDUCE on builtins.slice");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nslice\nNNG?\xf0\x00\x00\x00\x00\x00\x00\x87R.",
                  "REDUCE on builtins.slice");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nrange\nK\x00K\x05K\x01\x87R}b.",
                  "BUILD on");
    /* queue's other names stay off the list. */
    CHECK_REFUSED("\x80\x02"
                  "cqueue\nQueue\n)R.",
                  "global queue.Queue");
    /* RebuildProxy: a proxy class of the module, a built Token, a str,
     * a dict; the proxy classes are usable only there. */
    CHECK_REFUSED("\x80\x02"
                  "cmultiprocessing.managers\nRebuildProxy\n"
                  "(cbuiltins\nValueError\n"
                  "cmultiprocessing.managers\nToken\n)\x81)b"
                  "X\x06\x00\x00\x00pickle}tR.",
                  "REDUCE on multiprocessing.managers.RebuildProxy");
    CHECK_REFUSED("\x80\x02"
                  "cmultiprocessing.managers\nRebuildProxy\n"
                  "(cmultiprocessing.managers\nDictProxy\n"
                  "cmultiprocessing.managers\nToken\n)\x81"
                  "X\x06\x00\x00\x00pickle}tR.",
                  "REDUCE on multiprocessing.managers.RebuildProxy");
    CHECK_REFUSED("\x80\x02"
                  "cmultiprocessing.managers\nRebuildProxy\n"
                  "(cmultiprocessing.managers\nDictProxy\n"
                  "cmultiprocessing.managers\nToken\n)\x81)b"
                  "X\x06\x00\x00\x00pickle]tR.",
                  "REDUCE on multiprocessing.managers.RebuildProxy");
    CHECK_REFUSED("\x80\x02"
                  "cmultiprocessing.managers\nDictProxy\n)R.",
                  "REDUCE on multiprocessing.managers.DictProxy");
    CHECK_REFUSED("\x80\x02"
                  "cmultiprocessing.managers\nBaseManager\n)R.",
                  "global multiprocessing.managers.BaseManager");
    CHECK_REFUSED("\x80\x02]Nb.", "BUILD on list");
    CHECK_REFUSED("\x80\x02"
                  "cbuiltins\nValueError\n)R}b}b.",
                  "BUILD on");
    /* Opcodes that reach code or outside data. */
    CHECK_REFUSED("P1\n.", "PERSID");
    CHECK_REFUSED("\x80\x02K\x01Q.", "BINPERSID");
    CHECK_REFUSED("\x80\x02\x82\x01.", "EXT1");
    CHECK_REFUSED("(i__main__\nC\n.", "INST");
    CHECK_REFUSED("\x80\x05\x97.", "NEXT_BUFFER");
    CHECK_REFUSED("\x80\x02\xff.", "unknown opcode");
    CHECK_REFUSED("\x80\x06N.", "protocol 6");
    /* Malformed. */
    CHECK_REFUSED("", "no STOP");
    CHECK_REFUSED("\x80\x04N", "no STOP");
    CHECK_REFUSED(".", "empty stack");
    CHECK_REFUSED("\x80\x04"
                  "a.",
                  "stack underflow");
    CHECK_REFUSED("\x80\x04"
                  "e.",
                  "MARK");
    CHECK_REFUSED("\x80\x04(K\x01K\x02u.", "SETITEMS");
    CHECK_REFUSED("\x80\x04X\x02\x00\x00\x00\xc3(.", "not UTF-8");
    CHECK_REFUSED("\x80\x04h\x05.", "memo key 5");
    CHECK_REFUSED("\x80\x04}]K\x01s.", "unhashable dict key (list)");
    CHECK_REFUSED("\x80\x04\x8f(]\x90.", "unhashable set item");
    /* Huge lengths: refused before anything is allocated. */
    CHECK_REFUSED("\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x40.", "announced");
    CHECK_REFUSED("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.", "announced");
    CHECK_REFUSED("\x80\x04X\xff\xff\xff\xff.", "truncated");
    CHECK_REFUSED("\x80\x04\x8b\xff\xff\xff\xff.", "negative length");
    CHECK_REFUSED("\x80\x04T\xff\xff\xff\xff.", "negative length");
    CHECK_REFUSED("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7fN.", "FRAME");
    /* Memo: a far index is refused, not allocated. */
    CHECK_REFUSED("\x80\x04Nr\xff\xff\xff\xff.", "memo index 4294967295");
    CHECK_REFUSED("Np99999999999999999999\n.", "memo index");
    /* A value that contains itself. */
    CHECK_REFUSED("\x80\x04]\x94h\x00"
                  "a.",
                  "contains itself");
    CHECK_REFUSED("\x80\x04}\x94K\x01]\x94h\x00"
                  "as.",
                  "contains itself");
    CHECK_REFUSED("\x80\x04]\x94h\x00\x85\x94"
                  "a.",
                  "contains itself");
    /* ...or grows after it was memoized, through another container. */
    CHECK_REFUSED("\x80\x04]\x94]\x94h\x00"
                  "ah\x00h\x01"
                  "a0.",
                  "contains itself");
    /* A cycle left outside the value returned (a list appended to itself,
     * popped, then 7 returned) decodes as Python does, and is freed (the
     * harness's leak check fails the case otherwise). */
    {
        mproc_obj *o = NULL;
        int64_t v = 0;
        CHECK_OK(mproc_pickle_loads("\x80\x02]q\x00(h\x00"
                                    "e0K\x07.",
                                    13, NULL, &o, NULL, 0));
        CHECK_OK(mproc_obj_int_value(o, &v));
        CHECK_EQ(v, 7);
        mproc_obj_unref(o);
    }
    /* A value whose parts are shared, 40 deep: its text would be 2^40
     * items long; repr refuses it at 64 MiB instead of running for hours
     * (from a small pickle a peer can send). */
    {
        mproc_obj *l = mproc_obj_list_new();
        for (int i = 0; i < 40; i++)
            l = mproc_obj_tuple_of(2, mproc_obj_ref(l), l);
        CHECK(l != NULL);
        char *text = (char *)1;
        CHECK_ERR(mproc_obj_repr(l, &text, NULL), -E2BIG);
        CHECK(text == NULL);
        mproc_obj_unref(l);
    }
    /* Trailing bytes after STOP are ignored, as Python does. */
    char err[200];
    CHECK_OK(loads_err("N.garbage", 9, NULL, err, sizeof err));
    CHECK_ERR(loads_err(NULL, 3, NULL, err, sizeof err), -EINVAL);
    /* A NULL or short err buffer is fine. */
    CHECK_ERR(loads_err("x", 1, NULL, NULL, 0), MPROC_EPICKLE);
    CHECK_ERR(loads_err("x", 1, NULL, err, 4), MPROC_EPICKLE);
    CHECK_EQ(strlen(err), 3);
}

static void test_bombs(void)
{
    char err[256];
    /* Depth: a million MARKs, or EMPTY_LISTs appended into each other
     * through the memo (the stack stays two deep, the value grows). */
    size_t n = 1000000;
    unsigned char *b = malloc(8 * n + 16), *p = b;
    CHECK(b);
    *p++ = 0x80;
    *p++ = 4;
    memset(p, '(', n);
    p += n;
    *p++ = '.';
    double t0 = mproc_test_now();
    CHECK_ERR(loads_err(b, (size_t)(p - b), NULL, err, sizeof err),
              MPROC_EPICKLE);
    p = b + 2;
    *p++ = ']';
    *p++ = 0x94; /* memo 0 */
    for (size_t i = 1; i < 5000; i++) {
        *p++ = ']'; /* a new list */
        *p++ = 'h'; /* the previous one */
        *p++ = (unsigned char)((i - 1) & 0xff);
        *p++ = 'a'; /* new.append(previous) */
        *p++ = 'q'; /* memo i = new */
        *p++ = (unsigned char)(i & 0xff);
        *p++ = '0'; /* pop */
        *p++ = 'h';
        *p++ = (unsigned char)(i & 0xff);
        *p++ = '0';
    }
    *p++ = 'h';
    *p++ = (unsigned char)(4999 & 0xff);
    *p++ = '.';
    CHECK_ERR(loads_err(b, (size_t)(p - b), NULL, err, sizeof err),
              MPROC_EPICKLE);
    CHECK(strstr(err, "nested deeper") != NULL);
    /* Memory: a list of one 1 MiB string a million times through the
     * memo costs a slot each; a small limit stops it. */
    p = b;
    *p++ = 0x80;
    *p++ = 4;
    *p++ = ']';
    *p++ = '(';
    for (size_t i = 0; i < n; i++)
        *p++ = 'N';
    *p++ = 'e';
    *p++ = '.';
    mproc_pickle_limits lim = {.max_bytes = 1 << 20};
    CHECK_ERR(loads_err(b, (size_t)(p - b), &lim, err, sizeof err),
              MPROC_EPICKLE);
    CHECK(strstr(err, "memory limit") != NULL);
    CHECK_OK(loads_err(b, (size_t)(p - b), NULL, err, sizeof err));
    /* Memo: many entries past a small limit. */
    lim = (mproc_pickle_limits){.max_memo = 100};
    p = b;
    *p++ = 0x80;
    *p++ = 4;
    for (int i = 0; i < 200; i++) {
        *p++ = 'N';
        *p++ = 0x94;
    }
    *p++ = '.';
    CHECK_ERR(loads_err(b, (size_t)(p - b), &lim, err, sizeof err),
              MPROC_EPICKLE);
    CHECK(strstr(err, "memo index 100") != NULL);
    free(b);
    CHECK(mproc_test_now() - t0 < 20);
}

/* Every prefix of every pickle fails cleanly; flipped bytes never crash. */
static void test_truncation_and_flips(void)
{
    mproc_obj *v = sample();
    mproc_obj *small = mproc_obj_list_new();
    for (size_t i = 0; i < mproc_obj_len(v); i++) {
        mproc_obj *k, *val;
        CHECK_OK(mproc_obj_dict_item(v, i, &k, &val));
        if (mproc_obj_len(val) < 50 && mproc_obj_len(k) < 50)
            CHECK_OK(mproc_obj_list_append(small, mproc_obj_ref(val)));
    }
    mproc_obj_unref(v);
    char err[256];
    unsigned seed = 12345;
    for (int p = 2; p <= 5; p++) {
        void *b;
        size_t n;
        CHECK_OK(mproc_pickle_dumps(small, p, &b, &n));
        for (size_t k = 0; k < n; k++)
            CHECK_ERR(loads_err(b, k, NULL, err, sizeof err), MPROC_EPICKLE);
        CHECK_OK(loads_err(b, n, NULL, err, sizeof err));
        unsigned char *c = malloc(n);
        CHECK(c);
        for (int round = 0; round < 3000; round++) {
            memcpy(c, b, n);
            for (int f = 0; f < 1 + round % 4; f++) {
                seed = seed * 1103515245 + 12345;
                c[(seed >> 8) % n] = (unsigned char)(seed >> 20);
            }
            int r = loads_err(c, n, NULL, err, sizeof err);
            CHECK(r == 0 || r == MPROC_EPICKLE);
            CHECK(r == 0 || err[0] != 0);
        }
        free(c);
        free(b);
    }
    mproc_obj_unref(small);
}

/* Decoded leaves share memory blocks: one kept alive outlives the rest,
 * and values dropped in other threads at once free each block once. */
typedef struct dropper {
    mproc_obj *l;
    long sum;
} dropper;

static void *drop_thread(void *arg)
{
    dropper *d = arg;
    for (size_t i = 0; i < mproc_obj_len(d->l); i++) {
        int64_t v;
        if (mproc_obj_int_value(mproc_obj_item(d->l, i), &v) == 0)
            d->sum += v;
    }
    mproc_obj_unref(d->l);
    return NULL;
}

static void test_shared_blocks(void)
{
    mproc_obj *l = mproc_obj_list_new();
    for (int i = 0; i < 50000; i++) {
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(i)));
        if (i % 7 == 0)
            CHECK_OK(mproc_obj_list_append(l, mproc_obj_str_c("seven")));
    }
    void *b;
    size_t n;
    CHECK_OK(mproc_pickle_dumps(l, 4, &b, &n));
    mproc_obj_unref(l);
    for (int round = 0; round < 20; round++) {
        mproc_obj *o;
        char err[200];
        CHECK_OK(mproc_pickle_loads(b, n, NULL, &o, err, sizeof err));
        mproc_obj *keep = mproc_obj_ref(mproc_obj_item(o, 2)); /* 1 */
        mproc_obj *last =
            mproc_obj_ref(mproc_obj_item(o, mproc_obj_len(o) - 1));
        dropper d1 = {mproc_obj_ref(o), 0}, d2 = {o, 0};
        pthread_t t1, t2;
        CHECK(pthread_create(&t1, NULL, drop_thread, &d1) == 0);
        CHECK(pthread_create(&t2, NULL, drop_thread, &d2) == 0);
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        CHECK(d1.sum == d2.sum && d1.sum == 49999L * 50000 / 2);
        int64_t v;
        CHECK_OK(mproc_obj_int_value(keep, &v)); /* its block still there */
        CHECK_EQ(v, 1);
        CHECK_OK(mproc_obj_int_value(last, &v));
        CHECK_EQ(v, 49999);
        mproc_obj_unref(last);
        mproc_obj_unref(keep);
    }
    free(b);
}

/* ---- against CPython -------------------------------------------------- */

/* Runs python with args; its output goes to out (a file). Returns its
 * exit status. */
static int run_python(const char *python, const char *const *args,
                      const char *out)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            mproc_test_exit(126);
        const char *argv[12] = {python, mproc_test_py_script("pickle_peer.py")};
        for (int i = 0; args[i] && i < 9; i++)
            argv[i + 2] = args[i];
        execv(python, (char *const *)argv);
        mproc_test_exit(127);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    size_t cap = 1 << 16;
    unsigned char *b = malloc(cap);
    *n = 0;
    size_t k;
    while (b && (k = fread(b + *n, 1, cap - *n, f)) > 0) {
        *n += k;
        if (*n == cap)
            b = realloc(b, cap *= 2);
    }
    fclose(f);
    CHECK(b != NULL);
    return b;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static const char *const versions[] = {"2.7",  "3.6",  "3.7",  "3.8", "3.9",
                                       "3.10", "3.11", "3.12", "3.13"};

static void test_cpython_property(void)
{
    char dir[] = "/tmp/mproc-pickle-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char in[600], out[600], log[600];
    snprintf(in, sizeof in, "%s/from_python", dir);
    snprintf(out, sizeof out, "%s/from_mproc", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    int ran = 0, values = 0;
    for (size_t v = 0; v < sizeof versions / sizeof *versions; v++) {
        const char *python = mproc_test_python(versions[v]);
        if (!python)
            continue;
        ran++;
        bool py2 = versions[v][0] == '2';
        int highest = py2 ? 2 : strcmp(versions[v], "3.8") < 0 ? 4 : 5;
        for (int proto = 0; proto <= highest; proto++) {
            char seed[16], protos[4];
            snprintf(seed, sizeof seed, "%d", (int)(v * 10 + (size_t)proto));
            snprintf(protos, sizeof protos, "%d", proto);
            const char *gen[] = {"gen", seed, "250", protos, NULL};
            CHECK_EQ(run_python(python, gen, in), 0);
            size_t n;
            unsigned char *b = slurp(in, &n);
            FILE *f = fopen(out, "wb");
            CHECK(f != NULL);
            /* Frames: u32 pickle length, pickle, u32 repr length, repr. */
            bool check_repr = strcmp(versions[v], "3.13") == 0;
            for (size_t at = 0; at < n;) {
                CHECK(n - at >= 4);
                uint32_t pl = rd32(b + at);
                CHECK(n - at - 4 >= pl + 4);
                const unsigned char *pk = b + at + 4;
                uint32_t rl = rd32(pk + pl);
                const char *rp = (const char *)pk + pl + 4;
                at += 8 + (size_t)pl + rl;
                mproc_obj *o;
                char err[256];
                int r = mproc_pickle_loads(pk, pl, NULL, &o, err, sizeof err);
                if (r < 0)
                    mproc_test_fail(__FILE__, __LINE__,
                                    "%s protocol %d value %d: %s", python,
                                    proto, values, err);
                if (check_repr && rl) {
                    char *s = repr_of(o);
                    if (strlen(s) != rl || memcmp(s, rp, rl) != 0)
                        mproc_test_fail(__FILE__, __LINE__,
                                        "repr differs:\n mproc  %s\n python "
                                        "%.*s",
                                        s, (int)rl, rp);
                    free(s);
                }
                void *back;
                size_t bl;
                int outp = proto < 2 ? 2 : proto;
                CHECK_OK(mproc_pickle_dumps(o, outp, &back, &bl));
                /* decode -> encode -> decode is stable */
                mproc_obj *again;
                CHECK_OK(mproc_pickle_loads(back, bl, NULL, &again, err,
                                            sizeof err));
                CHECK_EQ(mproc_obj_eq(o, again), 1);
                mproc_obj_unref(again);
                uint32_t l32 = (uint32_t)bl;
                CHECK(fwrite(&l32, 4, 1, f) == 1);
                CHECK(fwrite(back, 1, bl, f) == bl);
                free(back);
                mproc_obj_unref(o);
                values++;
            }
            fclose(f);
            free(b);
            const char *check[] = {"check", seed, "250", protos, out, NULL};
            if (run_python(python, check, log) != 0) {
                size_t ln;
                char *msg = (char *)slurp(log, &ln);
                mproc_test_fail(__FILE__, __LINE__, "%s protocol %d: %.*s",
                                python, proto, (int)ln, msg);
            }
        }
    }
    unlink(in);
    unlink(out);
    unlink(log);
    rmdir(dir);
    if (!ran)
        SKIP("no CPython in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
    printf("  %d values from %d interpreters\n", values, ran);
}

/* ---- shared parts and the memo ---------------------------------------- */

/* t = (1, 2), then t = (t, t) levels times: 2^levels leaves, levels + 1
 * objects. */
static mproc_obj *doubled(int levels)
{
    mproc_obj *t = mproc_obj_tuple_of(2, mproc_obj_int(1), mproc_obj_int(2));
    for (int i = 0; i < levels; i++)
        t = mproc_obj_tuple_of(2, t, mproc_obj_ref(t));
    CHECK(t != NULL);
    return t;
}

/* Shared tuples nested 40 deep dump in linear time and size (each written
 * once, fetched from the memo after) under every protocol, decode to the
 * same sharing, and dump again to the same bytes. Without the memo this
 * writes 2^40 leaves: the case times out. */
static void test_shared_dumps(void)
{
    mproc_obj *t = doubled(40);
    char *s;
    CHECK_ERR(mproc_obj_repr(t, &s, NULL), -E2BIG); /* its text is 2^40 */
    for (int p = 2; p <= 5; p++) {
        void *b, *b2;
        size_t n, n2;
        CHECK_OK(mproc_pickle_dumps(t, p, &b, &n));
        CHECK(n < 400);
        mproc_obj *back;
        char err[200];
        CHECK_OK(mproc_pickle_loads(b, n, NULL, &back, err, sizeof err));
        const mproc_obj *o = back;
        for (int i = 0; i < 40; i++) {
            CHECK_EQ(mproc_obj_len(o), 2);
            CHECK(mproc_obj_item(o, 0) == mproc_obj_item(o, 1)); /* shared */
            o = mproc_obj_item(o, 0);
        }
        char *leaf = repr_of(o);
        CHECK_STR(leaf, "(1, 2)");
        free(leaf);
        CHECK_OK(mproc_pickle_dumps(back, p, &b2, &n2));
        CHECK(n2 == n && memcmp(b, b2, n) == 0);
        free(b2);
        mproc_obj_unref(back);
        free(b);
    }
    mproc_obj_unref(t);
    /* A value with no shared part is written as before: no memo opcode. */
    mproc_obj *x = mproc_obj_str_c("ab");
    mproc_obj *l = mproc_obj_list_new();
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_tuple_of(1, mproc_obj_ref(x))));
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_str_c("ab")));
    void *b;
    size_t n;
    CHECK_OK(mproc_pickle_dumps(l, 4, &b, &n));
    static const char plain[] = "\x80\x04](\x8c\x02"
                                "ab\x85\x8c\x02"
                                "abe.";
    CHECK(n == sizeof plain - 1 && memcmp(b, plain, n) == 0);
    free(b);
    /* The same str object twice: written once, then fetched. */
    CHECK_OK(mproc_obj_list_append(l, x));
    CHECK_OK(mproc_pickle_dumps(l, 2, &b, &n));
    static const char memo[] = "\x80\x02](X\x02\x00\x00\x00"
                               "abq\x00\x85X\x02\x00\x00\x00"
                               "abh\x00"
                               "e.";
    CHECK(n == sizeof memo - 1 && memcmp(b, memo, n) == 0);
    free(b);
    mproc_obj_unref(l);
    /* A tuple put into itself (CPython cannot make one) stops at the
     * depth limit, memo or not. */
    mproc_obj *self = mproc_obj_tuple_new(1);
    CHECK_OK(mproc_obj_tuple_set(self, 0, mproc_obj_ref(self)));
    CHECK_ERR(mproc_pickle_dumps(self, 4, &b, &n), -ELOOP);
    CHECK(b == NULL);
    CHECK_OK(mproc_obj_tuple_set(self, 0, mproc_obj_none()));
    mproc_obj_unref(self);
}

/* The values of pickle_peer.py's shared_values(), in its order; *cut
 * gets the containers whose first item closes a cycle (to break it). */
static size_t shared_values(int proto, mproc_obj **v, mproc_obj **cut)
{
    size_t k = 0;
    v[k++] = doubled(40);
    mproc_obj *x = mproc_obj_str_c("ab");
    mproc_obj *l = mproc_obj_list_new(), *d = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_ref(x)));
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_ref(x), mproc_obj_ref(x)));
    v[k++] = mproc_obj_tuple_of(4, mproc_obj_ref(x), x, l, d);
    l = mproc_obj_list_new();
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(1)));
    d = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_str_c("k"), mproc_obj_ref(l)));
    mproc_obj *o = mproc_obj_list_new();
    CHECK_OK(mproc_obj_list_append(o, mproc_obj_ref(l)));
    CHECK_OK(mproc_obj_list_append(o, mproc_obj_ref(l)));
    CHECK_OK(mproc_obj_list_append(o, mproc_obj_tuple_of(1, l)));
    CHECK_OK(mproc_obj_list_append(o, d));
    v[k++] = o;
    /* Tuples that contain themselves through a list: t = ([t], 7),
     * t = (1, 2, [t], 3), l = [(l,)], and through a dict. */
    l = cut[0] = mproc_obj_list_new();
    v[k++] = mproc_obj_tuple_of(2, l, mproc_obj_int(7));
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_ref(v[k - 1])));
    l = cut[1] = mproc_obj_list_new();
    v[k++] = mproc_obj_tuple_of(4, mproc_obj_int(1), mproc_obj_int(2), l,
                                mproc_obj_int(3));
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_ref(v[k - 1])));
    l = cut[2] = v[k++] = mproc_obj_list_new();
    CHECK_OK(mproc_obj_list_append(l, mproc_obj_tuple_of(1, mproc_obj_ref(l))));
    d = cut[3] = mproc_obj_dict_new();
    v[k++] = mproc_obj_tuple_of(2, d, mproc_obj_ref(d));
    CHECK_OK(
        mproc_obj_dict_set(d, mproc_obj_str_c("t"), mproc_obj_ref(v[k - 1])));
    if (proto >= 4) {
        mproc_obj *fs = mproc_obj_frozenset_new(), *st = mproc_obj_set_new();
        CHECK_OK(mproc_obj_set_add(fs, mproc_obj_int(1)));
        CHECK_OK(mproc_obj_set_add(st, mproc_obj_int(2)));
        v[k++] =
            mproc_obj_tuple_of(4, fs, mproc_obj_ref(fs), st, mproc_obj_ref(st));
    }
    return k;
}

/* mproc writes what CPython writes for values with shared parts, byte
 * for byte, once CPython's unused PUTs are dropped and its frames taken
 * out (pickletools.optimize: mproc memoizes only what is fetched again),
 * for every installed CPython 3.6+ and protocol 2 to its highest; the
 * tuples that contain themselves take CPython's POP / POP_MARK + BINGET
 * path. mproc reads the shared ones back and refuses those that contain
 * themselves. */
static void test_shared_cpython(void)
{
    char dir[] = "/tmp/mproc-pickle-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char out[600];
    snprintf(out, sizeof out, "%s/shared", dir);
    int ran = 0;
    for (size_t ver = 1; ver < sizeof versions / sizeof *versions; ver++) {
        const char *python = mproc_test_python(versions[ver]);
        if (!python)
            continue;
        ran++;
        int highest = strcmp(versions[ver], "3.8") < 0 ? 4 : 5;
        for (int proto = 2; proto <= highest; proto++) {
            char protos[4];
            snprintf(protos, sizeof protos, "%d", proto);
            const char *args[] = {"shared", protos, NULL};
            CHECK_EQ(run_python(python, args, out), 0);
            size_t n, at = 0;
            unsigned char *py = slurp(out, &n);
            mproc_obj *v[16], *cut[4];
            size_t k = shared_values(proto, v, cut);
            for (size_t i = 0; i < k; i++) {
                CHECK(n - at >= 4);
                uint32_t pl = rd32(py + at);
                CHECK(n - at - 4 >= pl);
                void *b;
                size_t bl;
                CHECK_OK(mproc_pickle_dumps(v[i], proto, &b, &bl));
                if (bl != pl || memcmp(b, py + at + 4, pl) != 0)
                    mproc_test_fail(__FILE__, __LINE__,
                                    "%s protocol %d value %zu: %zu bytes, "
                                    "CPython's %u differ",
                                    python, proto, i, bl, pl);
                at += 4 + pl;
                mproc_obj *back;
                char err[200];
                int r = mproc_pickle_loads(b, bl, NULL, &back, err, sizeof err);
                if (i >= 3 && i <= 6) {
                    CHECK_ERR(r, MPROC_EPICKLE);
                    CHECK(strstr(err, "contains itself") != NULL);
                } else {
                    CHECK_OK(r);
                    mproc_obj_unref(back);
                }
                free(b);
            }
            CHECK_EQ(at, n);
            free(py);
            CHECK_OK(mproc_obj_list_set(cut[0], 0, mproc_obj_none()));
            CHECK_OK(mproc_obj_list_set(cut[1], 0, mproc_obj_none()));
            CHECK_OK(mproc_obj_list_set(cut[2], 0, mproc_obj_none()));
            mproc_obj *key = mproc_obj_str_c("t");
            CHECK_OK(mproc_obj_dict_del(cut[3], key));
            mproc_obj_unref(key);
            for (size_t i = 0; i < k; i++)
                mproc_obj_unref(v[i]);
        }
    }
    unlink(out);
    rmdir(dir);
    if (!ran)
        SKIP("no CPython 3 in $MPROC_PYTHON_DIR (default ~/.pyenv/versions)");
}

/* Hashing a tuple whose parts are shared is linear: a tuple keeps its
 * hash once computed. The 40-level tuple is a dict key at once, and a
 * small pickle of {t: 1} loads at once (each takes 2^40 steps without
 * the cache, and the case times out). The hash is CPython's. */
static void test_shared_hash(void)
{
    int64_t h;
    mproc_obj *t3 = doubled(3);
    CHECK_OK(mproc_obj_hash(t3, &h));
    CHECK_EQ(h, 2433722336243945756); /* CPython's, of doubled(3) */
    CHECK_OK(mproc_obj_hash(t3, &h)); /* from the cache */
    CHECK_EQ(h, 2433722336243945756);
    mproc_obj_unref(t3);
    mproc_obj *t = doubled(40);
    mproc_obj *d = mproc_obj_dict_new();
    CHECK_OK(mproc_obj_dict_set(d, mproc_obj_ref(t), mproc_obj_int(1)));
    CHECK(mproc_obj_dict_get(d, t) != NULL);
    void *b;
    size_t n;
    CHECK_OK(mproc_pickle_dumps(d, 4, &b, &n));
    CHECK(n < 400);
    mproc_obj *back;
    char err[200];
    CHECK_OK(mproc_pickle_loads(b, n, NULL, &back, err, sizeof err));
    mproc_obj *k, *val;
    CHECK_OK(mproc_obj_dict_item(back, 0, &k, &val));
    int64_t hk, ht;
    CHECK_OK(mproc_obj_hash(k, &hk)); /* an equal key hashes alike */
    CHECK_OK(mproc_obj_hash(t, &ht));
    CHECK_EQ(hk, ht);
    mproc_obj *fs = mproc_obj_frozenset_new(); /* a set member too */
    CHECK_OK(mproc_obj_set_add(fs, mproc_obj_ref(k)));
    CHECK_EQ(mproc_obj_contains(fs, k), 1);
    mproc_obj_unref(fs);
    mproc_obj_unref(back);
    free(b);
    mproc_obj_unref(d);
    mproc_obj_unref(t);
    /* Setting an item while building forgets the hash. */
    mproc_obj *u = mproc_obj_tuple_new(2);
    int64_t h0, h1;
    CHECK_OK(mproc_obj_hash(u, &h0));
    CHECK_OK(mproc_obj_tuple_set(u, 1, mproc_obj_int(5)));
    CHECK_OK(mproc_obj_hash(u, &h1));
    mproc_obj *w = mproc_obj_tuple_of(2, mproc_obj_none(), mproc_obj_int(5));
    CHECK_OK(mproc_obj_hash(w, &h));
    CHECK(h1 == h && h0 != h1);
    mproc_obj_unref(w);
    mproc_obj_unref(u);
}

/* Ints up to 62 bits and a sign carry no memory of their own (tagged
 * values): the same ints as any other, up to and across the boundary,
 * and a decoded list of them costs only its slots. */
static void test_small_ints(void)
{
    static const struct {
        int64_t v;
        const char *dec;
        int64_t hash; /* CPython's hash() */
        bool exact;   /* a double holds it */
    } cases[] = {
        {0, "0", 0, true},
        {-1, "-1", -2, true},
        {((int64_t)1 << 62) - 1, "4611686018427387903", 1, false},
        {(int64_t)1 << 62, "4611686018427387904", 2, true},
        {-((int64_t)1 << 62), "-4611686018427387904", -2, true},
        {-((int64_t)1 << 62) - 1, "-4611686018427387905", -3, false},
        {INT64_MAX, "9223372036854775807", 3, false},
        {INT64_MIN, "-9223372036854775808", -4, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t v = cases[i].v, got;
        unsigned char le[8];
        for (int k = 0; k < 8; k++)
            le[k] = (unsigned char)((uint64_t)v >> (8 * k));
        /* One value made three ways: from int64, bytes and text. */
        mproc_obj *forms[3] = {mproc_obj_int(v),
                               mproc_obj_int_from_bytes(le, 8),
                               mproc_obj_int_from_str(cases[i].dec)};
        mproc_obj *d = mproc_obj_dict_new();
        CHECK(d != NULL);
        for (int f = 0; f < 3; f++) {
            mproc_obj *o = forms[f];
            CHECK(o != NULL);
            CHECK_EQ(mproc_obj_type_of(o), MPROC_OBJ_INT);
            CHECK_STR(mproc_obj_type_name(o), "int");
            CHECK_EQ(mproc_obj_truth(o), v != 0);
            CHECK_OK(mproc_obj_int_value(o, &got));
            CHECK_EQ(got, v);
            CHECK_OK(mproc_obj_hash(o, &got));
            CHECK_EQ(got, cases[i].hash);
            char *r = repr_of(o);
            CHECK_STR(r, cases[i].dec);
            free(r);
            unsigned char b[16];
            long nb = mproc_obj_int_bytes(o, b, sizeof b);
            CHECK(nb >= 0 && nb <= 8);
            CHECK(nb == 0 || memcmp(b, le, (size_t)nb) == 0);
            double dv;
            CHECK_OK(mproc_obj_float_value(o, &dv));
            CHECK(dv == (double)v);
            mproc_obj *fl = mproc_obj_float((double)v);
            CHECK_EQ(mproc_obj_eq(o, fl), cases[i].exact);
            mproc_obj_unref(fl);
            for (int g = 0; g < 3; g++)
                CHECK_EQ(mproc_obj_eq(o, forms[g]), 1);
            /* Extra references are harmless, however many. */
            for (int k = 0; k < 3; k++)
                mproc_obj_ref(o);
            for (int k = 0; k < 3; k++)
                mproc_obj_unref(o);
            void *pk;
            size_t n;
            for (int proto = 2; proto <= 5; proto++) {
                CHECK_OK(mproc_pickle_dumps(o, proto, &pk, &n));
                mproc_obj *back = NULL;
                CHECK_OK(mproc_pickle_loads(pk, n, NULL, &back, NULL, 0));
                CHECK_EQ(mproc_obj_eq(back, o), 1);
                mproc_obj_unref(back);
                free(pk);
            }
            /* The three forms are one dict key. */
            CHECK_OK(mproc_obj_dict_set(d, mproc_obj_ref(o), mproc_obj_int(f)));
        }
        CHECK_EQ(mproc_obj_len(d), 1);
        CHECK_OK(mproc_obj_int_value(mproc_obj_dict_get(d, forms[0]), &got));
        CHECK_EQ(got, 2);
        mproc_obj_unref(d);
        for (int f = 0; f < 3; f++)
            mproc_obj_unref(forms[f]);
    }
    /* A decoded list of 10^5 small ints costs its slots (16 bytes each
     * counted), no object per int: it fits 2 MiB. */
    mproc_obj *l = mproc_obj_list_new();
    for (int i = 0; i < 100000; i++)
        CHECK_OK(mproc_obj_list_append(l, mproc_obj_int(i * 7919 - 300000)));
    void *pk;
    size_t n;
    CHECK_OK(mproc_pickle_dumps(l, 4, &pk, &n));
    mproc_pickle_limits lim = {.max_bytes = 2 << 20};
    mproc_obj *back = NULL;
    char err[256];
    CHECK_OK(mproc_pickle_loads(pk, n, &lim, &back, err, sizeof err));
    CHECK_EQ(mproc_obj_eq(back, l), 1);
    CHECK_EQ(mproc_obj_len(back), 100000);
    int64_t v;
    CHECK_OK(mproc_obj_int_value(mproc_obj_item(back, 99999), &v));
    CHECK_EQ(v, 99999 * 7919 - 300000);
    mproc_obj_unref(back);
    mproc_obj_unref(l);
    free(pk);
}

static const mproc_test tests[] = {
    {"scalars", test_scalars, 10},
    {"containers", test_containers, 10},
    {"hash_eq", test_hash_eq, 10},
    {"small_ints", test_small_ints, 30},
    {"repr", test_repr, 10},
    {"deep", test_deep, 30},
    {"roundtrip", test_roundtrip, 20},
    {"cpython_bytes", test_cpython_bytes, 10},
    {"hostile", test_hostile, 10},
    {"bombs", test_bombs, 60},
    {"truncation_and_flips", test_truncation_and_flips, 60},
    {"shared_blocks", test_shared_blocks, 60},
    {"cpython_property", test_cpython_property, 120},
    {"shared_dumps", test_shared_dumps, 20},
    {"shared_cpython", test_shared_cpython, 60},
    {"shared_hash", test_shared_hash, 20},
};

MPROC_TEST_MAIN(tests)
