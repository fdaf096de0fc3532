/* replay.replayer._fastline: pack_nodes, msgpack for the display codec's nodes.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

/* ------------------------------------------------------------------ node packing */

/* ``pack_nodes(obj, fallback)``: the bytes of ``msgpack.Packer(use_bin_type=True).pack(obj)``
 * (tracer.TraceRecorder._pack: a chunk's changed values and its keyframe), packed here for
 * the types nodes are made of: None, bool, int in int64/uint64 range, float (as float64),
 * str, bytes, bytearray, and the exact types list, tuple and dict. Each container met again
 * in the same call (nodes are shared: a node table hands one node to every local that holds
 * an equal value, and an unchanged value keeps its node) is copied from the bytes packed the
 * first time instead of being walked again; nodes are never changed in place and no Python
 * code runs during the walk, so those bytes still hold.
 *
 * Anything else (a subclass, an int out of range, a str that is not UTF-8 encodable, nesting
 * deeper than msgpack's limit, ...) makes the whole call ``fallback(obj)``: msgpack itself,
 * which packs it or raises its own error. The encoding is msgpack's (the smallest format for
 * each int, str8 for 32..255 UTF-8 bytes as with use_bin_type, bin8/16/32 for bytes);
 * tests/unit/test_pack_nodes.py compares the bytes with msgpack's for generated values. */

#define PK_NEST_LIMIT 511    /* msgpack.DEFAULT_RECURSE_LIMIT: deeper raises in msgpack */
#define PK_ITEM_LIMIT 0xFFFFFFFFLL
#define PK_MEMO_MIN 2        /* containers this long or longer are remembered */

#define PK_OK 0
#define PK_ERROR (-1)        /* an exception is set (MemoryError) */
#define PK_FALLBACK 1        /* not packed here: msgpack packs the whole object */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    /* memo: open addressing, container address -> [start, end) of its bytes in buf */
    PyObject **keys;
    Py_ssize_t *starts, *ends;
    Py_ssize_t mask, used;
} Pk;

/* Make room for ``extra`` more bytes (the buffer doubles). */
static int
pk_grow(Pk *pk, Py_ssize_t extra)
{
    Py_ssize_t cap = pk->cap ? pk->cap : 4096;
    while (cap < pk->len + extra) {
        cap *= 2;
    }
    char *buf = PyMem_Realloc(pk->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return PK_ERROR;
    }
    pk->buf = buf;
    pk->cap = cap;
    return PK_OK;
}

static inline int
pk_reserve(Pk *pk, Py_ssize_t extra)
{
    return pk->len + extra <= pk->cap ? PK_OK : pk_grow(pk, extra);
}

/* One type byte and ``size`` bytes of ``value``, big-endian. */
static inline int
pk_head(Pk *pk, unsigned char type, uint64_t value, int size)
{
    if (pk_reserve(pk, 1 + size) < 0) {
        return PK_ERROR;
    }
    unsigned char *p = (unsigned char *)pk->buf + pk->len;
    *p++ = type;
    for (int i = size - 1; i >= 0; i--) {
        *p++ = (unsigned char)(value >> (8 * i));
    }
    pk->len += 1 + size;
    return PK_OK;
}

static inline int
pk_byte(Pk *pk, unsigned char byte)
{
    if (pk_reserve(pk, 1) < 0) {
        return PK_ERROR;
    }
    pk->buf[pk->len++] = (char)byte;
    return PK_OK;
}

static int
pk_raw(Pk *pk, const char *data, Py_ssize_t size)
{
    if (pk_reserve(pk, size) < 0) {
        return PK_ERROR;
    }
    memcpy(pk->buf + pk->len, data, (size_t)size);
    pk->len += size;
    return PK_OK;
}

/* A collection header: fix (below 16, ``fix | n``), 16-bit or 32-bit length. */
static int
pk_length(Pk *pk, Py_ssize_t n, unsigned char fix, unsigned char b16, unsigned char b32)
{
    if (n > PK_ITEM_LIMIT) {
        return PK_FALLBACK;
    }
    if (n < 16) {
        return pk_byte(pk, (unsigned char)(fix | n));
    }
    return n < 0x10000 ? pk_head(pk, b16, (uint64_t)n, 2) : pk_head(pk, b32, (uint64_t)n, 4);
}

static int
pk_int(Pk *pk, PyObject *v)
{
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();  /* beyond uint64: msgpack raises OverflowError */
            return PK_FALLBACK;
        }
        return pk_head(pk, 0xcf, u, 8);
    }
    if (overflow < 0) {
        return PK_FALLBACK;
    }
    if (x == -1 && PyErr_Occurred()) {
        return PK_ERROR;
    }
    if (x >= 0) {
        if (x < 0x80) {
            return pk_byte(pk, (unsigned char)x);
        }
        if (x < 0x100) {
            return pk_head(pk, 0xcc, (uint64_t)x, 1);
        }
        if (x < 0x10000) {
            return pk_head(pk, 0xcd, (uint64_t)x, 2);
        }
        return x < 0x100000000LL ? pk_head(pk, 0xce, (uint64_t)x, 4) : pk_head(pk, 0xcf, (uint64_t)x, 8);
    }
    if (x >= -32) {
        return pk_byte(pk, (unsigned char)(x & 0xff));
    }
    if (x >= -0x80) {
        return pk_head(pk, 0xd0, (uint64_t)x & 0xff, 1);
    }
    if (x >= -0x8000) {
        return pk_head(pk, 0xd1, (uint64_t)x & 0xffff, 2);
    }
    return x >= -0x80000000LL ? pk_head(pk, 0xd2, (uint64_t)x & 0xffffffffULL, 4) : pk_head(pk, 0xd3, (uint64_t)x, 8);
}

static int
pk_str(Pk *pk, PyObject *v)
{
    Py_ssize_t size;
    const char *data;
    if (PyUnicode_IS_COMPACT_ASCII(v)) {  /* its UTF-8 is its data */
        data = (const char *)PyUnicode_DATA(v);
        size = PyUnicode_GET_LENGTH(v);
    }
    else if ((data = PyUnicode_AsUTF8AndSize(v, &size)) == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeError)) {
            return PK_ERROR;
        }
        PyErr_Clear();  /* lone surrogates: msgpack raises UnicodeEncodeError */
        return PK_FALLBACK;
    }
    int rc = size < 32 ? pk_byte(pk, (unsigned char)(0xa0 | size))
           : size < 0x100 ? pk_head(pk, 0xd9, (uint64_t)size, 1)
           : pk_length(pk, size, 0, 0xda, 0xdb);
    return rc != PK_OK ? rc : pk_raw(pk, data, size);
}

static int
pk_bin(Pk *pk, const char *data, Py_ssize_t size)
{
    int rc = size > PK_ITEM_LIMIT ? PK_FALLBACK
           : size < 0x100 ? pk_head(pk, 0xc4, (uint64_t)size, 1)
           : size < 0x10000 ? pk_head(pk, 0xc5, (uint64_t)size, 2)
           : pk_head(pk, 0xc6, (uint64_t)size, 4);
    return rc != PK_OK ? rc : pk_raw(pk, data, size);
}

static inline size_t
pk_slot(const Pk *pk, PyObject *key)
{
    uintptr_t h = (uintptr_t)key >> 4;
    return (size_t)((h ^ (h >> 13)) * 0x9E3779B97F4A7C15ULL >> 20) & (size_t)pk->mask;
}

/* The memo slot of ``key``: where it is, or the empty slot where it would go. */
static inline Py_ssize_t
pk_find(const Pk *pk, PyObject *key)
{
    size_t i = pk_slot(pk, key);
    while (pk->keys[i] != NULL && pk->keys[i] != key) {
        i = (i + 1) & (size_t)pk->mask;
    }
    return (Py_ssize_t)i;
}

static int
pk_remember(Pk *pk, PyObject *key, Py_ssize_t start, Py_ssize_t end)
{
    if (2 * (pk->used + 1) > pk->mask + 1) {  /* grow (and rehash) at half full */
        Py_ssize_t size = pk->mask ? 2 * (pk->mask + 1) : 1024;
        Pk grown = *pk;
        grown.mask = size - 1;
        grown.keys = PyMem_Calloc((size_t)size, sizeof(PyObject *));
        grown.starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)size);
        grown.ends = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)size);
        if (grown.keys == NULL || grown.starts == NULL || grown.ends == NULL) {
            PyMem_Free(grown.keys);
            PyMem_Free(grown.starts);
            PyMem_Free(grown.ends);
            PyErr_NoMemory();
            return PK_ERROR;
        }
        for (Py_ssize_t i = 0; pk->mask && i <= pk->mask; i++) {
            if (pk->keys[i] != NULL) {
                Py_ssize_t j = pk_find(&grown, pk->keys[i]);
                grown.keys[j] = pk->keys[i];
                grown.starts[j] = pk->starts[i];
                grown.ends[j] = pk->ends[i];
            }
        }
        PyMem_Free(pk->keys);
        PyMem_Free(pk->starts);
        PyMem_Free(pk->ends);
        pk->keys = grown.keys;
        pk->starts = grown.starts;
        pk->ends = grown.ends;
        pk->mask = grown.mask;
    }
    Py_ssize_t i = pk_find(pk, key);
    pk->keys[i] = key;
    pk->starts[i] = start;
    pk->ends[i] = end;
    pk->used++;
    return PK_OK;
}

static int pk_any(Pk *pk, PyObject *v, int nest);

static int
pk_container(Pk *pk, PyObject *v, int nest)
{
    Py_ssize_t n = PyDict_CheckExact(v) ? PyDict_GET_SIZE(v) : Py_SIZE(v);
    int memo = n >= PK_MEMO_MIN;
    if (memo && pk->mask) {
        Py_ssize_t i = pk_find(pk, v);
        if (pk->keys[i] == v) {  /* packed before in this call: the same bytes again */
            Py_ssize_t start = pk->starts[i], size = pk->ends[i] - start;
            if (pk_reserve(pk, size) < 0) {
                return PK_ERROR;
            }
            memcpy(pk->buf + pk->len, pk->buf + start, (size_t)size);
            pk->len += size;
            return PK_OK;
        }
    }
    Py_ssize_t start = pk->len;
    int rc;
    if (PyDict_CheckExact(v)) {
        rc = pk_length(pk, n, 0x80, 0xde, 0xdf);
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (rc == PK_OK && PyDict_Next(v, &pos, &key, &value)) {
            if ((rc = pk_any(pk, key, nest - 1)) == PK_OK) {
                rc = pk_any(pk, value, nest - 1);
            }
        }
    }
    else {
        PyObject **items = PyList_CheckExact(v) ? ((PyListObject *)v)->ob_item : ((PyTupleObject *)v)->ob_item;
        rc = pk_length(pk, n, 0x90, 0xdc, 0xdd);
        for (Py_ssize_t i = 0; rc == PK_OK && i < n; i++) {
            rc = pk_any(pk, items[i], nest - 1);
        }
    }
    if (rc == PK_OK && memo) {
        rc = pk_remember(pk, v, start, pk->len);
    }
    return rc;
}

static int
pk_any(Pk *pk, PyObject *v, int nest)
{
    if (nest < 0) {
        return PK_FALLBACK;  /* msgpack: ValueError("recursion limit exceeded") */
    }
    PyTypeObject *type = Py_TYPE(v);
    if (type == &PyLong_Type) {
        return pk_int(pk, v);
    }
    if (type == &PyUnicode_Type) {
        return pk_str(pk, v);
    }
    if (type == &PyList_Type || type == &PyTuple_Type || type == &PyDict_Type) {
        return pk_container(pk, v, nest);
    }
    if (v == Py_None) {
        return pk_byte(pk, 0xc0);
    }
    if (v == Py_False || v == Py_True) {
        return pk_byte(pk, v == Py_True ? 0xc3 : 0xc2);
    }
    if (type == &PyFloat_Type) {
        union { double d; uint64_t u; } bits;
        bits.d = PyFloat_AS_DOUBLE(v);
        return pk_head(pk, 0xcb, bits.u, 8);
    }
    if (type == &PyBytes_Type) {
        return pk_bin(pk, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    }
    if (type == &PyByteArray_Type) {
        return pk_bin(pk, PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v));
    }
    return PK_FALLBACK;
}

PyDoc_STRVAR(pack_nodes_doc,
"pack_nodes(obj, fallback)\n--\n\n"
"msgpack.Packer(use_bin_type=True).pack(obj) for the display codec's nodes (None, bool,\n"
"int64/uint64 ints, floats, str, bytes, bytearray, exact lists, tuples and dicts of them),\n"
"each container met again packed once; anything else returns fallback(obj) (msgpack's\n"
"bytes, or its error).");

static PyObject *
pack_nodes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pack_nodes(obj, fallback)");
        return NULL;
    }
    /* The buffer of the last call is kept (a chunk's nodes take about the same room each
     * time: no page faults for a fresh buffer at every flush); a call made while it is in
     * use (none can be: no Python code runs until it is free again) gets its own. */
    static char *kept_buf = NULL;
    static Py_ssize_t kept_cap = 0;
    Pk pk = {0};
    if (kept_buf != NULL) {
        pk.buf = kept_buf;
        pk.cap = kept_cap;
        kept_buf = NULL;
    }
    /* every container in the memo is reachable from args[0], so its address stays its own
     * for the whole call */
    int rc = pk_any(&pk, args[0], PK_NEST_LIMIT);
    PyObject *result = NULL;
    if (rc == PK_OK) {
        result = PyBytes_FromStringAndSize(pk.buf, pk.len);
    }
    else if (rc == PK_FALLBACK) {
        result = PyObject_CallOneArg(args[1], args[0]);
    }
    if (kept_buf == NULL && pk.cap <= (1 << 24)) {  /* keep up to 16 MiB */
        kept_buf = pk.buf;
        kept_cap = pk.cap;
    }
    else {
        PyMem_Free(pk.buf);
    }
    PyMem_Free(pk.keys);
    PyMem_Free(pk.starts);
    PyMem_Free(pk.ends);
    return result;
}
