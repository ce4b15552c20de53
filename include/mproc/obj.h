/*
 * mproc/obj.h - Python's plain data as C values, and the pickle codec.
 *
 * An mproc_obj is one Python value: None, bool, int (any size), float,
 * str, bytes, bytearray, tuple, list, dict, set, frozenset, or a "reduce"
 * value standing for something mproc does not model (a builtin exception
 * with its args, a manager's Token, an array.array): the global that
 * builds it (module and name), its arguments and its state, kept inert.
 *
 * Values are reference counted. Every function that returns a new
 * reference says so ("new reference": the caller owns it and drops it
 * with mproc_obj_unref); accessors return borrowed references, valid while
 * the container holds them. Functions that take a value into a container
 * "steal" the reference they are given: the container owns it from then
 * on, also when the call fails (the value is dropped then). They accept
 * NULL for the value and fail with -ENOMEM, so that a constructor's
 * failure can be passed straight in:
 *
 *     mproc_obj *d = mproc_obj_dict_new();
 *     mproc_obj_dict_set(d, mproc_obj_str_c("answer"), mproc_obj_int(42));
 *
 * Scalars, tuples, frozensets and reduce values are immutable once built;
 * lists, dicts, sets and bytearrays change through their own functions.
 * A value that is no longer changed may be read from any number of threads
 * at once; reference counts are atomic. Changing a container while another
 * thread reads it is the caller's race. Values are plain memory: after
 * fork the child may use and drop the ones it inherited.
 *
 * Never make a container contain itself, directly or not: its count never
 * reaches zero (a leak) and comparing, hashing or printing it stops at
 * MPROC_OBJ_MAX_DEPTH with -ELOOP (pickling writes it as CPython does
 * when the loop passes through a list or dict, see mproc_pickle_dumps).
 * Values decoded from a pickle never contain themselves
 * (mproc_pickle_loads rejects such streams).
 *
 * See docs/values.md for the type map to Python and the safety rules.
 */
#ifndef MPROC_OBJ_H
#define MPROC_OBJ_H

#include "common.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mproc_obj mproc_obj;

typedef enum mproc_obj_type {
    MPROC_OBJ_NONE = 0,
    MPROC_OBJ_BOOL = 1,
    MPROC_OBJ_INT = 2,
    MPROC_OBJ_FLOAT = 3,
    MPROC_OBJ_STR = 4,
    MPROC_OBJ_BYTES = 5,
    MPROC_OBJ_BYTEARRAY = 6,
    MPROC_OBJ_TUPLE = 7,
    MPROC_OBJ_LIST = 8,
    MPROC_OBJ_DICT = 9,
    MPROC_OBJ_SET = 10,
    MPROC_OBJ_FROZENSET = 11,
    MPROC_OBJ_REDUCE = 12
} mproc_obj_type;

/* How deep comparing, hashing, printing and pickling go (Python's default
 * recursion limit); deeper values fail with -ELOOP. */
#define MPROC_OBJ_MAX_DEPTH 1000

/* ---- references ------------------------------------------------------ */

/* Adds a reference to o and returns o (NULL gives NULL). Thread safe. */
MPROC_API mproc_obj *mproc_obj_ref(mproc_obj *o);

/* Drops a reference; the last one frees o and drops what it holds (never
 * recursing on the C stack, however deep). NULL ok. Thread safe. */
MPROC_API void mproc_obj_unref(mproc_obj *o);

/* ---- scalars: each returns a new reference, NULL when out of memory --- */

/* None, True and False never fail (static values; ref/unref are no-ops). */
MPROC_API mproc_obj *mproc_obj_none(void);
MPROC_API mproc_obj *mproc_obj_bool(bool v);
/* An int. From -2**62 to 2**62 - 1 it never fails and, like None, needs
 * no memory (ref/unref are no-ops; it is still dropped as any value);
 * beyond, NULL when out of memory. Ask mproc_obj_eq, never ==, whether
 * two values are equal. */
MPROC_API mproc_obj *mproc_obj_int(int64_t v);
/*
 * An int of any size from its two's-complement little-endian bytes
 * (Python's int.from_bytes(b, 'little', signed=True)); n == 0 is 0.
 * mproc keeps big ints exactly as these bytes and does no arithmetic on
 * them: conversions are to and from int64, double and decimal text.
 * Returns NULL when out of memory or b is NULL with n > 0.
 */
MPROC_API mproc_obj *mproc_obj_int_from_bytes(const void *b, size_t n);
/* An int from decimal text ("-123", "+7", "1_000" not accepted), any
 * size. NULL when out of memory or the text is not a decimal integer. */
MPROC_API mproc_obj *mproc_obj_int_from_str(const char *s);
MPROC_API mproc_obj *mproc_obj_float(double v);
/*
 * A str from n bytes of UTF-8 (copied). Code points U+0000 to U+10FFFF,
 * lone surrogates included (as Python's str, encoded as pickle's
 * "surrogatepass" does); overlong forms and bytes that are no UTF-8 are
 * refused. NULL when out of memory or s is not such UTF-8.
 */
MPROC_API mproc_obj *mproc_obj_str(const char *s, size_t n);
/* The same for a NUL-terminated string (NULL gives NULL). */
MPROC_API mproc_obj *mproc_obj_str_c(const char *s);
/* bytes / bytearray from n bytes (copied; b may be NULL when n is 0). */
MPROC_API mproc_obj *mproc_obj_bytes(const void *b, size_t n);
MPROC_API mproc_obj *mproc_obj_bytearray(const void *b, size_t n);

/* ---- containers: each returns a new reference, NULL when out of memory */

/* A tuple of n items, all None until set with mproc_obj_tuple_set. */
MPROC_API mproc_obj *mproc_obj_tuple_new(size_t n);
/* A tuple of the n items given (stolen, also on failure; a NULL item
 * makes the call fail with NULL). mproc_obj_tuple_of(2, a, b). */
MPROC_API mproc_obj *mproc_obj_tuple_of(size_t n, ...);
MPROC_API mproc_obj *mproc_obj_list_new(void);
MPROC_API mproc_obj *mproc_obj_dict_new(void);
MPROC_API mproc_obj *mproc_obj_set_new(void);
/* An empty frozenset, filled with mproc_obj_set_add before it is used as
 * a value (hashed, compared, put into a container or shared). */
MPROC_API mproc_obj *mproc_obj_frozenset_new(void);
/*
 * A reduce value: what calling module.name with args (a tuple) makes, then
 * given state (Python's __setstate__ / BUILD), or with newobj what
 * cls.__new__(cls, *args) makes. args NULL with state NULL is the global
 * itself (a class, a function). module and name are copied (each up to
 * 255 bytes of UTF-8); args and state are stolen (also on failure).
 * Returns NULL when out of memory, on a bad name or an args that is
 * neither NULL nor a tuple.
 */
MPROC_API mproc_obj *mproc_obj_reduce(const char *module, const char *name,
                                      mproc_obj *args, mproc_obj *state,
                                      bool newobj);

/* ---- builders (not thread safe on the same container) ---------------- */

/* Sets item i of a tuple being built (not yet shared), stealing item.
 * Returns 0, -EINVAL (not a tuple, i out of range) or -ENOMEM (item
 * NULL). */
MPROC_API int mproc_obj_tuple_set(mproc_obj *t, size_t i, mproc_obj *item);
/* Appends item (stolen) to a list. 0, -EINVAL (not a list), -ENOMEM. */
MPROC_API int mproc_obj_list_append(mproc_obj *l, mproc_obj *item);
/* Replaces item i of a list (item stolen). 0, -EINVAL, -ENOMEM. */
MPROC_API int mproc_obj_list_set(mproc_obj *l, size_t i, mproc_obj *item);
/*
 * d[key] = value, both stolen. A key equal to one already there (1, 1.0
 * and True are one key, as in Python) keeps the first key and its place
 * in the order and replaces the value. Returns 0, -EINVAL (d not a dict),
 * -ENOMEM, MPROC_ETYPE (key unhashable: a list, dict, set or bytearray,
 * or a tuple holding one) or -ELOOP (key nested too deep).
 */
MPROC_API int mproc_obj_dict_set(mproc_obj *d, mproc_obj *key,
                                 mproc_obj *value);
/* del d[key]: 0, or -ENOENT when absent; -EINVAL, MPROC_ETYPE, -ELOOP
 * as dict_set. The key is borrowed. Keeps the order of the rest. */
MPROC_API int mproc_obj_dict_del(mproc_obj *d, const mproc_obj *key);
/* Adds item (stolen) to a set or a frozenset being built; an equal item
 * already there stays. Returns 0, -EINVAL, -ENOMEM, MPROC_ETYPE, -ELOOP
 * as dict_set. */
MPROC_API int mproc_obj_set_add(mproc_obj *s, mproc_obj *item);
/* Appends n bytes to a bytearray. 0, -EINVAL or -ENOMEM. */
MPROC_API int mproc_obj_bytearray_extend(mproc_obj *b, const void *p, size_t n);

/* ---- accessors (borrowed results; never fail on a NULL object) -------- */

/* The type; MPROC_OBJ_NONE for NULL. */
MPROC_API mproc_obj_type mproc_obj_type_of(const mproc_obj *o);
/* Python's type name: "NoneType", "bool", "int", ..., and for a reduce
 * value its global's name ("ValueError"). Static or owned by o. */
MPROC_API const char *mproc_obj_type_name(const mproc_obj *o);

/* Python's truth value: False for None, False, 0, 0.0, empty str, bytes
 * and containers; true otherwise (reduce values are true). */
MPROC_API bool mproc_obj_truth(const mproc_obj *o);

/* The value of an int or a bool into *out. Returns 0, -ERANGE (outside
 * int64; *out untouched) or MPROC_ETYPE (not an int or bool). */
MPROC_API int mproc_obj_int_value(const mproc_obj *o, int64_t *out);
/* An int's (or bool's) two's-complement little-endian bytes, the fewest
 * that hold it (0 is no bytes), written into buf if cap allows. Returns
 * how many bytes it takes (write nothing with cap 0 to learn it), or
 * MPROC_ETYPE. */
MPROC_API long mproc_obj_int_bytes(const mproc_obj *o, void *buf, size_t cap);
/* A float, an int or a bool as a double (Python's float()). Returns 0,
 * -ERANGE (an int too big for a double) or MPROC_ETYPE. */
MPROC_API int mproc_obj_float_value(const mproc_obj *o, double *out);
/* A str's UTF-8 (NUL-terminated, owned by o) and its length in bytes
 * into *len (may be NULL); NULL for anything but a str. */
MPROC_API const char *mproc_obj_str_value(const mproc_obj *o, size_t *len);
/* The bytes of a bytes or a bytearray (owned by o; a bytearray's move
 * when it is extended) and their count into *len; NULL otherwise (and
 * for an empty one: check *len). */
MPROC_API const unsigned char *mproc_obj_bytes_value(const mproc_obj *o,
                                                     size_t *len);

/* Items of a tuple, list, set, frozenset or dict (its keys), entries of a
 * str (bytes, not characters), bytes or bytearray; 0 for others. */
MPROC_API size_t mproc_obj_len(const mproc_obj *o);
/* Item i of a tuple or list, or of a set or frozenset in insertion order
 * (borrowed); NULL when out of range or another type. */
MPROC_API mproc_obj *mproc_obj_item(const mproc_obj *o, size_t i);
/* Key and value of a dict's i-th item in insertion order (borrowed; NULL
 * out pointers are skipped). Returns 0 or -EINVAL (not a dict, out of
 * range). */
MPROC_API int mproc_obj_dict_item(const mproc_obj *d, size_t i, mproc_obj **key,
                                  mproc_obj **value);
/* d[key] (borrowed), or NULL when absent, d is not a dict or key is
 * unhashable. The key is borrowed. */
MPROC_API mproc_obj *mproc_obj_dict_get(const mproc_obj *d,
                                        const mproc_obj *key);
/* d[key] for a str key given as a C string (borrowed, or NULL). */
MPROC_API mproc_obj *mproc_obj_dict_get_str(const mproc_obj *d,
                                            const char *key);
/* 1 when a set, frozenset or dict holds item (as key), 0 when not;
 * -EINVAL, MPROC_ETYPE (unhashable item) or -ELOOP. */
MPROC_API int mproc_obj_contains(const mproc_obj *s, const mproc_obj *item);

/* A reduce value's global ("builtins", "ValueError"), its args (a tuple,
 * or NULL for the bare global) and its state (NULL when none); whether it
 * was made with NEWOBJ. Owned by o; NULL for other types. */
MPROC_API const char *mproc_obj_reduce_module(const mproc_obj *o);
MPROC_API const char *mproc_obj_reduce_name(const mproc_obj *o);
MPROC_API mproc_obj *mproc_obj_reduce_args(const mproc_obj *o);
MPROC_API mproc_obj *mproc_obj_reduce_state(const mproc_obj *o);
MPROC_API bool mproc_obj_reduce_newobj(const mproc_obj *o);
/* 1 when o is a builtin exception (a reduce value of a builtins global
 * whose name is one of Python's exception classes), queue.Empty,
 * queue.Full or threading.BrokenBarrierError, else 0. */
MPROC_API int mproc_obj_is_exception(const mproc_obj *o);

/* ---- comparing, hashing, printing ------------------------------------ */

/*
 * Python's a == b: 1 or 0. Numbers compare by value across int, float and
 * bool (1 == 1.0 == True, 2**70 == 2.0**70 exactly); bytes equal a
 * bytearray with the same bytes; set equals frozenset; dicts compare as
 * mappings (order aside); NaN is unequal to itself except as the same
 * object. Returns -ELOOP past MPROC_OBJ_MAX_DEPTH.
 */
MPROC_API int mproc_obj_eq(const mproc_obj *a, const mproc_obj *b);

/*
 * Python's hash(o) into *out: equal values hash the same. For int, bool,
 * float, and tuples and frozensets of those, the very value CPython 3.8+
 * gives; str and bytes hash otherwise (Python randomizes theirs per
 * process). A tuple keeps its hash once computed (mproc_obj_tuple_set
 * forgets it), so a tuple whose parts are shared, t = (t, t) nested 40
 * deep, hashes in time linear in its distinct tuples. Returns 0,
 * MPROC_ETYPE (list, dict, set, bytearray, or a tuple or frozenset
 * holding one) or -ELOOP.
 */
MPROC_API int mproc_obj_hash(const mproc_obj *o, int64_t *out);

/*
 * Python's repr(o), exactly, as a malloc'ed NUL-terminated string into
 * *out (free it with free()) and its length into *len (may be NULL):
 * "{1: 1}", "[0, 1, 4]", "b'howdy'", "'\xe9'", "(1,)", "2.5e-07",
 * "ValueError('bad')". Sets print in insertion order (Python's order
 * follows its hash table and is not reproducible). Returns 0, -ENOMEM,
 * -ELOOP, or -E2BIG when the text would pass 64 MiB (a value whose parts
 * are shared, as [l, l] nested 40 deep, has a text exponentially longer
 * than itself: a peer's small pickle can make one); *out is NULL on
 * failure.
 */
MPROC_API int mproc_obj_repr(const mproc_obj *o, char **out, size_t *len);

/* ---- pickle ---------------------------------------------------------- */

/* Protocols mproc_pickle_dumps writes; 4 is what Python 3.8+ sends by
 * default, 2 is read by Python 2.7 too, 5 writes bytearrays natively. */
#define MPROC_PICKLE_DEFAULT_PROTOCOL 4
#define MPROC_PICKLE_HIGHEST_PROTOCOL 5

/*
 * Pickles o with the given protocol (2 to 5, or -1 for the highest) into
 * a malloc'ed buffer at *buf (free it with free()) of *len bytes. CPython
 * 2.7 (protocol 2) and 3.6+ unpickle it to a value equal to o, of the
 * same types. A sub-value reached more than once (the same object: [l,
 * l], t = (x, x) nested) is written once and fetched from the memo after
 * (BINGET), as CPython does, so time and size are linear in the number of
 * distinct objects and the reader gets the same sharing; a value without
 * shared objects has no memo opcodes. Values that contain themselves
 * through a list or dict are written as CPython writes them (CPython
 * reads them back; mproc_pickle_loads refuses them). Reduce values write
 * their global, args and state back as they came. Returns 0, -EINVAL (bad
 * protocol, NULL arguments), -ENOMEM, -ELOOP (nested deeper than
 * MPROC_OBJ_MAX_DEPTH) or -EOVERFLOW (an item over 4 GiB for protocols 2
 * and 3, or over 2^32 shared objects). *buf is NULL on failure. Thread
 * safe while nobody changes o.
 */
MPROC_API int mproc_pickle_dumps(const mproc_obj *o, int protocol, void **buf,
                                 size_t *len);

/* What a decoded pickle may cost; 0 in a field takes its default. */
typedef struct mproc_pickle_limits {
    size_t max_depth; /* nesting of the value; default MPROC_OBJ_MAX_DEPTH */
    size_t max_memo;  /* memo entries (highest index + 1); default 1 << 20 */
    /* memory the decoded value and the decoder's stack and memo may take;
     * default 64 MiB + 8 * len */
    size_t max_bytes;
} mproc_pickle_limits;

/*
 * Unpickles len bytes of protocol 0 to 5 (what CPython 2.7 and 3.6-3.13
 * write for the types above; bytes after STOP are ignored, as Python
 * does) into *out (a new reference). Nothing in the stream runs code:
 * globals resolve only against a fixed allow-list (docs/values.md) into
 * reduce values, and REDUCE, NEWOBJ and BUILD are accepted only on those
 * with the shapes Python writes. A hostile stream never crashes, hangs or
 * takes more than limits allow (NULL limits take every default).
 *
 * Small leaf values of the result share 64 KiB blocks, each freed with
 * the last of its values (docs/values.md).
 *
 * Returns 0; MPROC_EPICKLE for anything else (a truncated or malformed
 * stream, an opcode or global not allowed, invalid UTF-8, a value that
 * contains itself, a limit passed), with a message naming the opcode or
 * global and the offset written into err (errcap bytes, NUL-terminated;
 * err may be NULL); or -ENOMEM. *out is NULL on failure. Thread safe.
 */
MPROC_API int mproc_pickle_loads(const void *data, size_t len,
                                 const mproc_pickle_limits *limits,
                                 mproc_obj **out, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif
