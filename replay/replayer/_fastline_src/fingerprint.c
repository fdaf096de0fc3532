/* replay.replayer._fastline: the display fingerprint (display_fingerprint, generic_dict).
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

/* ------------------------------------------------------------------ display fingerprint */

/* ``display_fingerprint(value, kinds, report=False)``: 16 bytes (two 64-bit hashes) that change
 * whenever tracer.display(value) would return a different node, or None. The walk is
 * Encoder._enc under the DISPLAY profile (replay/snapshot/encoding.py), hashing instead of
 * building nodes: leaves first (by value, never by address: addresses are reused), then the
 * depth cut, then containers and objects registered in pre-order, a second meeting being the
 * back reference ["@", n]; the first FP_MAX_ITEMS items, entries or fields of each, with the
 * true size. Built-in containers are exact types (a subclass is an object like any other). No
 * Python code runs during the walk (only the C hashes of str, bytes and int; the collector is
 * off while it runs).
 *
 * Hashed: None, bool, int (value; outside int64/uint64 its hash and its residue modulo a
 * 64-bit prime), float (bits; NaN has none: equal NaN nodes compare unequal), str and bytes
 * (length, cached hash; str also width, first and last character), bytearray (length and up
 * to FP_MAX_BYTES of content), list, tuple, dict (keys and values in order), set and
 * frozenset of leaves of one sort class (hashed order-independently: the encoder sorts them).
 * Other objects by the kind ``kinds`` gives their exact type (the caller classifies types as
 * tracer._type_kind does, and keeps them alive):
 *   KIND_PLAIN: ["obj", path, name, value, ...] from __dict__ alone (str keys; max_items cut);
 *   (KIND_SLOTTED, has_dict, ((name, member), ...)): the same with the set slots after the
 *       dict's items;
 *   (KIND_DATACLASS, ((name, member or None), ...)): ["dc", path, name, value, ...], each field
 *       read from its slot (unset: None) or else the instance dict, all of them;
 *   KIND_NAMEDTUPLE: ["nt", path, item, ...];
 *   KIND_OPAQUE: a placeholder that names the type only (functions, C types, ...);
 *   KIND_CLASS (the kind of metaclasses): a class as a value, ["type", path];
 *   KIND_OTHER, or anything else: no fingerprint.
 * A type is its address (static types live as long as the process; heap types are kept alive
 * by ``kinds``) and, for heap types, its __qualname__. Non-leaves at the depth cut are their
 * type. An object's attribute lookup must be the generic one, or one known not to run code
 * for the reads its kind implies (a class's, a module's, a bound method's or a GenericAlias's
 * for the type alone; ``__getattr__`` for the __dict__ of a plain object). With ``report``, a
 * type not in ``kinds`` ends the walk and is returned, for the caller to classify and call
 * again. */

#define FP_MAX_DEPTH 6   /* encoding.DISPLAY: max_depth, max_bytes, max_items */
#define FP_MAX_BYTES 64
#define FP_MAX_ITEMS 20
#define FP_SMALL 8        /* objects registered before the walk needs a hash table */

#define KIND_OTHER 0
#define KIND_PLAIN 1
#define KIND_OPAQUE 2
#define KIND_NAMEDTUPLE 3
#define KIND_CLASS 4
#define KIND_SLOTTED 5
#define KIND_DATACLASS 6

/* Outcomes of a step of the walk. */
#define FP_ERROR (-1)   /* an exception is set (MemoryError) */
#define FP_OK 0
#define FP_NONE 1       /* no fingerprint: the caller re-encodes */
#define FP_NOT_LEAF 2   /* fp_leaf: not a leaf of the encoder */

enum {
    FT_NONE = 1, FT_FALSE, FT_TRUE, FT_INT, FT_UINT, FT_BIGINT, FT_FLOAT, FT_STR, FT_BYTES,
    FT_LONG_BA, FT_LIST, FT_TUPLE, FT_DICT, FT_SET, FT_FROZENSET, FT_BA, FT_OBJ, FT_DC, FT_NT,
    FT_OPAQUE, FT_CLASS, FT_REF, FT_CUT,
};

/* Sort classes of set items: items of one class sort (numbers, str or bytes); mixed ones do not. */
enum { K_NONE = 1, K_NUMBER, K_STR, K_BYTES, K_OTHER };

static PyObject *fp_prime;   /* 2**64 - 59, the largest prime below 2**64 */
static getter subtype_dict;  /* the __dict__ getter of classes defined in Python */
static getattrofunc getattr_hook;  /* tp_getattro of a Python class with __getattr__ */

typedef struct {
    uint64_t a, b;
} FpHash;

static const FpHash fp_seed = {0x243F6A8885A308D3ULL, 0x13198A2E03707344ULL};

/* splitmix64's finalizer (Steele, Lea, Flood 2014): a bijection with full avalanche. */
static inline uint64_t
fp_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* Two lanes, each a bijection of its state for a given input, with different constants. */
static inline void
fp_feed(FpHash *h, uint64_t x)
{
    h->a = fp_mix(h->a ^ x);
    uint64_t b = (h->b + x) * 0xC2B2AE3D27D4EB4FULL;
    h->b = ((b << 29) | (b >> 35)) ^ 0x165667B19E3779F9ULL;
}

static inline void
fp_tag(FpHash *h, int tag)
{
    fp_feed(h, 0xD6E8FEB86659FD93ULL * (uint64_t)tag);
}

/* Up to FP_MAX_BYTES of data, 8 bytes at a time (the caller fed the length). */
static void
fp_data(FpHash *h, const char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    uint64_t word;
    for (; i + 8 <= n; i += 8) {
        memcpy(&word, p + i, 8);
        fp_feed(h, word);
    }
    if (i < n) {
        word = 0;
        memcpy(&word, p + i, (size_t)(n - i));
        fp_feed(h, word);
    }
}

typedef struct {
    PyObject *key;
    Py_ssize_t index;
} FpSlot;

typedef struct {
    PyObject *kinds;          /* {type: kind} (borrowed) */
    int report;               /* end the walk at a type not in kinds, and return it */
    PyTypeObject *last_type;  /* the last type looked up, and its kind (a graph shares types) */
    PyObject *last_kind;
    PyObject *unknown;        /* borrowed: the type not in kinds that ended the walk */
    Py_ssize_t used;          /* objects registered (their numbers are 0 .. used - 1) */
    PyObject *small[FP_SMALL];  /* the first ones, by number, while slots is NULL */
    FpSlot *slots;            /* then all of them: open addressing on the address */
    size_t mask;
} FpWalk;

static inline size_t
fp_slot_of(PyObject *key, size_t mask)
{
    return (size_t)((((uint64_t)(uintptr_t)key >> 4) * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

static void
fp_insert(FpSlot *slots, size_t mask, PyObject *key, Py_ssize_t index)
{
    size_t j = fp_slot_of(key, mask);
    while (slots[j].key != NULL) {
        j = (j + 1) & mask;
    }
    slots[j].key = key;
    slots[j].index = index;
}

/* A hash table twice as large (the first one: 8 * FP_SMALL slots, filled from w->small). */
static int
fp_grow(FpWalk *w)
{
    size_t size = w->slots == NULL ? 8 * FP_SMALL : (w->mask + 1) * 2;
    FpSlot *slots = PyMem_Calloc(size, sizeof(FpSlot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return FP_ERROR;
    }
    if (w->slots == NULL) {
        for (Py_ssize_t i = 0; i < w->used; i++) {
            fp_insert(slots, size - 1, w->small[i], i);
        }
    }
    else {
        for (size_t i = 0; i <= w->mask; i++) {
            if (w->slots[i].key != NULL) {
                fp_insert(slots, size - 1, w->slots[i].key, w->slots[i].index);
            }
        }
        PyMem_Free(w->slots);
    }
    w->slots = slots;
    w->mask = size - 1;
    return FP_OK;
}

/* Encoder._register: *seen is v's number when the walk met it before, else -1 (v now has the
 * next number). Most graphs register a few objects: a short array first, a table beyond. */
static int
fp_register(FpWalk *w, PyObject *v, Py_ssize_t *seen)
{
    if (w->slots == NULL) {
        for (Py_ssize_t i = 0; i < w->used; i++) {
            if (w->small[i] == v) {
                *seen = i;
                return FP_OK;
            }
        }
        if (w->used < FP_SMALL) {
            w->small[w->used++] = v;
            *seen = -1;
            return FP_OK;
        }
    }
    if ((w->slots == NULL || (size_t)(w->used + 1) * 2 > w->mask + 1) && fp_grow(w) < 0) {
        return FP_ERROR;
    }
    size_t i = fp_slot_of(v, w->mask);
    while (w->slots[i].key != NULL) {
        if (w->slots[i].key == v) {
            *seen = w->slots[i].index;
            return FP_OK;
        }
        i = (i + 1) & w->mask;
    }
    w->slots[i].key = v;
    w->slots[i].index = w->used++;
    *seen = -1;
    return FP_OK;
}

/* An int: its value in int64/uint64 range (the node is the int), else the encoder's
 * ["i", str(v)]: its hash (modulo 2**61 - 1) and its residue modulo 2**64 - 59. */
static int
fp_int(PyObject *v, FpHash *h)
{
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (x == -1 && PyErr_Occurred()) {
            return FP_ERROR;
        }
        fp_tag(h, FT_INT);
        fp_feed(h, (uint64_t)x);
        return FP_OK;
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
            fp_tag(h, FT_UINT);
            fp_feed(h, (uint64_t)u);
            return FP_OK;
        }
        PyErr_Clear();  /* above 2**64 - 1 */
    }
    Py_hash_t hash = PyObject_Hash(v);  /* int's own hash: no Python code */
    PyObject *residue = PyNumber_Remainder(v, fp_prime);
    if (hash == -1 || residue == NULL) {
        Py_XDECREF(residue);
        return FP_ERROR;
    }
    unsigned long long r = PyLong_AsUnsignedLongLong(residue);  /* in [0, 2**64 - 59) */
    Py_DECREF(residue);
    if (r == (unsigned long long)-1 && PyErr_Occurred()) {
        return FP_ERROR;
    }
    fp_tag(h, FT_BIGINT);
    fp_feed(h, (uint64_t)hash);
    fp_feed(h, (uint64_t)r);
    return FP_OK;
}

/* A str by length, hash, width and its first and last characters. Also attribute names, which
 * the encoder keeps whole (the node of a long str value is cut; hashing it whole is finer). */
static int
fp_str(PyObject *v, FpHash *h)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(v) < 0) {
        return FP_ERROR;
    }
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    Py_hash_t hash = PyObject_Hash(v);
    if (hash == -1) {
        return FP_ERROR;
    }
    fp_tag(h, FT_STR);
    fp_feed(h, (uint64_t)n);
    fp_feed(h, (uint64_t)hash);
    if (n > 0) {
        fp_feed(h, (uint64_t)PyUnicode_KIND(v) << 56 ^ (uint64_t)PyUnicode_READ_CHAR(v, 0) << 24
                   ^ (uint64_t)PyUnicode_READ_CHAR(v, n - 1));
    }
    return FP_OK;
}

/* The leaves Encoder._enc handles before its depth cut. FP_OK when fed (*klass: its sort
 * class), FP_NONE for a NaN, FP_NOT_LEAF for anything else. */
static int
fp_leaf(PyObject *v, FpHash *h, int *klass)
{
    PyTypeObject *tp = Py_TYPE(v);
    if (v == Py_None) {
        *klass = K_NONE;
        fp_tag(h, FT_NONE);
        return FP_OK;
    }
    if (tp == &PyLong_Type) {
        *klass = K_NUMBER;
        return fp_int(v, h);
    }
    if (tp == &PyUnicode_Type) {
        *klass = K_STR;
        return fp_str(v, h);
    }
    if (tp == &PyFloat_Type) {
        double d = PyFloat_AS_DOUBLE(v);
        if (d != d) {
            return FP_NONE;
        }
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        *klass = K_NUMBER;
        fp_tag(h, FT_FLOAT);
        fp_feed(h, bits);
        return FP_OK;
    }
    if (tp == &PyBool_Type) {
        *klass = K_NUMBER;
        fp_tag(h, v == Py_True ? FT_TRUE : FT_FALSE);
        return FP_OK;
    }
    if (tp == &PyBytes_Type) {
        Py_hash_t hash = PyObject_Hash(v);
        if (hash == -1) {
            return FP_ERROR;
        }
        *klass = K_BYTES;
        fp_tag(h, FT_BYTES);
        fp_feed(h, (uint64_t)PyBytes_GET_SIZE(v));
        fp_feed(h, (uint64_t)hash);
        return FP_OK;
    }
    if (tp == &PyByteArray_Type && PyByteArray_GET_SIZE(v) > FP_MAX_BYTES) {  /* ["B", head, len] */
        *klass = K_OTHER;
        fp_tag(h, FT_LONG_BA);
        fp_feed(h, (uint64_t)PyByteArray_GET_SIZE(v));
        fp_data(h, PyByteArray_AS_STRING(v), FP_MAX_BYTES);
        return FP_OK;
    }
    return FP_NOT_LEAF;
}

/* *kind = kinds[tp] (borrowed). FP_NONE when tp is not there (then w->unknown names it, when
 * reporting) or its metaclass hashes or compares otherwise than ``type`` (the lookup would run
 * its code). */
static int
fp_kind(FpWalk *w, PyTypeObject *tp, PyObject **kind)
{
    if (tp == w->last_type) {
        *kind = w->last_kind;
        return FP_OK;
    }
    PyTypeObject *meta = Py_TYPE(tp);
    if (meta->tp_hash != PyType_Type.tp_hash || meta->tp_richcompare != PyType_Type.tp_richcompare) {
        return FP_NONE;
    }
    PyObject *found = PyDict_GetItemWithError(w->kinds, (PyObject *)tp);
    if (found == NULL) {
        if (PyErr_Occurred()) {
            return FP_ERROR;
        }
        if (w->report && w->unknown == NULL) {
            w->unknown = (PyObject *)tp;
        }
        return FP_NONE;
    }
    w->last_type = tp;
    w->last_kind = found;
    *kind = found;
    return FP_OK;
}

/* What type_path(tp) shows: a static type by address (it lives as long as the process), a heap
 * type (kept alive by kinds) by address and __qualname__. */
static int
fp_type(FpWalk *w, PyTypeObject *tp, FpHash *h)
{
    fp_feed(h, (uint64_t)(uintptr_t)tp);
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return FP_OK;
    }
    PyObject *kind;
    int rc = fp_kind(w, tp, &kind);
    if (rc != FP_OK) {
        return rc;
    }
    PyObject *qualname = ((PyHeapTypeObject *)tp)->ht_qualname;
    if (qualname == NULL || !PyUnicode_CheckExact(qualname)) {
        return FP_NONE;
    }
    return fp_str(qualname, h);
}

static int fp_walk(FpWalk *w, PyObject *v, int depth, FpHash *h);

/* A set or frozenset of leaves of one sort class: the encoder sorts them, so equal sets encode
 * alike whatever their iteration order; each item is hashed alone and the hashes summed. */
static int
fp_set(PyObject *v, FpHash *h)
{
    PyObject *it = PyObject_GetIter(v), *item;
    if (it == NULL) {
        return FP_ERROR;
    }
    FpHash sum = {0, 0};
    int common = 0, rc = FP_OK;
    while ((item = PyIter_Next(it)) != NULL) {
        FpHash one = fp_seed;
        int klass = K_OTHER;
        rc = fp_leaf(item, &one, &klass);
        Py_DECREF(item);  /* the set still holds it */
        if (rc == FP_NOT_LEAF || (rc == FP_OK && common != 0 && klass != common)) {
            rc = FP_NONE;  /* sorted() would fail: the node keeps the iteration order */
        }
        if (rc != FP_OK) {
            break;
        }
        common = klass;
        sum.a += one.a;
        sum.b += fp_mix(one.b);
    }
    Py_DECREF(it);
    if (rc == FP_OK && PyErr_Occurred()) {
        return FP_ERROR;
    }
    fp_feed(h, sum.a);
    fp_feed(h, sum.b);
    return rc;
}

/* The instance dict (new reference) as getattr(v, "__dict__") and generic attribute lookup see
 * it; NULL with FP_NONE in *rc when v has none or it holds a key that is not an exact str (a
 * lookup could run its __eq__), NULL with FP_ERROR on error. */
static PyObject *
fp_instance_dict(PyObject *v, int *rc)
{
    PyObject *fields = PyObject_GenericGetDict(v, NULL);
    if (fields == NULL) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            *rc = FP_ERROR;
            return NULL;
        }
        PyErr_Clear();
        *rc = FP_NONE;
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *name, *value;
    int ok = PyDict_CheckExact(fields);
    while (ok && PyDict_Next(fields, &pos, &name, &value)) {
        ok = PyUnicode_CheckExact(name);
    }
    if (!ok) {
        Py_DECREF(fields);
        *rc = FP_NONE;
        return NULL;
    }
    *rc = FP_OK;
    return fields;
}

/* The first FP_MAX_ITEMS of n items (a list's, a tuple's or a namedtuple's). */
static int
fp_items(FpWalk *w, PyObject *const *items, Py_ssize_t n, int depth, FpHash *h)
{
    fp_feed(h, (uint64_t)n);
    for (Py_ssize_t i = 0; i < n && i < FP_MAX_ITEMS; i++) {
        int rc = fp_walk(w, items[i], depth + 1, h);
        if (rc != FP_OK) {
            return rc;
        }
    }
    return FP_OK;
}

/* The object in slot ``member`` of v as getattr reads it (borrowed): NULL when unset (an
 * AttributeError; a T_OBJECT member reads None instead), or FP_NONE in *rc when the descriptor
 * is not an object slot of v's type. */
static PyObject *
fp_slot(PyObject *v, PyObject *member, int *rc)
{
    if (!Py_IS_TYPE(member, &PyMemberDescr_Type)) {
        *rc = FP_NONE;
        return NULL;
    }
    PyMemberDescrObject *descr = (PyMemberDescrObject *)member;
    int type = descr->d_member->type;
    if ((type != T_OBJECT_EX && type != T_OBJECT) || !PyType_IsSubtype(Py_TYPE(v), descr->d_common.d_type)) {
        *rc = FP_NONE;
        return NULL;
    }
    *rc = FP_OK;
    PyObject *value = *(PyObject **)((char *)v + descr->d_member->offset);
    return value == NULL && type == T_OBJECT ? Py_None : value;
}

/* A plain object, ["obj", path, name, value, ...]: its type, then the instance dict's items
 * (when ``with_dict``) and the set slots of ``slots`` ((name, member) pairs, or NULL), the
 * first FP_MAX_ITEMS of them with their count. */
static int
fp_object(FpWalk *w, PyObject *v, int with_dict, PyObject *slots, int depth, FpHash *h)
{
    int rc = FP_OK;
    PyObject *fields = NULL, *name, *value;
    if (with_dict && (fields = fp_instance_dict(v, &rc)) == NULL) {
        return rc;
    }
    Py_ssize_t count = fields != NULL ? PyDict_GET_SIZE(fields) : 0;
    Py_ssize_t nslots = slots != NULL ? PyTuple_GET_SIZE(slots) : 0;
    for (Py_ssize_t i = 0; rc == FP_OK && i < nslots; i++) {  /* hasattr(v, s) */
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        if (!PyTuple_CheckExact(slot) || PyTuple_GET_SIZE(slot) != 2 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(slot, 0))) {
            rc = FP_NONE;
        }
        else if (fp_slot(v, PyTuple_GET_ITEM(slot, 1), &rc) != NULL) {
            count++;
        }
    }
    if (rc == FP_OK) {
        fp_tag(h, FT_OBJ);
        rc = fp_type(w, Py_TYPE(v), h);
        fp_feed(h, (uint64_t)count);
    }
    Py_ssize_t pos = 0, shown = 0;
    while (rc == FP_OK && shown < FP_MAX_ITEMS && fields != NULL && PyDict_Next(fields, &pos, &name, &value)) {
        if ((rc = fp_str(name, h)) == FP_OK) {
            rc = fp_walk(w, value, depth + 1, h);
        }
        shown++;
    }
    for (Py_ssize_t i = 0; rc == FP_OK && shown < FP_MAX_ITEMS && i < nslots; i++) {
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        if ((value = fp_slot(v, PyTuple_GET_ITEM(slot, 1), &rc)) != NULL) {
            if ((rc = fp_str(PyTuple_GET_ITEM(slot, 0), h)) == FP_OK) {
                rc = fp_walk(w, value, depth + 1, h);
            }
            shown++;
        }
    }
    Py_XDECREF(fields);  /* the object still holds it */
    return rc;
}

/* Field ``field`` of spec (a (name, member) or (name, None) pair) of dataclass v, as
 * getattr(v, name, None) reads it without running code: borrowed, or NULL with *rc set
 * (FP_NONE: this walk cannot read it; FP_ERROR: an exception). *fields caches the instance
 * dict (a new reference the caller releases); *name is the field's name (borrowed). */
static PyObject *
fp_dataclass_field(PyObject *v, PyObject *field, PyObject **fields, PyObject **name, int *rc)
{
    if (!PyTuple_CheckExact(field) || PyTuple_GET_SIZE(field) != 2
            || !PyUnicode_CheckExact(*name = PyTuple_GET_ITEM(field, 0))) {
        *rc = FP_NONE;
        return NULL;
    }
    PyObject *where = PyTuple_GET_ITEM(field, 1), *value;
    if (where != Py_None) {
        value = fp_slot(v, where, rc);
        if (*rc != FP_OK) {
            return NULL;
        }
        return value != NULL ? value : Py_None;  /* an unset slot: getattr's default */
    }
    if (*fields == NULL && (*fields = fp_instance_dict(v, rc)) == NULL) {
        return NULL;
    }
    value = PyDict_GetItemWithError(*fields, *name);  /* exact str keys only: no code */
    if (value == NULL) {
        *rc = PyErr_Occurred() ? FP_ERROR : FP_NONE;  /* getattr would read the class */
    }
    return value;
}

/* A dataclass, ["dc", path, name, value, ...]: its type, then getattr(v, name, None) for each
 * field of ``spec`` (all of them: the encoder does not cut dataclasses), a field being
 * (name, member) for a slot and (name, None) for the instance dict. */
static int
fp_dataclass(FpWalk *w, PyObject *v, PyObject *spec, int depth, FpHash *h)
{
    fp_tag(h, FT_DC);
    int rc = fp_type(w, Py_TYPE(v), h);
    PyObject *fields = NULL;
    for (Py_ssize_t i = 0; rc == FP_OK && i < PyTuple_GET_SIZE(spec); i++) {
        PyObject *name, *value = fp_dataclass_field(v, PyTuple_GET_ITEM(spec, i), &fields, &name, &rc);
        if (value == NULL) {
            break;
        }
        if ((rc = fp_str(name, h)) == FP_OK) {
            rc = fp_walk(w, value, depth + 1, h);
        }
    }
    Py_XDECREF(fields);
    return rc;
}

/* The kind number of ``kind`` (an int, or a tuple whose first item is one), or -1. */
static long
fp_kind_number(PyObject *kind)
{
    if (PyTuple_CheckExact(kind) && PyTuple_GET_SIZE(kind) >= 2) {
        kind = PyTuple_GET_ITEM(kind, 0);
    }
    if (!PyLong_CheckExact(kind)) {
        return -1;
    }
    long k = PyLong_AsLong(kind);
    if (k == -1 && PyErr_Occurred()) {
        PyErr_Clear();  /* too big: not a kind */
    }
    return k;
}

/* True if reading what a kind ``k`` implies through tp's attribute lookup runs no code. */
static int
fp_lookup_ok(PyTypeObject *tp, long k)
{
    getattrofunc get = tp->tp_getattro;
    if (get == PyObject_GenericGetAttr) {
        return k != KIND_CLASS;
    }
    if (get == PyType_Type.tp_getattro) {  /* a class: isinstance() reads its __class__ */
        return k == KIND_CLASS;
    }
    if (get == PyModule_Type.tp_getattro || get == PyMethod_Type.tp_getattro
            || get == Py_GenericAliasType.tp_getattro) {
        return k == KIND_OPAQUE;  /* they find __class__ before anything of their own */
    }
    return get == getattr_hook && getattr_hook != NULL && k == KIND_PLAIN;  /* finds __dict__ */
}

/* Does ``kind`` (the entry of ``kinds`` for v's type, whose kind number is k) have the shape
 * its number says, for the walk of ``v``? The fingerprint and the display encoder read an
 * object only through a kind that fits (else: no fingerprint, the Python codec). */
static int
kind_fits(long k, PyObject *kind, PyObject *v)
{
    int shaped = PyTuple_CheckExact(kind);
    return (k == KIND_PLAIN && !shaped) || (k == KIND_NAMEDTUPLE && !shaped && PyTuple_Check(v))
           || (k == KIND_SLOTTED && shaped && PyTuple_GET_SIZE(kind) == 3
               && PyTuple_CheckExact(PyTuple_GET_ITEM(kind, 2)))
           || (k == KIND_DATACLASS && shaped && PyTuple_CheckExact(PyTuple_GET_ITEM(kind, 1)));
}

static int
fp_walk(FpWalk *w, PyObject *v, int depth, FpHash *h)
{
    int klass;
    int rc = fp_leaf(v, h, &klass);
    if (rc != FP_NOT_LEAF) {
        return rc;
    }
    PyTypeObject *tp = Py_TYPE(v);
    if (depth >= FP_MAX_DEPTH) {  /* ["...", type_path(cls)] */
        fp_tag(h, FT_CUT);
        return fp_type(w, tp, h);
    }
    int container = tp == &PyList_Type || tp == &PyTuple_Type || tp == &PyDict_Type
                    || tp == &PySet_Type || tp == &PyFrozenSet_Type || tp == &PyByteArray_Type;
    PyObject *kind = NULL;
    long k = -1;
    if (!container) {
        if ((rc = fp_kind(w, tp, &kind)) != FP_OK) {
            return rc;
        }
        k = fp_kind_number(kind);
        if (!fp_lookup_ok(tp, k)) {
            return FP_NONE;
        }
        if (k == KIND_OPAQUE) {  /* ["?", path, "<path object>", reason]: not registered */
            fp_tag(h, FT_OPAQUE);
            return fp_type(w, tp, h);
        }
        if (k == KIND_CLASS) {  /* ["type", type_path(v)]: not registered */
            fp_tag(h, FT_CLASS);
            return PyType_Check(v) ? fp_type(w, (PyTypeObject *)v, h) : FP_NONE;
        }
        if (!kind_fits(k, kind, v)) {
            return FP_NONE;
        }
    }
    Py_ssize_t seen;
    if (fp_register(w, v, &seen) < 0) {
        return FP_ERROR;
    }
    if (seen >= 0) {  /* ["@", seen] */
        fp_tag(h, FT_REF);
        fp_feed(h, (uint64_t)seen);
        return FP_OK;
    }
    if (tp == &PyList_Type) {
        fp_tag(h, FT_LIST);
        return fp_items(w, PySequence_Fast_ITEMS(v), PyList_GET_SIZE(v), depth, h);
    }
    if (tp == &PyTuple_Type) {
        fp_tag(h, FT_TUPLE);
        return fp_items(w, PySequence_Fast_ITEMS(v), PyTuple_GET_SIZE(v), depth, h);
    }
    if (tp == &PyDict_Type) {
        fp_tag(h, FT_DICT);
        fp_feed(h, (uint64_t)PyDict_GET_SIZE(v));
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        for (int n = 0; n < FP_MAX_ITEMS && PyDict_Next(v, &pos, &key, &value); n++) {
            if ((rc = fp_walk(w, key, depth + 1, h)) != FP_OK || (rc = fp_walk(w, value, depth + 1, h)) != FP_OK) {
                return rc;
            }
        }
        return FP_OK;
    }
    if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        fp_tag(h, tp == &PySet_Type ? FT_SET : FT_FROZENSET);
        fp_feed(h, (uint64_t)PySet_GET_SIZE(v));
        return fp_set(v, h);
    }
    if (tp == &PyByteArray_Type) {  /* ["ba", bytes(v)]: at most FP_MAX_BYTES here */
        fp_tag(h, FT_BA);
        fp_feed(h, (uint64_t)PyByteArray_GET_SIZE(v));
        fp_data(h, PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v));
        return FP_OK;
    }
    switch (k) {
    case KIND_NAMEDTUPLE:
        fp_tag(h, FT_NT);
        if ((rc = fp_type(w, tp, h)) != FP_OK) {
            return rc;
        }
        return fp_items(w, ((PyTupleObject *)v)->ob_item, PyTuple_GET_SIZE(v), depth, h);
    case KIND_SLOTTED:
        return fp_object(w, v, PyTuple_GET_ITEM(kind, 1) == Py_True, PyTuple_GET_ITEM(kind, 2), depth, h);
    case KIND_DATACLASS:
        return fp_dataclass(w, v, PyTuple_GET_ITEM(kind, 1), depth, h);
    default:
        return fp_object(w, v, 1, NULL, depth, h);
    }
}

/* A walk with no object registered yet, classifying types by ``kinds`` (report: see above). */
static void
fp_walk_start(FpWalk *w, PyObject *kinds, int report)
{
    w->kinds = kinds;
    w->report = report;
    w->last_type = NULL;
    w->last_kind = NULL;
    w->unknown = NULL;
    w->used = 0;
    w->slots = NULL;
    w->mask = 0;
}

/* The fingerprint of ``value`` (new reference): 16 bytes, None, or (reporting) the type not in
 * ``kinds`` that ended the walk. NULL with MemoryError. */
static PyObject *
fingerprint_of(PyObject *value, PyObject *kinds, int report)
{
    FpWalk w;
    fp_walk_start(&w, kinds, report);
    FpHash h = fp_seed;
    int collecting = PyGC_Disable();  /* an allocation must not run finalizers mid-walk (3.11) */
    int rc = fp_walk(&w, value, 0, &h);
    if (collecting) {
        PyGC_Enable();
    }
    PyMem_Free(w.slots);
    if (rc == FP_ERROR) {
        return NULL;
    }
    if (rc != FP_OK) {
        return Py_NewRef(w.unknown != NULL ? w.unknown : Py_None);
    }
    char digest[16];
    memcpy(digest, &h.a, 8);
    memcpy(digest + 8, &h.b, 8);
    return PyBytes_FromStringAndSize(digest, 16);
}

PyDoc_STRVAR(display_fingerprint_doc,
"display_fingerprint(value, kinds, report=False)\n--\n\n"
"16 bytes that change whenever tracer.display(value) would give a different node (two 64-bit\n"
"hashes of what Encoder._enc reads under the DISPLAY profile), or None when the value graph\n"
"holds something the fingerprint does not know: a NaN, a set of non-leaves or of mixed kinds,\n"
"an object whose type ``kinds`` does not describe. Equal fingerprints mean equal nodes (up to\n"
"hash collisions); different ones may still encode alike. Runs no Python code and raises\n"
"only MemoryError.\n\n"
"kinds: {type: kind}, kept alive by the caller, what the encoder makes of the type's\n"
"instances: KIND_PLAIN (from __dict__ alone), (KIND_SLOTTED, has_dict, ((name, member), ...)),\n"
"(KIND_DATACLASS, ((name, member or None), ...)), KIND_NAMEDTUPLE, KIND_OPAQUE (a placeholder\n"
"naming the type only), KIND_CLASS (for a metaclass: its instances are classes), KIND_OTHER\n"
"(no fingerprint; the type may still be named at the depth cut). With report true, a type not\n"
"in kinds ends the walk and is returned instead of None, for the caller to classify.\n\n"
"Raises TypeError when kinds is not a dict.");

static PyObject *
display_fingerprint(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > 3 || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "display_fingerprint(value, kinds: dict, report: bool = False)");
        return NULL;
    }
    int report = nargs == 3 ? PyObject_IsTrue(args[2]) : 0;
    if (report < 0) {
        return NULL;
    }
    return fingerprint_of(args[0], args[1], report);
}

PyDoc_STRVAR(generic_dict_doc,
"generic_dict(descriptor)\n--\n\n"
"True if ``descriptor`` (a class's __dict__ attribute) reads the instance dict as\n"
"display_fingerprint does: the __dict__ of a class defined in Python, or a C getset whose\n"
"getter is PyObject_GenericGetDict.");

static PyObject *
generic_dict(PyObject *module, PyObject *descriptor)
{
    if (!Py_IS_TYPE(descriptor, &PyGetSetDescr_Type)) {
        Py_RETURN_FALSE;
    }
    getter get = ((PyGetSetDescrObject *)descriptor)->d_getset->get;
    return PyBool_FromLong(get == PyObject_GenericGetDict || (subtype_dict != NULL && get == subtype_dict));
}

/* subtype_dict and slot_tp_getattr_hook, read from throwaway classes: the getter every Python
 * class's __dict__ has, and the attribute lookup of a Python class with __getattr__. */
static int
find_python_class_slots(void)
{
    PyObject *cls = PyObject_CallFunction((PyObject *)&PyType_Type, "s()N", "probe", PyDict_New());
    if (cls == NULL) {
        return -1;
    }
    PyObject *descr = PyDict_GetItemString(((PyTypeObject *)cls)->tp_dict, "__dict__");
    if (descr != NULL && Py_IS_TYPE(descr, &PyGetSetDescr_Type)) {
        subtype_dict = ((PyGetSetDescrObject *)descr)->d_getset->get;
    }
    Py_DECREF(cls);
    PyObject *ns = Py_BuildValue("{sO}", "__getattr__", Py_None);
    cls = ns != NULL ? PyObject_CallFunction((PyObject *)&PyType_Type, "s()N", "probe", ns) : NULL;
    if (cls == NULL) {
        return -1;
    }
    if (((PyTypeObject *)cls)->tp_getattro != PyObject_GenericGetAttr) {
        getattr_hook = ((PyTypeObject *)cls)->tp_getattro;
    }
    Py_DECREF(cls);
    return 0;
}
