/* The per-frame local trace function of the trace recorder, in C (optional speed-up), and the
 * display fingerprint that spares it re-encoding unchanged objects.
 *
 * ``LocalTracer(rec, ts, act, display, immutable, chunk_steps, fingerprint=None, node_of=None)``
 * is a callable set as a frame's ``f_trace`` (the settrace backend) or called for LINE events
 * (the monitoring backend). It does what the ``local`` closure of
 * ``replay.replayer.tracer.line_tracer`` does, so traces are byte-identical with and without
 * it (tests/unit/test_fastline.py compares them). Called as ``obj(frame, event, arg)``:
 *
 *   line:      n = len(rec.steps); effect = effects.get(act.line); act.line = frame.f_lineno;
 *              if effect is simple (effect[3]): re-encode the names of effect[1] that still
 *              hold the same mutable object, appending (rec.base + n, serial, name, node) to
 *              rec.changes when the node changed; then compare the names of effect[0] by
 *              identity: rebound -> (rec.base + n, serial, name, node), node = the value for
 *              an int in int64/uint64 range or a float, else display(value); gone from the
 *              frame -> (rec.base + n, serial, name). Otherwise rec.diff(act, frame, effect,
 *              rec.base + n). Then append (LINE, cid, line, serial, depth, thread) to
 *              rec.steps; when n >= chunk_steps - 1, rec.flush() and return None if that
 *              spent the step budget (rec.stopped); return self.
 *              With ``fingerprint`` (tracer.fingerprint), as TraceRecorder.diff does: a name to
 *              re-encode is skipped while fingerprint(value) is the one act.fps keeps with
 *              its current node; a re-encoded or rebound mutable value gets its node from
 *              node_of(value, fp) (tracer._node_of: display, or a node made for the same
 *              fingerprint) and act.fps[name] = (fp, node) (tests/unit/test_fingerprint.py).
 *   return:    rec.pop(ts, act, RETURN, frame.f_lineno, arg); return None.
 *   exception: rec.exception(ts, act, frame.f_lineno, arg[1]); return self.
 *   other:     return self.
 *
 * What the closure captures when it is made is captured at construction (the recorder's step
 * and change lists, ``rec.diff``, the activation's dicts and numbers); ``act.line`` is read
 * and written at every line event, as the closure does (through its ``__slots__`` member
 * when Activation is a plain slots class, else by attribute).
 *
 * Errors, as in the closure: an ``Exception`` raised while handling an event (by the
 * recorder's methods, by reading the frame, or a MemoryError here) never reaches the traced
 * program: it is passed to ``rec.failed(exc)`` (which keeps it for the trace header and stops
 * tracing) and the call returns None. Other BaseExceptions (KeyboardInterrupt, SystemExit)
 * propagate, as they do from the closure.
 *
 * ``display_fingerprint(value, kinds, report=False)``: 16 bytes that change whenever
 * tracer.display(value) would give another node (see its section below).
 *
 * ``GlobalTracer(rec, <LocalTracer's arguments>, activation=None, snapshot=None)`` is
 * SettraceTracer's global trace function, installed with PyEval_SetTrace (no settrace
 * trampoline): call events (and, with ``activation``, the common case of TraceRecorder.push)
 * in C, every other event straight to the frame's LocalTracer (see its section below).
 * ``Steps()`` is TraceRecorder.steps (rows of six u32 instead of a list of tuples), and
 * ``Returning(...)`` tracer._returning, which LocalTracer calls without a Python call.
 *
 * ``chunk_columns(steps, exception_kind)`` does in one C pass what TraceRecorder.flush
 * computes from a chunk's step tuples (the columns' bytes, the per-frame hit counts, the
 * summary's code ids, code-line keys, exception count and depth range); see its docstring.
 *
 * API: the public C API of CPython 3.11+ (PyFrame_GetLineNumber, PyFrame_GetLocals,
 * vectorcall, PyMember_GetOne/SetOne, PyEval_SetTrace; the fingerprint also reads the public
 * structs of member and getset descriptors and of heap types, the global tracer the frame
 * type's own f_trace accessors and f_trace_lines member definition); no internal headers.
 * Not for free-threaded builds.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

/* Step kinds: format constants replay.replayer.tracer.LINE and RETURN (the tests check). */
#define KIND_LINE 1
#define KIND_RETURN 2

static PyObject *s_line, *s_return, *s_exception, *s_base, *s_flush, *s_pop, *s_get,
    *s_f_lineno, *s_f_locals, *s_code, *s_effects, *s_cid, *s_serial, *s_depth, *s_values,
    *s_nodes, *s_index, *s_steps, *s_changes, *s_diff, *s_stopped, *s_failed, *s_fps, *s_placeholder, *s_unreadable;
static PyObject *kind_line, *kind_return;
static PyObject *s_frame, *s_return_name, *s_act_end, *s_stack, *s_live;
static PyObject *s_call, *s_in_gc, *s_codes, *s_threads, *s_thread, *s_push, *s_in_scope, *s_lib,
    *s_f_trace, *s_f_trace_lines, *s_qualname, *s_module_level, *s_kids;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *rec, *ts, *act;       /* recorder, its _Thread, the Activation */
    PyObject *steps, *changes;      /* rec.steps, rec.changes (lists) */
    PyObject *diff;                 /* rec.diff (bound method) */
    PyObject *effects;              /* act.code.effects: {line: (check, reencode, full, simple)} */
    PyObject *values, *nodes;       /* act.values, act.nodes (dicts) */
    PyObject *display, *immutable;  /* tracer.display, tracer._IMMUTABLE */
    PyObject *fingerprint, *fps;    /* tracer.fingerprint and act.fps, or NULL (not used) */
    PyObject *node_of;              /* tracer._node_of(value, fp), or NULL: display(value) */
    PyObject *cid, *serial, *depth, *thread;  /* the step tuple's fixed fields */
    PyObject *line_descr;           /* type(act).line when its slot is used directly, else NULL */
    PyMemberDef *line_member;       /* its member definition (kept alive by line_descr) */
    Py_ssize_t chunk_last;          /* chunk_steps - 1 */
    PyObject *kinds;                /* tracer._TYPE_KINDS (fingerprints walked here first), or NULL */
    PyObject *returning;            /* tracer._returning: return events recorded here, or NULL */
    PyObject *act_end, *stack, *live;  /* rec._act_end, ts.stack, rec.live (with returning) */
    PyObject *frame_descr;          /* type(act).frame when its slot is used directly, else NULL */
    PyMemberDef *frame_member;
    int library;                    /* a library function's activation (GlobalTracer): its return only */
    PyObject *rec_dict;             /* rec.__dict__ when rec.base is read from it, else NULL */
    PyObject *last_base, *last_step;  /* step_number's last rec.base and rec.base + last_n */
    Py_ssize_t last_n;
} LocalTracer;

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
        PyObject *field = PyTuple_GET_ITEM(spec, i), *name, *where, *value;
        if (!PyTuple_CheckExact(field) || PyTuple_GET_SIZE(field) != 2
                || !PyUnicode_CheckExact(name = PyTuple_GET_ITEM(field, 0))) {
            rc = FP_NONE;
            break;
        }
        where = PyTuple_GET_ITEM(field, 1);
        if (where != Py_None) {
            value = fp_slot(v, where, &rc);
            if (rc != FP_OK) {
                break;
            }
            if (value == NULL) {
                value = Py_None;  /* an unset slot: getattr's default */
            }
        }
        else {
            if (fields == NULL && (fields = fp_instance_dict(v, &rc)) == NULL) {
                break;
            }
            value = PyDict_GetItemWithError(fields, name);  /* exact str keys only: no code */
            if (value == NULL) {
                rc = PyErr_Occurred() ? FP_ERROR : FP_NONE;  /* getattr would read the class */
                break;
            }
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
        int shaped = PyTuple_CheckExact(kind);
        if (!((k == KIND_PLAIN && !shaped) || (k == KIND_NAMEDTUPLE && !shaped && PyTuple_Check(v))
              || (k == KIND_SLOTTED && shaped && PyTuple_GET_SIZE(kind) == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(kind, 2)))
              || (k == KIND_DATACLASS && shaped && PyTuple_CheckExact(PyTuple_GET_ITEM(kind, 1))))) {
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

/* The fingerprint of ``value`` (new reference): 16 bytes, None, or (reporting) the type not in
 * ``kinds`` that ended the walk. NULL with MemoryError. */
static PyObject *
fingerprint_of(PyObject *value, PyObject *kinds, int report)
{
    FpWalk w;
    w.kinds = kinds;
    w.report = report;
    w.last_type = NULL;
    w.last_kind = NULL;
    w.unknown = NULL;
    w.used = 0;
    w.slots = NULL;
    w.mask = 0;
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

/* ------------------------------------------------------------------ display encoding */

/* ``Display(fallback, kinds=None)``: a callable that returns tracer.display(value), the node of
 * Encoder(DISPLAY).encode(value) (replay/snapshot/encoding.py), built in C for the values it
 * knows and by ``fallback(value)`` (the Python display) for all others. Known: None, bool,
 * float, int (in int64/uint64 range the int itself, else ["i", str(v)]), str (cut to
 * DN_MAX_STR characters as ["S", head, length], with escaped surrogates in a cut head; lone
 * surrogates as ["su", utf-8 with surrogatepass]), bytes and bytearray (cut to FP_MAX_BYTES
 * as ["B", head, length]), the exact types list, tuple, dict, set and frozenset (sets of
 * leaves only: sorted as sorted() sorts them, else in iteration order), bytearray, the depth
 * cut ["...", type_path(cls)] and back references ["@", n]; and, when ``kinds`` (the
 * fingerprint's table, tracer._TYPE_KINDS) describes the type, objects as the fingerprint
 * reads them: KIND_PLAIN and KIND_SLOTTED ["obj", ...], KIND_DATACLASS ["dc", ...],
 * KIND_NAMEDTUPLE ["nt", ...], KIND_CLASS ["type", path] and the KIND_OPAQUE placeholders of
 * types implemented in C or subclasses of built-in value types. A value graph that holds
 * anything else (a subclass of a built-in container, an enum, a datetime, an exception, a
 * type whose naming or attribute lookup is customised, ...) is encoded by ``fallback``
 * whole, as is any value whose encoding here fails (the fallback then fails alike and makes
 * its placeholder). No Python code runs during the C walk (the collector is off while it runs).
 *
 * Attributes ``encoded`` and ``fallbacks`` count the calls answered here and by the fallback
 * (benchmarks and tests read them). */

#define DN_MAX_STR 200    /* encoding.DISPLAY: max_str */

static PyObject *t_list, *t_tuple, *t_dict, *t_set, *t_frozenset, *t_ba, *t_ref, *t_more, *t_bigint,
    *t_cut_str, *t_surrogates, *t_cut_bytes, *t_deep, *t_obj, *t_dc, *t_nt, *t_type,
    *r_resource, *s_module_attr;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *fallback;   /* the Python display */
    PyObject *kinds;      /* tracer._TYPE_KINDS, or NULL: objects always fall back */
    PyObject *nodes;      /* node_of's nodes by fingerprint (a dict, oldest first) */
    Py_ssize_t encoded, fallbacks;
} Display;

#define DN_MAX_NODES 64   /* tracer._MAX_NODES */

static int is_unreadable(PyObject *node);

static PyTypeObject DisplayType;

static PyObject *dn_enc(FpWalk *w, PyObject *v, int depth);

/* [a, b] or [a, b, c] (the items stolen; NULL items fail the whole). */
static PyObject *
dn_list(Py_ssize_t n, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *items[3] = {a, b, c};
    PyObject *node = NULL;
    if (a != NULL && b != NULL && (n == 2 || c != NULL)) {
        node = PyList_New(n);
    }
    for (Py_ssize_t i = 0; i < 3; i++) {
        if (i < n && node != NULL) {
            PyList_SET_ITEM(node, i, items[i]);
        }
        else {
            Py_XDECREF(items[i]);
        }
    }
    return node;
}

/* True if the str holds a lone surrogate (what str.encode("utf-8") refuses). */
static int
dn_has_surrogates(PyObject *s)
{
    if (PyUnicode_IS_ASCII(s) || PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) {
        return 0;
    }
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch >= 0xD800 && ch <= 0xDFFF) {
            return 1;
        }
    }
    return 0;
}

/* Encoder._enc of a str under DISPLAY. */
static PyObject *
dn_str(PyObject *v)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(v) < 0) {
        return NULL;
    }
#endif
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    if (n > DN_MAX_STR) {
        PyObject *cut = PyUnicode_Substring(v, 0, DN_MAX_STR);
        if (cut != NULL && dn_has_surrogates(cut)) {  /* shown, not rebuilt: escape surrogates */
            PyObject *raw = PyUnicode_AsEncodedString(cut, "utf-8", "backslashreplace");
            Py_SETREF(cut, raw != NULL ? PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL)
                                       : NULL);
            Py_XDECREF(raw);
        }
        return dn_list(3, Py_NewRef(t_cut_str), cut, PyLong_FromSsize_t(n));
    }
    if (dn_has_surrogates(v)) {
        return dn_list(2, Py_NewRef(t_surrogates), PyUnicode_AsEncodedString(v, "utf-8", "surrogatepass"), NULL);
    }
    return Py_NewRef(v);
}

/* ["+", rest]: the items a container's node leaves out. */
static PyObject *
dn_more(Py_ssize_t rest)
{
    return dn_list(2, Py_NewRef(t_more), PyLong_FromSsize_t(rest), NULL);
}

/* cls.__module__ and cls.__qualname__ (new references) as the class's attribute lookup reads
 * them, -1 when that lookup may be customised (a metaclass other than ``type`` whose class
 * ``kinds`` does not hold: the fingerprint's classification checked the names of the classes
 * it holds) or a name is not an exact str (f-strings would format it), no exception set; -1
 * with one on error. */
static int
dn_type_names(FpWalk *w, PyTypeObject *tp, PyObject **module, PyObject **qualname)
{
    if (Py_TYPE(tp) != &PyType_Type) {
        PyObject *kind;
        if (w->kinds == NULL || fp_kind(w, tp, &kind) != FP_OK) {
            return -1;
        }
    }
    if (!(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {  /* type_module() and type_qualname() */
        const char *dot = strrchr(tp->tp_name, '.');
        *module = dot != NULL ? PyUnicode_DecodeUTF8(tp->tp_name, (Py_ssize_t)(dot - tp->tp_name), NULL)
                              : PyUnicode_FromString("builtins");
        *qualname = *module != NULL ? PyUnicode_FromString(dot != NULL ? dot + 1 : tp->tp_name) : NULL;
        if (*qualname == NULL) {
            Py_CLEAR(*module);
            return -1;
        }
        return 0;
    }
    PyObject *mod = PyDict_GetItemWithError(tp->tp_dict, s_module_attr);
    PyObject *qual = ((PyHeapTypeObject *)tp)->ht_qualname;
    if (mod == NULL || !PyUnicode_CheckExact(mod) || qual == NULL || !PyUnicode_CheckExact(qual)) {
        return -1;
    }
    *module = Py_NewRef(mod);
    *qualname = Py_NewRef(qual);
    return 0;
}

/* type_path(tp): "module:qualname" (new reference), or NULL (see dn_type_names). */
static PyObject *
dn_type_path(FpWalk *w, PyTypeObject *tp)
{
    PyObject *module, *qualname;
    if (dn_type_names(w, tp, &module, &qualname) < 0) {
        return NULL;
    }
    PyObject *path = PyUnicode_FromFormat("%U:%U", module, qualname);
    Py_DECREF(module);
    Py_DECREF(qualname);
    return path;
}

/* A node of ``head`` items (given, stolen) then the first FP_MAX_ITEMS of n items encoded at
 * depth + 1, then ["+", rest] when some are left out (Encoder._items). */
static PyObject *
dn_sequence(FpWalk *w, PyObject *tag, PyObject *path, PyObject *const *items, Py_ssize_t n, int depth)
{
    Py_ssize_t head = path != NULL ? 2 : 1, shown = n < FP_MAX_ITEMS ? n : FP_MAX_ITEMS;
    PyObject *node = PyList_New(head + shown + (n > shown));
    if (node == NULL) {
        Py_XDECREF(path);
        return NULL;
    }
    PyList_SET_ITEM(node, 0, Py_NewRef(tag));
    if (path != NULL) {
        PyList_SET_ITEM(node, 1, path);
    }
    for (Py_ssize_t i = 0; i < shown; i++) {
        PyObject *item = dn_enc(w, items[i], depth + 1);
        if (item == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        PyList_SET_ITEM(node, head + i, item);
    }
    if (n > shown) {
        PyObject *more = dn_more(n - shown);
        if (more == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        PyList_SET_ITEM(node, head + shown, more);
    }
    return node;
}

/* ["d", k, v, ...]: the first FP_MAX_ITEMS entries (Encoder._dict_items). */
static PyObject *
dn_dict(FpWalk *w, PyObject *v, int depth)
{
    Py_ssize_t n = PyDict_GET_SIZE(v), shown = n < FP_MAX_ITEMS ? n : FP_MAX_ITEMS;
    PyObject *node = PyList_New(1 + 2 * shown + (n > shown)), *key, *value;
    if (node == NULL) {
        return NULL;
    }
    PyList_SET_ITEM(node, 0, Py_NewRef(t_dict));
    Py_ssize_t pos = 0;
    for (Py_ssize_t i = 0; i < shown; i++) {
        PyObject *k, *x;
        if (!PyDict_Next(v, &pos, &key, &value) || (k = dn_enc(w, key, depth + 1)) == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        PyList_SET_ITEM(node, 1 + 2 * i, k);
        if ((x = dn_enc(w, value, depth + 1)) == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        PyList_SET_ITEM(node, 2 + 2 * i, x);
    }
    if (n > shown) {
        PyObject *more = dn_more(n - shown);
        if (more == NULL) {
            Py_DECREF(node);
            return NULL;
        }
        PyList_SET_ITEM(node, 1 + 2 * shown, more);
    }
    return node;
}

/* True for the leaves Encoder._enc returns before its depth cut whose order sorted() decides
 * without running Python code (the C comparisons of None, bool, int, float, str, bytes). */
static int
dn_sortable_leaf(PyObject *v)
{
    PyTypeObject *tp = Py_TYPE(v);
    return v == Py_None || tp == &PyBool_Type || tp == &PyLong_Type || tp == &PyFloat_Type
           || tp == &PyUnicode_Type || tp == &PyBytes_Type;
}

/* ["s" or "f", item, ...]: Encoder's _stable order (sorted if the items sort, else iteration
 * order), sets of such leaves only. */
static PyObject *
dn_set(FpWalk *w, PyObject *tag, PyObject *v, int depth)
{
    PyObject *items = PySequence_List(v);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!dn_sortable_leaf(PyList_GET_ITEM(items, i))) {
            Py_DECREF(items);
            return NULL;  /* unknown: sorting may run their code */
        }
    }
    PyObject *order = PyList_GetSlice(items, 0, n);
    if (order == NULL) {
        Py_DECREF(items);
        return NULL;
    }
    if (PyList_Sort(order) < 0) {  /* unorderable (TypeError): the iteration order */
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            Py_DECREF(order);
            Py_DECREF(items);
            return NULL;
        }
        PyErr_Clear();
        Py_SETREF(order, Py_NewRef(items));
    }
    Py_DECREF(items);
    PyObject *node = dn_sequence(w, tag, NULL, PySequence_Fast_ITEMS(order), n, depth);
    Py_DECREF(order);
    return node;
}

/* ["?", path, "<module.qualname object>", "an operating-system resource or a type implemented
 * in C"] of a KIND_OPAQUE type with a base implemented in C (functions, modules, C types:
 * Encoder._plain_object's placeholder); NULL for the others: subclasses of built-in values and
 * containers (Encoder._enc_other's own placeholder) and types defined in Python (whose reason
 * depends on the resource classes of encoding._RESOURCE_TYPES). */
static PyObject *
dn_opaque(FpWalk *w, PyTypeObject *tp)
{
    PyObject *mro = tp->tp_mro;
    int plain = mro != NULL && PyTuple_CheckExact(mro);
    for (Py_ssize_t i = 0; plain && i < PyTuple_GET_SIZE(mro) - 1; i++) {
        plain = (((PyTypeObject *)PyTuple_GET_ITEM(mro, i))->tp_flags & Py_TPFLAGS_HEAPTYPE) != 0;
    }
    if (plain || mro == NULL) {
        return NULL;
    }
    static PyTypeObject *const builtins[] = {
        &PyLong_Type, &PyFloat_Type, &PyUnicode_Type, &PyBytes_Type, &PyList_Type, &PyTuple_Type,
        &PyDict_Type, &PySet_Type, &PyFrozenSet_Type, &PyByteArray_Type,
    };
    for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++) {
        if (PyType_IsSubtype(tp, builtins[i])) {
            return NULL;  /* a subclass of a built-in value or container: the fallback's */
        }
    }
    PyObject *module, *qualname;
    if (dn_type_names(w, tp, &module, &qualname) < 0) {
        return NULL;
    }
    PyObject *path = PyUnicode_FromFormat("%U:%U", module, qualname);
    PyObject *shown = PyUnicode_FromFormat("<%U.%U object>", module, qualname);  /* _address_repr */
    Py_DECREF(module);
    Py_DECREF(qualname);
    PyObject *node = shown != NULL ? PyList_New(4) : NULL;
    if (node == NULL || path == NULL) {
        Py_XDECREF(node);
        Py_XDECREF(path);
        Py_XDECREF(shown);
        return NULL;
    }
    PyList_SET_ITEM(node, 0, Py_NewRef(s_placeholder));
    PyList_SET_ITEM(node, 1, path);
    PyList_SET_ITEM(node, 2, shown);
    PyList_SET_ITEM(node, 3, Py_NewRef(r_resource));
    return node;
}

/* Append name, enc(value) to node; 0 or -1. */
static int
dn_field(FpWalk *w, PyObject *node, PyObject *name, PyObject *value, int depth)
{
    PyObject *item = dn_enc(w, value, depth + 1);
    if (item == NULL) {
        return -1;
    }
    int rc = PyList_Append(node, name);
    if (rc == 0) {
        rc = PyList_Append(node, item);
    }
    Py_DECREF(item);
    return rc;
}

/* ["obj", path, name, value, ...] (Encoder._plain_object): the instance dict's items (when
 * ``with_dict``), then the set slots of ``slots`` ((name, member) pairs, or NULL), the first
 * FP_MAX_ITEMS of them and ["+", rest]. */
static PyObject *
dn_object(FpWalk *w, PyObject *v, int with_dict, PyObject *slots, int depth)
{
    int rc = FP_OK;
    PyObject *fields = NULL, *name, *value, *node = NULL;
    if (with_dict && (fields = fp_instance_dict(v, &rc)) == NULL) {
        return NULL;
    }
    Py_ssize_t count = fields != NULL ? PyDict_GET_SIZE(fields) : 0;
    Py_ssize_t nslots = slots != NULL ? PyTuple_GET_SIZE(slots) : 0;
    for (Py_ssize_t i = 0; rc == FP_OK && i < nslots; i++) {
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        if (!PyTuple_CheckExact(slot) || PyTuple_GET_SIZE(slot) != 2 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(slot, 0))) {
            rc = FP_NONE;
        }
        else if (fp_slot(v, PyTuple_GET_ITEM(slot, 1), &rc) != NULL) {
            count++;
        }
    }
    PyObject *path = rc == FP_OK ? dn_type_path(w, Py_TYPE(v)) : NULL;
    if (path != NULL) {
        node = PyList_New(2);
    }
    if (node == NULL) {
        Py_XDECREF(path);
        Py_XDECREF(fields);
        return NULL;
    }
    PyList_SET_ITEM(node, 0, Py_NewRef(t_obj));
    PyList_SET_ITEM(node, 1, path);
    Py_ssize_t pos = 0, shown = 0;
    while (rc == FP_OK && shown < FP_MAX_ITEMS && fields != NULL && PyDict_Next(fields, &pos, &name, &value)) {
        rc = dn_field(w, node, name, value, depth) < 0 ? FP_ERROR : FP_OK;
        shown++;
    }
    for (Py_ssize_t i = 0; rc == FP_OK && shown < FP_MAX_ITEMS && i < nslots; i++) {
        PyObject *slot = PyTuple_GET_ITEM(slots, i);
        if ((value = fp_slot(v, PyTuple_GET_ITEM(slot, 1), &rc)) != NULL) {
            rc = dn_field(w, node, PyTuple_GET_ITEM(slot, 0), value, depth) < 0 ? FP_ERROR : FP_OK;
            shown++;
        }
    }
    Py_XDECREF(fields);
    if (rc == FP_OK && count > shown) {
        PyObject *more = dn_more(count - shown);
        rc = more != NULL && PyList_Append(node, more) == 0 ? FP_OK : FP_ERROR;
        Py_XDECREF(more);
    }
    if (rc != FP_OK) {
        Py_DECREF(node);
        return NULL;
    }
    return node;
}

/* ["dc", path, name, value, ...] (Encoder._enc_other): every field of ``spec``, read as
 * fp_dataclass reads it. */
static PyObject *
dn_dataclass(FpWalk *w, PyObject *v, PyObject *spec, int depth)
{
    PyObject *path = dn_type_path(w, Py_TYPE(v));
    PyObject *node = path != NULL ? PyList_New(2) : NULL, *fields = NULL;
    if (node == NULL) {
        Py_XDECREF(path);
        return NULL;
    }
    PyList_SET_ITEM(node, 0, Py_NewRef(t_dc));
    PyList_SET_ITEM(node, 1, path);
    int rc = FP_OK;
    for (Py_ssize_t i = 0; rc == FP_OK && i < PyTuple_GET_SIZE(spec); i++) {
        PyObject *field = PyTuple_GET_ITEM(spec, i), *name, *where, *value;
        if (!PyTuple_CheckExact(field) || PyTuple_GET_SIZE(field) != 2
                || !PyUnicode_CheckExact(name = PyTuple_GET_ITEM(field, 0))) {
            rc = FP_NONE;
            break;
        }
        where = PyTuple_GET_ITEM(field, 1);
        if (where != Py_None) {
            value = fp_slot(v, where, &rc);
            if (rc != FP_OK) {
                break;
            }
            if (value == NULL) {
                value = Py_None;  /* an unset slot: getattr's default */
            }
        }
        else {
            if (fields == NULL && (fields = fp_instance_dict(v, &rc)) == NULL) {
                break;
            }
            value = PyDict_GetItemWithError(fields, name);
            if (value == NULL) {
                rc = FP_NONE;  /* getattr would read the class */
                break;
            }
        }
        rc = dn_field(w, node, name, value, depth) < 0 ? FP_ERROR : FP_OK;
    }
    Py_XDECREF(fields);
    if (rc != FP_OK) {
        Py_DECREF(node);
        return NULL;
    }
    return node;
}

/* Encoder._enc(v, depth) under DISPLAY (new reference), or NULL (an exception set, or none:
 * a value this walk does not know). */
static PyObject *
dn_enc(FpWalk *w, PyObject *v, int depth)
{
    PyTypeObject *tp = Py_TYPE(v);
    if (v == Py_None || tp == &PyBool_Type || tp == &PyFloat_Type) {
        return Py_NewRef(v);
    }
    if (tp == &PyLong_Type) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow == 0) {
            return x == -1 && PyErr_Occurred() ? NULL : Py_NewRef(v);
        }
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(v);
            if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
                return Py_NewRef(v);
            }
            PyErr_Clear();
        }
        return dn_list(2, Py_NewRef(t_bigint), PyObject_Str(v), NULL);
    }
    if (tp == &PyUnicode_Type) {
        return dn_str(v);
    }
    if (tp == &PyBytes_Type) {
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        if (n > FP_MAX_BYTES) {
            return dn_list(3, Py_NewRef(t_cut_bytes), PyBytes_FromStringAndSize(PyBytes_AS_STRING(v), FP_MAX_BYTES),
                           PyLong_FromSsize_t(n));
        }
        return Py_NewRef(v);
    }
    if (tp == &PyByteArray_Type && PyByteArray_GET_SIZE(v) > FP_MAX_BYTES) {  /* before numbering */
        return dn_list(3, Py_NewRef(t_cut_bytes), PyBytes_FromStringAndSize(PyByteArray_AS_STRING(v), FP_MAX_BYTES),
                       PyLong_FromSsize_t(PyByteArray_GET_SIZE(v)));
    }
    if (depth >= FP_MAX_DEPTH) {
        return dn_list(2, Py_NewRef(t_deep), dn_type_path(w, tp), NULL);
    }
    int container = tp == &PyList_Type || tp == &PyTuple_Type || tp == &PyDict_Type
                    || tp == &PySet_Type || tp == &PyFrozenSet_Type || tp == &PyByteArray_Type;
    PyObject *kind = NULL;
    long k = -1;
    if (!container) {
        if (w->kinds == NULL || fp_kind(w, tp, &kind) != FP_OK) {
            return NULL;
        }
        k = fp_kind_number(kind);
        if (!fp_lookup_ok(tp, k)) {
            return NULL;
        }
        if (k == KIND_OPAQUE) {  /* not registered */
            return dn_opaque(w, tp);
        }
        if (k == KIND_CLASS) {  /* ["type", type_path(v)]: not registered */
            return PyType_Check(v) ? dn_list(2, Py_NewRef(t_type), dn_type_path(w, (PyTypeObject *)v), NULL) : NULL;
        }
        int shaped = PyTuple_CheckExact(kind);
        if (!((k == KIND_PLAIN && !shaped) || (k == KIND_NAMEDTUPLE && !shaped && PyTuple_Check(v))
              || (k == KIND_SLOTTED && shaped && PyTuple_GET_SIZE(kind) == 3 && PyTuple_CheckExact(PyTuple_GET_ITEM(kind, 2)))
              || (k == KIND_DATACLASS && shaped && PyTuple_CheckExact(PyTuple_GET_ITEM(kind, 1))))) {
            return NULL;
        }
    }
    Py_ssize_t seen;
    if (fp_register(w, v, &seen) < 0) {
        return NULL;
    }
    if (seen >= 0) {
        return dn_list(2, Py_NewRef(t_ref), PyLong_FromSsize_t(seen), NULL);
    }
    if (tp == &PyList_Type) {
        return dn_sequence(w, t_list, NULL, PySequence_Fast_ITEMS(v), PyList_GET_SIZE(v), depth);
    }
    if (tp == &PyTuple_Type) {
        return dn_sequence(w, t_tuple, NULL, PySequence_Fast_ITEMS(v), PyTuple_GET_SIZE(v), depth);
    }
    if (tp == &PyDict_Type) {
        return dn_dict(w, v, depth);
    }
    if (tp == &PySet_Type || tp == &PyFrozenSet_Type) {
        return dn_set(w, tp == &PySet_Type ? t_set : t_frozenset, v, depth);
    }
    if (tp == &PyByteArray_Type) {
        return dn_list(2, Py_NewRef(t_ba), PyBytes_FromStringAndSize(PyByteArray_AS_STRING(v), PyByteArray_GET_SIZE(v)),
                       NULL);
    }
    switch (k) {
    case KIND_NAMEDTUPLE: {
        PyObject *path = dn_type_path(w, tp);
        if (path == NULL) {
            return NULL;
        }
        return dn_sequence(w, t_nt, path, ((PyTupleObject *)v)->ob_item, PyTuple_GET_SIZE(v), depth);
    }
    case KIND_SLOTTED:
        return dn_object(w, v, PyTuple_GET_ITEM(kind, 1) == Py_True, PyTuple_GET_ITEM(kind, 2), depth);
    case KIND_DATACLASS:
        return dn_dataclass(w, v, PyTuple_GET_ITEM(kind, 1), depth);
    default:
        return dn_object(w, v, 1, NULL, depth);
    }
}

/* Take a node's lists out of the collector's sight. A node is a tree of fresh lists over
 * immutable leaves (back references are numbers), never changed once made: it can be in no
 * reference cycle, and the recorder keeps many of them alive for a while (the current nodes of
 * every live frame, a chunk's changes), so collections would keep walking them. */
static void
untrack_node(PyObject *node, int depth)
{
    if (!PyList_CheckExact(node) || !PyObject_GC_IsTracked(node) || depth > 2 * FP_MAX_DEPTH + 4) {
        return;
    }
    PyObject_GC_UnTrack(node);
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(node); i++) {
        untrack_node(PyList_GET_ITEM(node, i), depth + 1);
    }
}

/* The node of ``value``: built here (leaves first, without setting up a walk), else by the
 * fallback. New reference; NULL only when the fallback raises. */
static PyObject *
display_node(Display *self, PyObject *value)
{
    PyTypeObject *tp = Py_TYPE(value);
    if (value == Py_None || tp == &PyBool_Type || tp == &PyFloat_Type) {
        self->encoded++;
        return Py_NewRef(value);
    }
    if (tp == &PyUnicode_Type && PyUnicode_IS_ASCII(value) && PyUnicode_GET_LENGTH(value) <= DN_MAX_STR) {
        self->encoded++;
        return Py_NewRef(value);
    }
    FpWalk w;
    w.kinds = self->kinds;
    w.report = 0;
    w.last_type = NULL;
    w.last_kind = NULL;
    w.unknown = NULL;
    w.used = 0;
    w.slots = NULL;
    w.mask = 0;
    int collecting = PyGC_Disable();  /* no finalizer may run (and mutate the graph) mid-walk */
    PyObject *node = dn_enc(&w, value, 0);
    if (collecting) {
        PyGC_Enable();
    }
    PyMem_Free(w.slots);
    if (node != NULL) {
        self->encoded++;
        untrack_node(node, 0);
        return node;
    }
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        PyErr_Clear();  /* the fallback meets it again and makes its placeholder */
    }
    self->fallbacks++;
    return PyObject_CallOneArg(self->fallback, value);
}

/* tracer._node_of(value, fp) with this display: the node made lately for the fingerprint ``fp``
 * (bytes, taken just now), else display(value), kept for the next call with that fingerprint
 * unless it is the fallback's placeholder of an unreadable value. New reference. */
static PyObject *
display_node_of(Display *self, PyObject *value, PyObject *fp)
{
    if (fp == NULL || !PyBytes_CheckExact(fp) || self->nodes == NULL) {
        return display_node(self, value);
    }
    PyObject *node = PyDict_GetItemWithError(self->nodes, fp);
    if (node != NULL) {
        return Py_NewRef(node);
    }
    if (PyErr_Occurred() || (node = display_node(self, value)) == NULL || is_unreadable(node)) {
        return node;
    }
    if (PyDict_GET_SIZE(self->nodes) >= DN_MAX_NODES) {  /* the oldest goes */
        Py_ssize_t pos = 0;
        PyObject *key, *old;
        if (PyDict_Next(self->nodes, &pos, &key, &old)) {
            Py_INCREF(key);
            int rc = PyDict_DelItem(self->nodes, key);
            Py_DECREF(key);
            if (rc < 0) {
                Py_DECREF(node);
                return NULL;
            }
        }
    }
    if (PyDict_SetItem(self->nodes, fp, node) < 0) {
        Py_DECREF(node);
        return NULL;
    }
    return node;
}

static PyObject *
display_node_of_method(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "node_of(value, fp)");
        return NULL;
    }
    if (((Display *)op)->fallback == NULL) {
        PyErr_SetString(PyExc_ValueError, "Display: cleared");
        return NULL;
    }
    return display_node_of((Display *)op, args[0], args[1] == Py_None ? NULL : args[1]);
}

static PyMethodDef display_methods[] = {
    {"node_of", (PyCFunction)(void (*)(void))display_node_of_method, METH_FASTCALL,
     "node_of(value, fp)\n--\n\nThe node made lately for the fingerprint fp (bytes, taken just now), else\n"
     "self(value), kept for the next call with that fingerprint (tracer._node_of)."},
    {NULL, NULL, 0, NULL},
};

static PyObject *
display_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Display takes one value");
        return NULL;
    }
    if (((Display *)op)->fallback == NULL) {  /* cleared by the collector */
        PyErr_SetString(PyExc_ValueError, "Display: cleared");
        return NULL;
    }
    return display_node((Display *)op, args[0]);
}

static PyObject *
display_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fallback", "kinds", NULL};
    PyObject *fallback, *kinds = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Display", kwlist, &fallback, &kinds)) {
        return NULL;
    }
    if (kinds != Py_None && !PyDict_CheckExact(kinds)) {
        PyErr_SetString(PyExc_TypeError, "Display: kinds must be a dict or None");
        return NULL;
    }
    Display *self = (Display *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = display_vectorcall;
    self->fallback = Py_NewRef(fallback);
    self->kinds = kinds != Py_None ? Py_NewRef(kinds) : NULL;
    if ((self->nodes = PyDict_New()) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
display_traverse(Display *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->kinds);
    Py_VISIT(self->nodes);
    return 0;
}

static int
display_clear(Display *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->nodes);
    return 0;
}

static void
display_dealloc(Display *self)
{
    PyObject_GC_UnTrack(self);
    display_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef display_members[] = {
    {"fallback", T_OBJECT, offsetof(Display, fallback), READONLY, "the Python display"},
    {"encoded", T_PYSSIZET, offsetof(Display, encoded), 0, "calls answered in C"},
    {"fallbacks", T_PYSSIZET, offsetof(Display, fallbacks), 0, "calls answered by the fallback"},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(display_doc,
"Display(fallback, kinds=None)\n--\n\n"
"A callable: Display(...)(value) is tracer.display(value), built in C for the values it knows\n"
"(leaves, built-in containers, and objects whose exact type ``kinds`` describes) and by\n"
"fallback(value) for everything else.");

static PyTypeObject DisplayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.Display",
    .tp_basicsize = sizeof(Display),
    .tp_dealloc = (destructor)display_dealloc,
    .tp_vectorcall_offset = offsetof(Display, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = display_doc,
    .tp_traverse = (traverseproc)display_traverse,
    .tp_clear = (inquiry)display_clear,
    .tp_members = display_members,
    .tp_methods = display_methods,
    .tp_new = display_new,
};

/* ------------------------------------------------------------------ step buffer */

/* ``Steps()``: the recorder's buffer of steps (TraceRecorder.steps) when the extension is
 * built: a list of (kind, code, line, frame, depth, thread) tuples to Python code (append, len,
 * indexing and slicing, ``del steps[i:]``, clear, iteration), stored as rows of six 32-bit
 * numbers: no tuple and no object for the collector per step. append takes what array("B")
 * (kind) and array("I") (the rest) take, and raises their errors (TypeError, OverflowError).
 * chunk_columns reads it directly. */

#define STEP_FIELDS 6

typedef struct {
    PyObject_HEAD
    uint32_t *rows;  /* STEP_FIELDS per step */
    Py_ssize_t size, cap;
} Steps;

static PyTypeObject StepsType;

static int step_field(PyObject *item, unsigned long limit, uint32_t *out);

/* Append one step given as six int objects. 0 or -1. */
static int
steps_push(Steps *self, PyObject *const *items)
{
    uint32_t row[STEP_FIELDS];
    for (int c = 0; c < STEP_FIELDS; c++) {
        if (step_field(items[c], c == 0 ? 0xFFUL : 0xFFFFFFFFUL, &row[c]) < 0) {
            return -1;
        }
    }
    if (self->size == self->cap) {
        Py_ssize_t cap = self->cap < 1024 ? 1024 : self->cap * 2;
        uint32_t *rows = PyMem_Realloc(self->rows, sizeof(uint32_t) * STEP_FIELDS * (size_t)cap);
        if (rows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->rows = rows;
        self->cap = cap;
    }
    memcpy(self->rows + STEP_FIELDS * self->size, row, sizeof row);
    self->size++;
    return 0;
}

/* len(steps) of a Steps or a list. */
static inline Py_ssize_t
steps_size(PyObject *steps)
{
    return Py_IS_TYPE(steps, &StepsType) ? ((Steps *)steps)->size : PyList_GET_SIZE(steps);
}

/* steps.append(tuple(items)) for a Steps or a list. 0 or -1. */
static int
append_step(PyObject *steps, PyObject *const *items)
{
    if (Py_IS_TYPE(steps, &StepsType)) {
        return steps_push((Steps *)steps, items);
    }
    PyObject *record = PyTuple_New(STEP_FIELDS);
    if (record == NULL) {
        return -1;
    }
    for (int c = 0; c < STEP_FIELDS; c++) {
        PyTuple_SET_ITEM(record, c, Py_NewRef(items[c]));
    }
    PyObject_GC_UnTrack(record);  /* numbers only: what the collector would find out itself */
    int rc = PyList_Append(steps, record);
    Py_DECREF(record);
    return rc;
}

/* 1 for a list or a Steps (what rec.steps may be). */
static int
is_steps(PyObject *steps)
{
    return PyList_CheckExact(steps) || Py_IS_TYPE(steps, &StepsType);
}

static PyObject *
steps_row(Steps *self, Py_ssize_t i)
{
    const uint32_t *row = self->rows + STEP_FIELDS * i;
    PyObject *tuple = PyTuple_New(STEP_FIELDS);
    if (tuple == NULL) {
        return NULL;
    }
    for (int c = 0; c < STEP_FIELDS; c++) {
        PyObject *v = PyLong_FromUnsignedLong(row[c]);
        if (v == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, c, v);
    }
    return tuple;
}

static Py_ssize_t
steps_length(PyObject *op)
{
    return ((Steps *)op)->size;
}

static PyObject *
steps_item(PyObject *op, Py_ssize_t i)
{
    Steps *self = (Steps *)op;
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "step index out of range");
        return NULL;
    }
    return steps_row(self, i);
}

static PyObject *
steps_subscript(PyObject *op, PyObject *key)
{
    Steps *self = (Steps *)op;
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            return NULL;
        }
        return steps_item(op, i < 0 ? i + self->size : i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "step indices must be integers or slices, not %.100s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
        return NULL;
    }
    Py_ssize_t n = PySlice_AdjustIndices(self->size, &start, &stop, step);
    PyObject *list = PyList_New(n);
    for (Py_ssize_t k = 0, i = start; list != NULL && k < n; k++, i += step) {
        PyObject *row = steps_row(self, i);
        if (row == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, k, row);
    }
    return list;
}

/* del steps[i] and del steps[a:b] (contiguous); no assignment. */
static int
steps_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    Steps *self = (Steps *)op;
    if (value != NULL) {
        PyErr_SetString(PyExc_TypeError, "Steps: steps are appended, not assigned");
        return -1;
    }
    Py_ssize_t start, stop, step = 1;
    if (PyIndex_Check(key)) {
        start = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (start == -1 && PyErr_Occurred()) {
            return -1;
        }
        start = start < 0 ? start + self->size : start;
        if (start < 0 || start >= self->size) {
            PyErr_SetString(PyExc_IndexError, "step index out of range");
            return -1;
        }
        stop = start + 1;
    }
    else if (PySlice_Check(key)) {
        if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
            return -1;
        }
        if (step != 1) {
            PyErr_SetString(PyExc_TypeError, "Steps: only contiguous slices can be deleted");
            return -1;
        }
        if (PySlice_AdjustIndices(self->size, &start, &stop, step) == 0) {
            return 0;
        }
    }
    else {
        PyErr_Format(PyExc_TypeError, "step indices must be integers or slices, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    memmove(self->rows + STEP_FIELDS * start, self->rows + STEP_FIELDS * stop,
            sizeof(uint32_t) * STEP_FIELDS * (size_t)(self->size - stop));
    self->size -= stop - start;
    return 0;
}

static PyObject *
steps_append(PyObject *op, PyObject *step)
{
    if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) != STEP_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "Steps.append: a step is a 6-tuple");
        return NULL;
    }
    if (steps_push((Steps *)op, &PyTuple_GET_ITEM(step, 0)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
steps_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    ((Steps *)op)->size = 0;
    Py_RETURN_NONE;
}

static PyObject *
steps_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Steps", kwlist)) {
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static void
steps_dealloc(Steps *self)
{
    PyMem_Free(self->rows);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef steps_methods[] = {
    {"append", steps_append, METH_O, "Append one (kind, code, line, frame, depth, thread) step."},
    {"clear", steps_clear, METH_NOARGS, "Remove every step."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods steps_as_sequence = {
    .sq_length = steps_length,
    .sq_item = steps_item,
};

static PyMappingMethods steps_as_mapping = {
    .mp_length = steps_length,
    .mp_subscript = steps_subscript,
    .mp_ass_subscript = steps_ass_subscript,
};

static PyTypeObject StepsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.Steps",
    .tp_basicsize = sizeof(Steps),
    .tp_dealloc = (destructor)steps_dealloc,
    .tp_as_sequence = &steps_as_sequence,
    .tp_as_mapping = &steps_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Steps()\n--\n\nThe recorder's step buffer: (kind, code, line, frame, depth, thread) rows of u32.",
    .tp_methods = steps_methods,
    .tp_new = steps_new,
};

/* ------------------------------------------------------------------ helpers */

/* frame.f_lineno (None when the frame has no line number), new reference. */
static PyObject *
frame_lineno(PyObject *frame)
{
    if (PyFrame_Check(frame)) {
        int lineno = PyFrame_GetLineNumber((PyFrameObject *)frame);
        if (lineno < 0) {
            Py_RETURN_NONE;
        }
        return PyLong_FromLong(lineno);
    }
    return PyObject_GetAttr(frame, s_f_lineno);
}

/* loc.get(name, missing), new reference; NULL with an exception set on error. */
static PyObject *
mapping_get(PyObject *loc, PyObject *name, PyObject *missing)
{
    if (PyDict_CheckExact(loc)) {
        PyObject *value = PyDict_GetItemWithError(loc, name);
        if (value == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            value = missing;
        }
        return Py_NewRef(value);
    }
    /* 3.13's FrameLocalsProxy, a class body's own namespace type: the closure's very call. */
    return PyObject_CallMethodObjArgs(loc, s_get, name, missing, NULL);
}

/* display(value), new reference: in C when display is a _fastline.Display. */
static PyObject *
call_display(LocalTracer *self, PyObject *value)
{
    if (Py_IS_TYPE(self->display, &DisplayType) && ((Display *)self->display)->fallback != NULL) {
        return display_node((Display *)self->display, value);
    }
    return PyObject_CallOneArg(self->display, value);
}

/* fingerprint(value), new reference: with ``kinds``, display_fingerprint's walk first, and
 * tracer.fingerprint only when it meets a type that is not classified yet. */
static PyObject *
take_fingerprint(LocalTracer *self, PyObject *value)
{
    if (self->kinds != NULL) {
        PyObject *fp = fingerprint_of(value, self->kinds, 1);
        if (fp == NULL || fp == Py_None || PyBytes_CheckExact(fp)) {
            return fp;
        }
        Py_DECREF(fp);  /* a new type: tracer.fingerprint classifies it and walks again */
    }
    return PyObject_CallOneArg(self->fingerprint, value);
}

/* The node of a rebound local: the value itself for an int in int64/uint64 range or a float,
 * else display(value). New reference, NULL on error. */
static PyObject *
rebound_node(LocalTracer *self, PyObject *value)
{
    if (PyFloat_CheckExact(value)) {
        return Py_NewRef(value);
    }
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        (void)PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow == 0) {
            if (!PyErr_Occurred()) {
                return Py_NewRef(value);
            }
            PyErr_Clear();
        }
        else if (overflow > 0) {
            (void)PyLong_AsUnsignedLongLong(value);
            if (!PyErr_Occurred()) {
                return Py_NewRef(value);
            }
            PyErr_Clear();  /* above 2**64 - 1: displayed */
        }
    }
    return call_display(self, value);
}

/* The node of a mutable value whose fingerprint ``fp`` (bytes or None) was just taken:
 * node_of(value, fp) (which may reuse a node made for the same fingerprint), else
 * display(value). New reference, NULL on error. */
static PyObject *
encode(LocalTracer *self, PyObject *value, PyObject *fp)
{
    if (self->node_of != NULL && fp != NULL) {
        if (Py_IS_TYPE(self->node_of, &DisplayType) && ((Display *)self->node_of)->fallback != NULL) {
            return display_node_of((Display *)self->node_of, value, fp);
        }
        PyObject *args[2] = {value, fp};
        return PyObject_Vectorcall(self->node_of, args, 2, NULL);
    }
    return call_display(self, value);
}

/* d.pop(key, None). 0 or -1. */
static int
dict_discard(PyObject *d, PyObject *key)
{
    if (PyDict_DelItem(d, key) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
            return -1;
        }
        PyErr_Clear();
    }
    return 0;
}

/* rec.__dict__ (new reference) when reading rec.base from it is what attribute access does
 * (generic attribute access, no class attribute of that name), else NULL (no error). */
static PyObject *
base_dict(PyObject *rec)
{
    if (Py_TYPE(rec)->tp_getattro != PyObject_GenericGetAttr || PyObject_HasAttr((PyObject *)Py_TYPE(rec), s_base)) {
        return NULL;
    }
    PyObject *dict = PyObject_GenericGetDict(rec, NULL);
    if (dict == NULL || !PyDict_CheckExact(dict)) {
        PyErr_Clear();
        Py_CLEAR(dict);
    }
    return dict;
}

/* rec.base + n, new reference (rec.base read at each use: as the closure, which reads it per
 * change); the last sum is reused while rec.base is the same object and n the same. */
static PyObject *
step_number(LocalTracer *self, Py_ssize_t n)
{
    PyObject *base = NULL;
    if (self->rec_dict != NULL) {
        base = PyDict_GetItemWithError(self->rec_dict, s_base);
        if (base == NULL && PyErr_Occurred()) {
            return NULL;
        }
        Py_XINCREF(base);
    }
    if (base == NULL && (base = PyObject_GetAttr(self->rec, s_base)) == NULL) {
        return NULL;
    }
    if (base == self->last_base && n == self->last_n && self->last_step != NULL) {
        Py_DECREF(base);
        return Py_NewRef(self->last_step);
    }
    PyObject *offset = PyLong_FromSsize_t(n);
    if (offset == NULL) {
        Py_DECREF(base);
        return NULL;
    }
    PyObject *step = PyNumber_Add(base, offset);
    Py_DECREF(offset);
    if (step == NULL) {
        Py_DECREF(base);
        return NULL;
    }
    Py_XSETREF(self->last_base, base);  /* held: an identity check on a freed object could match */
    Py_XSETREF(self->last_step, Py_NewRef(step));
    self->last_n = n;
    return step;
}

/* Append (rec.base + n, serial, name, node) to rec.changes, or (rec.base + n, serial, name)
 * for a deletion (node NULL). 0 or -1. */
static int
add_change(LocalTracer *self, Py_ssize_t n, PyObject *name, PyObject *node)
{
    PyObject *step = step_number(self, n);
    if (step == NULL) {
        return -1;
    }
    PyObject *change = node ? PyTuple_Pack(4, step, self->serial, name, node)
                            : PyTuple_Pack(3, step, self->serial, name);
    Py_DECREF(step);
    if (change == NULL) {
        return -1;
    }
    if (node == NULL || !PyObject_GC_IsTracked(node)) {  /* no cycle can pass through it */
        PyObject_GC_UnTrack(change);
    }
    int rc = PyList_Append(self->changes, change);
    Py_DECREF(change);
    return rc;
}

/* The node display() makes of a value it could not read (its fallback: ["?", path,
 * "<unreadable>", exception name]): a later try may read it, so no fingerprint stands for it. */
static int
is_unreadable(PyObject *node)
{
    if (!PyList_CheckExact(node) || PyList_GET_SIZE(node) != 4) {
        return 0;
    }
    PyObject *tag = PyList_GET_ITEM(node, 0), *shown = PyList_GET_ITEM(node, 2);
    return PyUnicode_CheckExact(tag) && PyUnicode_Compare(tag, s_placeholder) == 0
           && PyUnicode_CheckExact(shown) && PyUnicode_Compare(shown, s_unreadable) == 0;
}

/* 1 when act.fps[name] is (fp, the node recorded for name now): that node was made while the
 * value had this fingerprint, so re-encoding it would give an equal node. 0 otherwise (a
 * writer of act.nodes that keeps no fingerprints leaves the pair stale, never wrong). */
static int
fp_unchanged(LocalTracer *self, PyObject *name, PyObject *fp)
{
    if (!PyBytes_CheckExact(fp)) {
        return 0;
    }
    PyObject *entry = PyDict_GetItemWithError(self->fps, name);
    if (entry == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *node = PyDict_GetItemWithError(self->nodes, name);
    if (node == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2 || PyTuple_GET_ITEM(entry, 1) != node) {
        return 0;
    }
    PyObject *kept = PyTuple_GET_ITEM(entry, 0);
    return PyBytes_CheckExact(kept) && PyBytes_GET_SIZE(kept) == PyBytes_GET_SIZE(fp)
           && memcmp(PyBytes_AS_STRING(kept), PyBytes_AS_STRING(fp), (size_t)PyBytes_GET_SIZE(fp)) == 0;
}

/* act.fps[name] = (fp, node) when fp is a fingerprint (bytes) taken before ``node`` was made
 * and node is not display's fallback for an unreadable value; else act.fps loses name. */
static int
fp_keep(LocalTracer *self, PyObject *name, PyObject *fp, PyObject *node)
{
    if (fp != NULL && PyBytes_CheckExact(fp) && !is_unreadable(node)) {
        PyObject *entry = PyTuple_Pack(2, fp, node);
        if (entry == NULL) {
            return -1;
        }
        int rc = PyDict_SetItem(self->fps, name, entry);
        Py_DECREF(entry);
        return rc;
    }
    PyObject *entry = PyDict_GetItemWithError(self->fps, name);
    if (entry == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    return PyDict_DelItem(self->fps, name);
}

/* A simple effect (effect[3] true), inlined: ``reencode`` and ``check`` are effect[1] and
 * effect[0]. With a fingerprint function, a same object whose fingerprint is the one kept with
 * its node is not re-encoded, and re-encoded or rebound mutable values keep theirs (taken
 * before display, as TraceRecorder.diff does). 0 or -1. */
static int
simple_effect(LocalTracer *self, PyObject *frame, PyObject *check, PyObject *reencode,
              Py_ssize_t n, int deletions_last)
{
    Py_ssize_t deferred = 0;  /* with deletions_last: names of ``check`` gone from the frame */
    PyObject *loc = PyFrame_Check(frame) ? PyFrame_GetLocals((PyFrameObject *)frame)
                                         : PyObject_GetAttr(frame, s_f_locals);
    if (loc == NULL) {
        return -1;
    }
    PyObject *values = self->values, *nodes = self->nodes;
    PyObject *value = NULL, *node = NULL, *old = NULL, *fp = NULL;
    /* Same object, maybe mutated in place: re-encode and compare. */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reencode); i++) {
        PyObject *name = PyTuple_GET_ITEM(reencode, i);
        value = mapping_get(loc, name, values);  /* ``values`` doubles as "missing" */
        if (value == NULL) {
            goto error;
        }
        PyObject *seen = PyDict_GetItemWithError(values, name);
        if (seen == NULL && PyErr_Occurred()) {
            goto error;
        }
        /* Unbound (``values`` is the sentinel), rebound, or immutable: nothing to re-encode. */
        int immutable = 0;
        if (value != values && value == seen) {
            immutable = PySequence_Contains(self->immutable, (PyObject *)Py_TYPE(value));
            if (immutable < 0) {
                goto error;
            }
        }
        if (value == values || value != seen || immutable) {
            Py_CLEAR(value);
            continue;
        }
        if (self->fingerprint != NULL) {
            fp = take_fingerprint(self, value);
            if (fp == NULL) {
                goto error;
            }
            int same = fp_unchanged(self, name, fp);
            if (same < 0) {
                goto error;
            }
            if (same) {
                Py_CLEAR(fp);
                Py_CLEAR(value);
                continue;
            }
        }
        node = encode(self, value, fp);
        if (node == NULL) {
            goto error;
        }
        old = PyDict_GetItemWithError(nodes, name);
        if (old == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            old = Py_None;
        }
        Py_INCREF(old);
        PyObject *ne = PyObject_RichCompare(node, old, Py_NE);
        if (ne == NULL) {
            goto error;
        }
        int differs = PyObject_IsTrue(ne);
        Py_DECREF(ne);
        if (differs < 0) {
            goto error;
        }
        if (differs && (PyDict_SetItem(nodes, name, node) < 0 || add_change(self, n, name, node) < 0)) {
            goto error;
        }
        if (self->fingerprint != NULL && fp_keep(self, name, fp, differs ? node : old) < 0) {
            goto error;
        }
        Py_CLEAR(old);
        Py_CLEAR(fp);
        Py_CLEAR(node);
        Py_CLEAR(value);
    }
    /* Rebound (or deleted): compare by identity. */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(check); i++) {
        PyObject *name = PyTuple_GET_ITEM(check, i);
        value = mapping_get(loc, name, values);
        if (value == NULL) {
            goto error;
        }
        PyObject *seen = PyDict_GetItemWithError(values, name);
        if (seen == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            seen = values;
        }
        if (value == seen) {
            Py_CLEAR(value);
            continue;
        }
        if (value == values && deletions_last) {  /* TraceRecorder.diff's order: after rebinds */
            deferred++;
            Py_CLEAR(value);
            continue;
        }
        if (value == values) {  /* gone from the frame: a deletion (no node) */
            if (PyDict_DelItem(values, name) < 0 || dict_discard(nodes, name) < 0
                    || add_change(self, n, name, NULL) < 0
                    || (self->fingerprint != NULL && fp_keep(self, name, NULL, NULL) < 0)) {
                goto error;
            }
            Py_CLEAR(value);
            continue;
        }
        if (PyDict_SetItem(values, name, value) < 0) {
            goto error;
        }
        if (self->fingerprint != NULL && !PyFloat_CheckExact(value) && !PyLong_CheckExact(value)) {
            int immutable = PySequence_Contains(self->immutable, (PyObject *)Py_TYPE(value));
            if (immutable < 0 || (!immutable && (fp = take_fingerprint(self, value)) == NULL)) {
                goto error;
            }
        }
        node = fp != NULL ? encode(self, value, fp) : rebound_node(self, value);
        if (node == NULL || PyDict_SetItem(nodes, name, node) < 0 || add_change(self, n, name, node) < 0
                || (fp != NULL && fp_keep(self, name, fp, node) < 0)) {
            goto error;
        }
        Py_CLEAR(fp);
        Py_CLEAR(node);
        Py_CLEAR(value);
    }
    for (Py_ssize_t i = 0; deferred > 0 && i < PyTuple_GET_SIZE(check); i++) {
        PyObject *name = PyTuple_GET_ITEM(check, i);
        value = mapping_get(loc, name, values);
        if (value == NULL) {
            goto error;
        }
        int gone = value == values;
        Py_CLEAR(value);
        if (gone && PyDict_Contains(values, name) == 1) {
            if (PyDict_DelItem(values, name) < 0 || dict_discard(nodes, name) < 0
                    || (self->fps != NULL && dict_discard(self->fps, name) < 0)
                    || add_change(self, n, name, NULL) < 0) {
                goto error;
            }
            deferred--;
        }
    }
    Py_DECREF(loc);
    return 0;
error:
    Py_XDECREF(fp);
    Py_XDECREF(old);
    Py_XDECREF(node);
    Py_XDECREF(value);
    Py_DECREF(loc);
    return -1;
}

/* act.line (new reference) and ``act.line = value``: through the slot's member definition
 * when find_line_member found one (what attribute access does, minus the lookups), else by
 * attribute. */
static PyObject *
act_line(LocalTracer *self)
{
    if (self->line_member != NULL) {
        return PyMember_GetOne((const char *)self->act, self->line_member);
    }
    return PyObject_GetAttr(self->act, s_line);
}

static int
set_act_line(LocalTracer *self, PyObject *value)
{
    if (self->line_member != NULL) {
        return PyMember_SetOne((char *)self->act, self->line_member, value);
    }
    return PyObject_SetAttr(self->act, s_line, value);
}

/* Use a slot directly only if type(act).<name> is a writable object member descriptor of a
 * class on act's MRO, and the class does not customise attribute access. 0, or -1 on error. */
static int
find_type_member(PyTypeObject *type, PyObject *name, PyObject **descr_out, PyMemberDef **member_out)
{
    if (type->tp_getattro != PyObject_GenericGetAttr || type->tp_setattro != PyObject_GenericSetAttr) {
        return 0;
    }
    PyObject *descr = PyObject_GetAttr((PyObject *)type, name);
    if (descr == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDescrObject *member = (PyMemberDescrObject *)descr;
        if (member->d_member->type == T_OBJECT_EX && !(member->d_member->flags & READONLY)
                && PyType_IsSubtype(type, member->d_common.d_type)) {
            *member_out = member->d_member;
            *descr_out = Py_NewRef(descr);
        }
    }
    Py_DECREF(descr);
    return 0;
}

static int
find_member(PyObject *act, PyObject *name, PyObject **descr_out, PyMemberDef **member_out)
{
    return find_type_member(Py_TYPE(act), name, descr_out, member_out);
}

static int
find_line_member(LocalTracer *self)
{
    return find_member(self->act, s_line, &self->line_descr, &self->line_member);
}

/* ------------------------------------------------------------------ events */

/* Record what the line ``effect`` (an entry of act.code.effects) changed, at step rec.base + n:
 * a simple one here (deletions after the rebinds with ``deletions_last``, as
 * TraceRecorder.diff orders them), any other by rec.diff. 0 or -1. */
static int
run_effect(LocalTracer *self, PyObject *frame, PyObject *effect, Py_ssize_t n, int deletions_last)
{
    int simple = 0;
    if (PyTuple_Check(effect) && PyTuple_GET_SIZE(effect) >= 4) {
        simple = PyObject_IsTrue(PyTuple_GET_ITEM(effect, 3));
        if (simple < 0) {
            return -1;
        }
    }
    if (simple && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 0)) && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 1))) {
        return simple_effect(self, frame, PyTuple_GET_ITEM(effect, 0), PyTuple_GET_ITEM(effect, 1), n, deletions_last);
    }
    PyObject *step = step_number(self, n);
    if (step == NULL) {
        return -1;
    }
    PyObject *args[4] = {self->act, frame, effect, step};
    PyObject *res = PyObject_Vectorcall(self->diff, args, 4, NULL);
    Py_DECREF(step);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* act.frame (new reference) and ``act.frame = None``, as act_line and set_act_line. */
static PyObject *
act_frame(LocalTracer *self)
{
    if (self->frame_member != NULL) {
        return PyMember_GetOne((const char *)self->act, self->frame_member);
    }
    return PyObject_GetAttr(self->act, s_frame);
}

/* ``Returning(return_ops, resume, yield_value)``: tracer._returning in C, called as
 * ``returning(frame)``: True if the frame is returning a value (or yielding), False if an
 * exception unwinds it: the instruction at frame.f_lasti is one of ``return_ops``, or ``resume``
 * right after ``yield_value`` (3.13); True when f_lasti is past the code, False for None. The
 * opcode numbers come from the dis module of this Python (tracer.py). LocalTracer calls it
 * directly. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    unsigned char ops[256];  /* 1 for the return opcodes */
    int resume, yield_value;
} Returning;

static PyTypeObject ReturningType;

/* 1, 0, or -1 with an exception set (as the Python function raises: f_lasti None). */
static int
is_returning(Returning *self, PyObject *frame)
{
    if (frame == Py_None) {
        return 0;
    }
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "Returning: a frame or None");
        return -1;
    }
    int lasti = PyFrame_GetLasti((PyFrameObject *)frame);
    if (lasti < 0) {
        PyErr_SetString(PyExc_TypeError, "byte indices must be integers or slices, not NoneType");
        return -1;
    }
    PyCodeObject *code = PyFrame_GetCode((PyFrameObject *)frame);
    PyObject *bytes = PyCode_GetCode(code);
    Py_DECREF(code);
    if (bytes == NULL) {
        return -1;
    }
    int yes = 1;  /* past the code: IndexError, True */
    if (lasti < PyBytes_GET_SIZE(bytes)) {
        const unsigned char *co = (const unsigned char *)PyBytes_AS_STRING(bytes);
        int op = co[lasti];
        yes = self->ops[op] || (op == self->resume && lasti >= 2 && co[lasti - 2] == self->yield_value);
    }
    Py_DECREF(bytes);
    return yes;
}

static PyObject *
returning_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Returning takes (frame)");
        return NULL;
    }
    int yes = is_returning((Returning *)op, args[0]);
    return yes < 0 ? NULL : PyBool_FromLong(yes);
}

static PyObject *
returning_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *ops;
    int resume, yield_value;
    if (!PyArg_ParseTuple(args, "Oii:Returning", &ops, &resume, &yield_value)) {
        return NULL;
    }
    Returning *self = (Returning *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = returning_vectorcall;
    self->resume = resume;
    self->yield_value = yield_value;
    PyObject *it = PyObject_GetIter(ops), *item;
    while (it != NULL && (item = PyIter_Next(it)) != NULL) {
        long op = PyLong_AsLong(item);
        Py_DECREF(item);
        if (op < 0 || op > 255) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "Returning: opcodes are 0..255");
            }
            break;
        }
        self->ops[op] = 1;
    }
    Py_XDECREF(it);
    if (PyErr_Occurred()) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyTypeObject ReturningType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.Returning",
    .tp_basicsize = sizeof(Returning),
    .tp_vectorcall_offset = offsetof(Returning, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Returning(return_ops, resume, yield_value)\n--\n\ntracer._returning in C: returning(frame) -> bool.",
    .tp_new = returning_new,
};

/* TraceRecorder.pop(ts, act, RETURN, line, value), in C (the returning object was made with
 * ``returning``): the last line's effect, the returned value, the return step, the end of the
 * activation, its frame off the thread's stack, a flush when the chunk is full. 0 or -1. */
static int
pop_here(LocalTracer *self, PyObject *frame, PyObject *line, PyObject *value)
{
    Py_ssize_t n = steps_size(self->steps);
    PyObject *previous = act_line(self);
    if (previous == NULL) {
        return -1;
    }
    PyObject *effect = PyDict_GetItemWithError(self->effects, previous);
    Py_DECREF(previous);
    if (effect == NULL && PyErr_Occurred()) {
        return -1;
    }
    PyObject *current = act_frame(self);
    if (current == NULL) {
        return -1;
    }
    if (effect != NULL) {
        Py_INCREF(effect);
        int rc = run_effect(self, current, effect, n, 1);
        Py_DECREF(effect);
        if (rc < 0) {
            Py_DECREF(current);
            return -1;
        }
    }
    int yes;
    if (Py_IS_TYPE(self->returning, &ReturningType)) {
        yes = is_returning((Returning *)self->returning, current);
    }
    else {
        PyObject *returning = PyObject_CallOneArg(self->returning, current);
        yes = returning != NULL ? PyObject_IsTrue(returning) : -1;
        Py_XDECREF(returning);
    }
    Py_DECREF(current);
    if (yes < 0) {
        return -1;
    }
    if (yes) {
        PyObject *node = call_display(self, value);
        int rc = node != NULL ? add_change(self, n, s_return_name, node) : -1;
        Py_XDECREF(node);
        if (rc < 0) {
            return -1;
        }
    }
    PyObject *thread = PyObject_GetAttr(self->ts, s_index);  /* read now, as pop does */
    if (thread == NULL) {
        return -1;
    }
    PyObject *record[STEP_FIELDS] = {kind_return, self->cid, line, self->serial, self->depth, thread};
    int rc = append_step(self->steps, record);
    Py_DECREF(thread);
    PyObject *step = rc == 0 ? step_number(self, n) : NULL;
    if (step == NULL) {
        return -1;
    }
    rc = PyObject_SetItem(self->act_end, self->serial, step);
    Py_DECREF(step);
    if (rc < 0) {
        return -1;
    }
    Py_ssize_t size = PyList_GET_SIZE(self->stack);
    if (size > 0 && PyList_GET_ITEM(self->stack, size - 1) == self->act) {
        rc = PyList_SetSlice(self->stack, size - 1, size, NULL);
    }
    else {
        for (Py_ssize_t i = 0; i < size; i++) {  /* del stack[stack.index(act):] */
            PyObject *item = PyList_GET_ITEM(self->stack, i);
            int same = item == self->act ? 1 : PyObject_RichCompareBool(item, self->act, Py_EQ);
            if (same != 0) {
                rc = same < 0 ? -1 : PyList_SetSlice(self->stack, i, PyList_GET_SIZE(self->stack), NULL);
                break;
            }
            size = PyList_GET_SIZE(self->stack);
        }
    }
    if (rc < 0 || dict_discard(self->live, self->serial) < 0) {
        return -1;
    }
    rc = self->frame_member != NULL ? PyMember_SetOne((char *)self->act, self->frame_member, Py_None)
                                    : PyObject_SetAttr(self->act, s_frame, Py_None);
    if (rc < 0) {
        return -1;
    }
    if (steps_size(self->steps) > self->chunk_last) {
        PyObject *res = PyObject_CallMethodNoArgs(self->rec, s_flush);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return 0;
}

static PyObject *
on_line(LocalTracer *self, PyObject *frame)
{
    Py_ssize_t n = steps_size(self->steps);
    PyObject *line = NULL;
    int rc;
    PyObject *previous = act_line(self);
    if (previous == NULL) {
        return NULL;
    }
    PyObject *effect = PyDict_GetItemWithError(self->effects, previous);
    Py_DECREF(previous);
    if (effect == NULL && PyErr_Occurred()) {
        return NULL;
    }
    Py_XINCREF(effect);
    line = frame_lineno(frame);
    if (line == NULL || set_act_line(self, line) < 0) {
        goto error;
    }
    if (effect != NULL) {
        if (run_effect(self, frame, effect, n, 0) < 0) {
            goto error;
        }
        Py_CLEAR(effect);
    }
    PyObject *record[STEP_FIELDS] = {kind_line, self->cid, line, self->serial, self->depth, self->thread};
    rc = append_step(self->steps, record);
    Py_DECREF(line);
    if (rc < 0) {
        return NULL;
    }
    if (n >= self->chunk_last) {
        PyObject *res = PyObject_CallMethodNoArgs(self->rec, s_flush);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
        PyObject *stopped = PyObject_GetAttr(self->rec, s_stopped);
        if (stopped == NULL) {
            return NULL;
        }
        int is_stopped = PyObject_IsTrue(stopped);
        Py_DECREF(stopped);
        if (is_stopped < 0) {
            return NULL;
        }
        if (is_stopped) {  /* the step budget is spent */
            Py_RETURN_NONE;
        }
    }
    return Py_NewRef(self);
error:
    Py_XDECREF(line);
    Py_XDECREF(effect);
    return NULL;
}

static PyObject *
on_return(LocalTracer *self, PyObject *frame, PyObject *arg)
{
    PyObject *line = frame_lineno(frame);
    if (line == NULL) {
        return NULL;
    }
    if (self->returning != NULL) {
        int rc = pop_here(self, frame, line, arg);
        Py_DECREF(line);
        if (rc < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *args[6] = {self->rec, self->ts, self->act, kind_return, line, arg};
    PyObject *res = PyObject_VectorcallMethod(s_pop, args, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(line);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

static PyObject *
on_exception(LocalTracer *self, PyObject *frame, PyObject *arg)
{
    PyObject *line = frame_lineno(frame);
    if (line == NULL) {
        return NULL;
    }
    PyObject *exc = PySequence_GetItem(arg, 1);
    if (exc == NULL) {
        Py_DECREF(line);
        return NULL;
    }
    PyObject *args[5] = {self->rec, self->ts, self->act, line, exc};
    PyObject *res = PyObject_VectorcallMethod(s_exception, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(exc);
    Py_DECREF(line);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    return Py_NewRef(self);
}

static int
event_is(PyObject *event, PyObject *interned)
{
    if (event == interned) {  /* the trampoline passes interned event names */
        return 1;
    }
    return PyUnicode_Check(event) && PyUnicode_Compare(event, interned) == 0;
}

/* An Exception escaping an event goes to rec.failed(exc) and the call returns None; other
 * BaseExceptions propagate (the closure's ``except Exception``). */
static PyObject *
report_failure(PyObject *rec)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (exc == NULL) {
        Py_RETURN_NONE;
    }
#endif
    PyObject *res = PyObject_CallMethodOneArg(rec, s_failed, exc);
    Py_DECREF(exc);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

static PyObject *
handle_failure(LocalTracer *self)
{
    return report_failure(self->rec);
}

/* One event (PyTrace_LINE, _RETURN, _EXCEPTION or another) for this frame: the new
 * f_trace (new reference: this object, or None), or NULL with a BaseException set. The
 * settrace trampoline calls f_trace without holding a reference to it, and the recorder may
 * drop it during the call (stop_all sets every f_trace to None), so the object keeps itself
 * alive until it returns. A cleared object (tp_clear by the collector) records nothing. A
 * library activation (``library``) records its return only, as SettraceTracer._library. */
static PyObject *
lt_event(LocalTracer *self, PyObject *frame, int what, PyObject *arg)
{
    PyObject *op = (PyObject *)self, *result;
    if (self->rec == NULL) {
        Py_RETURN_NONE;
    }
    Py_INCREF(op);
    if (what == PyTrace_RETURN) {
        result = on_return(self, frame, arg);
    }
    else if (what == PyTrace_LINE && !self->library) {
        result = on_line(self, frame);
    }
    else if (what == PyTrace_EXCEPTION && !self->library) {
        result = on_exception(self, frame, arg);
    }
    else {
        result = Py_NewRef(op);
    }
    if (result == NULL) {
        result = handle_failure(self);
    }
    Py_DECREF(op);
    return result;
}

/* Called as f_trace(frame, event, arg) (by the settrace trampoline). */
static PyObject *
lt_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "LocalTracer takes (frame, event, arg)");
        return NULL;
    }
    PyObject *event = args[1];
    int what = event_is(event, s_line) ? PyTrace_LINE
               : event_is(event, s_return) ? PyTrace_RETURN
               : event_is(event, s_exception) ? PyTrace_EXCEPTION : PyTrace_OPCODE;
    return lt_event((LocalTracer *)op, args[0], what, args[2]);
}

/* ------------------------------------------------------------------ type */

static PyObject *
get_attr_checked(PyObject *obj, PyObject *name, PyTypeObject *exact, const char *what)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value != NULL && exact != NULL && !Py_IS_TYPE(value, exact)) {
        PyErr_Format(PyExc_TypeError, "LocalTracer: %s must be a %s, not %.100s", what,
                     exact->tp_name, Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

/* rec.steps, checked to be a list or a Steps. */
static PyObject *
get_steps(PyObject *rec)
{
    PyObject *steps = PyObject_GetAttr(rec, s_steps);
    if (steps != NULL && !is_steps(steps)) {
        PyErr_Format(PyExc_TypeError, "rec.steps must be a list or a Steps, not %.100s", Py_TYPE(steps)->tp_name);
        Py_CLEAR(steps);
    }
    return steps;
}

static PyObject *
lt_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rec", "ts", "act", "display", "immutable", "chunk_steps", "fingerprint",
                             "node_of", "kinds", "returning", NULL};
    PyObject *rec, *ts, *act, *display, *immutable, *fingerprint = Py_None, *node_of = Py_None;
    PyObject *kinds = Py_None, *returning = Py_None;
    Py_ssize_t chunk_steps;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOn|OOOO:LocalTracer", kwlist, &rec, &ts, &act,
                                     &display, &immutable, &chunk_steps, &fingerprint, &node_of, &kinds,
                                     &returning)) {
        return NULL;
    }
    if (kinds != Py_None && !PyDict_CheckExact(kinds)) {
        PyErr_SetString(PyExc_TypeError, "LocalTracer: kinds must be a dict or None");
        return NULL;
    }
    if (chunk_steps < 1) {
        PyErr_SetString(PyExc_ValueError, "LocalTracer: chunk_steps must be positive");
        return NULL;
    }
    LocalTracer *self = (LocalTracer *)type->tp_alloc(type, 0);  /* zeroed, GC-tracked */
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = lt_vectorcall;
    self->ts = Py_NewRef(ts);
    self->act = Py_NewRef(act);
    self->display = Py_NewRef(display);
    self->immutable = Py_NewRef(immutable);
    self->chunk_last = chunk_steps - 1;
    PyObject *code = NULL;
    if ((self->steps = get_steps(rec)) == NULL
            || (self->changes = get_attr_checked(rec, s_changes, &PyList_Type, "rec.changes")) == NULL
            || (self->diff = PyObject_GetAttr(rec, s_diff)) == NULL
            || (code = PyObject_GetAttr(act, s_code)) == NULL
            || (self->effects = get_attr_checked(code, s_effects, &PyDict_Type, "act.code.effects")) == NULL
            || (self->cid = PyObject_GetAttr(code, s_cid)) == NULL
            || (self->serial = PyObject_GetAttr(act, s_serial)) == NULL
            || (self->depth = PyObject_GetAttr(act, s_depth)) == NULL
            || (self->thread = PyObject_GetAttr(ts, s_index)) == NULL
            || (self->values = get_attr_checked(act, s_values, &PyDict_Type, "act.values")) == NULL
            || (self->nodes = get_attr_checked(act, s_nodes, &PyDict_Type, "act.nodes")) == NULL
            || (fingerprint != Py_None
                && (self->fps = get_attr_checked(act, s_fps, &PyDict_Type, "act.fps")) == NULL)
            || find_line_member(self) < 0
            || (returning != Py_None
                && ((self->act_end = PyObject_GetAttr(rec, s_act_end)) == NULL
                    || (self->stack = get_attr_checked(ts, s_stack, &PyList_Type, "ts.stack")) == NULL
                    || (self->live = get_attr_checked(rec, s_live, &PyDict_Type, "rec.live")) == NULL
                    || find_member(act, s_frame, &self->frame_descr, &self->frame_member) < 0))) {
        Py_XDECREF(code);
        Py_DECREF(self);
        return NULL;
    }
    self->kinds = fingerprint != Py_None && kinds != Py_None ? Py_NewRef(kinds) : NULL;
    self->returning = returning != Py_None ? Py_NewRef(returning) : NULL;
    Py_DECREF(code);
    self->fingerprint = fingerprint != Py_None ? Py_NewRef(fingerprint) : NULL;
    self->node_of = fingerprint != Py_None && node_of != Py_None ? Py_NewRef(node_of) : NULL;
    self->rec_dict = base_dict(rec);
    self->rec = Py_NewRef(rec);  /* set last: a NULL rec marks an unusable object */
    return (PyObject *)self;
}

static int
lt_traverse(LocalTracer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->rec_dict);
    Py_VISIT(self->last_base);
    Py_VISIT(self->last_step);
    Py_VISIT(self->rec);
    Py_VISIT(self->ts);
    Py_VISIT(self->act);
    Py_VISIT(self->steps);
    Py_VISIT(self->changes);
    Py_VISIT(self->diff);
    Py_VISIT(self->effects);
    Py_VISIT(self->values);
    Py_VISIT(self->nodes);
    Py_VISIT(self->display);
    Py_VISIT(self->immutable);
    Py_VISIT(self->fingerprint);
    Py_VISIT(self->fps);
    Py_VISIT(self->node_of);
    Py_VISIT(self->cid);
    Py_VISIT(self->serial);
    Py_VISIT(self->depth);
    Py_VISIT(self->thread);
    Py_VISIT(self->line_descr);
    Py_VISIT(self->kinds);
    Py_VISIT(self->returning);
    Py_VISIT(self->act_end);
    Py_VISIT(self->stack);
    Py_VISIT(self->live);
    Py_VISIT(self->frame_descr);
    return 0;
}

static int
lt_clear(LocalTracer *self)
{
    Py_CLEAR(self->rec_dict);
    Py_CLEAR(self->last_base);
    Py_CLEAR(self->last_step);
    Py_CLEAR(self->rec);
    Py_CLEAR(self->ts);
    Py_CLEAR(self->act);
    Py_CLEAR(self->steps);
    Py_CLEAR(self->changes);
    Py_CLEAR(self->diff);
    Py_CLEAR(self->effects);
    Py_CLEAR(self->values);
    Py_CLEAR(self->nodes);
    Py_CLEAR(self->display);
    Py_CLEAR(self->immutable);
    Py_CLEAR(self->fingerprint);
    Py_CLEAR(self->fps);
    Py_CLEAR(self->node_of);
    Py_CLEAR(self->cid);
    Py_CLEAR(self->serial);
    Py_CLEAR(self->depth);
    Py_CLEAR(self->thread);
    self->line_member = NULL;
    Py_CLEAR(self->line_descr);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->returning);
    Py_CLEAR(self->act_end);
    Py_CLEAR(self->stack);
    Py_CLEAR(self->live);
    self->frame_member = NULL;
    Py_CLEAR(self->frame_descr);
    return 0;
}

static void
lt_dealloc(LocalTracer *self)
{
    PyObject_GC_UnTrack(self);
    lt_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(lt_doc,
"LocalTracer(rec, ts, act, display, immutable, chunk_steps, fingerprint=None, node_of=None)\n--\n\n"
"The local trace function of one traced frame, in C: called as f(frame, event, arg), it\n"
"records steps and changed locals exactly as tracer.line_tracer's closure does.");

static PyTypeObject LocalTracerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.LocalTracer",
    .tp_basicsize = sizeof(LocalTracer),
    .tp_dealloc = (destructor)lt_dealloc,
    .tp_vectorcall_offset = offsetof(LocalTracer, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = lt_doc,
    .tp_traverse = (traverseproc)lt_traverse,
    .tp_clear = (inquiry)lt_clear,
    .tp_new = lt_new,
};

/* ------------------------------------------------------------------ global tracer */

/* ``GlobalTracer(rec, display, immutable, chunk_steps, fingerprint=None, node_of=None,
 * kinds=None, returning=None)``: SettraceTracer's global trace function in C, installed with
 * PyEval_SetTrace (as coverage.py's CTracer is), so that no event goes through the settrace
 * trampoline (its argument tuple, FastToLocals/LocalsToFast around every call) or Python code
 * on the common path. The arguments after ``rec`` are the LocalTracer arguments that
 * tracer.line_tracer would pass.
 *
 * Installed by calling it as a settrace function: ``sys.settrace(g)`` and
 * ``threading.settrace(g)``. The trampoline calls it for the first call event of the thread;
 * it handles the event and installs itself the C way (only on a call event: after
 * ``sys.settrace(other)`` the trampoline calls ``other`` and this object is not called again).
 * ``sys.gettrace()`` returns it, so a program that saves and restores the trace function
 * reinstalls it.
 *
 * Events, as SettraceTracer._global and the trampoline do them:
 *   call:  when rec.stopped or rec.in_gc, nothing (and f_trace = None). Else the code's
 *          rec.codes entry (rec.code(code) when missing), the thread's rec._threads entry
 *          (rec.thread() when missing); an in-scope frame: rec.push(ts, info, frame) and
 *          f_trace = a LocalTracer; a library frame called directly from traced application
 *          code: rec.push, f_trace_lines = 0 and f_trace = a library LocalTracer (its return
 *          only); any other frame: f_trace = None, f_trace_lines = 0 (no line events).
 *   other: to frame.f_trace: a LocalTracer directly in C, anything else called as the
 *          trampoline calls it; a result other than None becomes f_trace.
 * An Exception raised while handling an event goes to rec.failed(exc) (tracing stops, the
 * program goes on); another BaseException propagates into the program and ends tracing on
 * this thread, as from the trampoline.
 *
 * What a program could see differently from the trampoline: a frame's f_locals dict (3.11,
 * 3.12) is refreshed when the recorder reads it, not before every event (closer to running
 * untraced), and frames that were not traced keep f_trace_lines = False (a debugger that
 * later sets f_trace on such a frame, still live, gets no line events from it). */

#define ACT_FIELDS 11  /* Activation: serial code frame depth thread nodes values fps kids hits line */
#define ACT_TABLES 7   /* rec._act_code _act_parent _act_call _act_end _act_depth _act_thread _act_nth */

static PyObject *snapshot_locals(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

typedef struct {
    PyObject *name;       /* attribute name (interned) */
    PyTypeObject *type;   /* the type last looked at, or NULL */
    PyObject *descr;      /* its member descriptor when read directly, else NULL */
    PyMemberDef *member;
} Slot;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *rec, *codes, *threads;          /* the recorder, rec.codes, rec._threads */
    PyObject *rec_dict;                       /* base_dict(rec) */
    PyObject *steps, *changes, *diff;         /* what LocalTracer captures of rec */
    PyObject *act_end, *live;
    PyObject *display, *immutable, *fingerprint, *node_of, *kinds, *returning;
    Py_ssize_t chunk_last;
    Slot code_in_scope, code_lib, code_effects, code_cid, code_qualname, code_module_level;
    Slot act_frame, act_code, act_serial, act_depth, act_values, act_nodes, act_fps, act_line, act_kids;
    Slot ts_stack, ts_index;
    /* gt_push: the Activation class (NULL: rec.push does every push), its fields' members and
     * descriptors in __init__'s order, rec's activation tables and their bound append methods,
     * snapshot_locals' (display, immutable, shown, kinds, fingerprint, node_of) */
    PyObject *activation;
    PyMemberDef *act_members[ACT_FIELDS];
    PyObject *act_descrs[ACT_FIELDS];
    PyObject *act_tables[ACT_TABLES], *act_appends[ACT_TABLES];
    PyObject *snapshot;
    PyObject *zero, *one, *minus_one;
} GlobalTracer;

static PyTypeObject GlobalTracerType;

/* PyFrame_Type's f_trace accessors and f_trace_lines member (found at import). */
static getter frame_get_trace;
static setter frame_set_trace;
static PyMemberDef *frame_trace_lines;

static int
find_frame_accessors(void)
{
    for (PyGetSetDef *gs = PyFrame_Type.tp_getset; gs != NULL && gs->name != NULL; gs++) {
        if (strcmp(gs->name, "f_trace") == 0) {
            frame_get_trace = gs->get;
            frame_set_trace = gs->set;
        }
    }
    for (PyMemberDef *m = PyFrame_Type.tp_members; m != NULL && m->name != NULL; m++) {
        if (strcmp(m->name, "f_trace_lines") == 0 && m->type == T_BOOL) {
            frame_trace_lines = m;
        }
    }
    return 0;
}

/* frame.f_trace (new reference; None when unset). */
static PyObject *
get_f_trace(PyFrameObject *frame)
{
    if (frame_get_trace != NULL) {
        return frame_get_trace((PyObject *)frame, NULL);
    }
    return PyObject_GetAttr((PyObject *)frame, s_f_trace);
}

/* frame.f_trace = value (None clears it). 0 or -1. */
static int
set_f_trace(PyFrameObject *frame, PyObject *value)
{
    if (frame_set_trace != NULL) {
        return frame_set_trace((PyObject *)frame, value, NULL);
    }
    return PyObject_SetAttr((PyObject *)frame, s_f_trace, value);
}

/* frame.f_trace = None unless it is None already. 0 or -1. */
static int
clear_f_trace(PyFrameObject *frame)
{
    PyObject *current = get_f_trace(frame);
    if (current == NULL) {
        return -1;
    }
    int rc = current != Py_None ? set_f_trace(frame, Py_None) : 0;
    Py_DECREF(current);
    return rc;
}

/* frame.f_trace_lines = on. 0 or -1. */
static int
set_trace_lines(PyFrameObject *frame, int on)
{
    if (frame_trace_lines != NULL) {
        *((char *)frame + frame_trace_lines->offset) = (char)(on != 0);
        return 0;
    }
    return PyObject_SetAttr((PyObject *)frame, s_f_trace_lines, on ? Py_True : Py_False);
}

static void
slot_init(Slot *s, PyObject *name)
{
    s->name = name;
    s->type = NULL;
    s->descr = NULL;
    s->member = NULL;
}

static void
slot_clear(Slot *s)
{
    Py_CLEAR(s->type);
    Py_CLEAR(s->descr);
    s->member = NULL;
}

/* obj.<name> (new reference): through its slot's member definition when type(obj) is a
 * plain slots class (find_member), else by attribute. The member is looked up again when
 * another type comes. */
static PyObject *
slot_get(Slot *s, PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (s->type != type) {
        slot_clear(s);
        if (find_member(obj, s->name, &s->descr, &s->member) < 0) {
            PyErr_Clear();  /* no such attribute on the class: read by attribute */
            s->descr = NULL;
            s->member = NULL;
        }
        s->type = (PyTypeObject *)Py_NewRef(type);
    }
    if (s->member != NULL) {
        return PyMember_GetOne((const char *)obj, s->member);
    }
    return PyObject_GetAttr(obj, s->name);
}

/* bool(obj.<name>): 1, 0 or -1. */
static int
slot_true(Slot *s, PyObject *obj)
{
    PyObject *value = slot_get(s, obj);
    if (value == NULL) {
        return -1;
    }
    int yes = value == Py_True ? 1 : value == Py_False ? 0 : PyObject_IsTrue(value);
    Py_DECREF(value);
    return yes;
}

/* bool(obj.<name>) for a plain attribute: 1, 0 or -1. */
static int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    int yes = value == Py_True ? 1 : value == Py_False ? 0 : PyObject_IsTrue(value);
    Py_DECREF(value);
    return yes;
}

/* The attribute read from ``obj`` through ``s``, checked to be an exact ``exact``. */
static PyObject *
slot_checked(Slot *s, PyObject *obj, PyTypeObject *exact, const char *what)
{
    PyObject *value = slot_get(s, obj);
    if (value != NULL && !Py_IS_TYPE(value, exact)) {
        PyErr_Format(PyExc_TypeError, "GlobalTracer: %s must be a %s, not %.100s", what, exact->tp_name,
                     Py_TYPE(value)->tp_name);
        Py_CLEAR(value);
    }
    return value;
}

/* The LocalTracer of a pushed activation: what LocalTracer(rec, ts, act, <g's arguments>)
 * makes, its fields read through the global tracer's slots. New reference, NULL on error. */
static PyObject *
lt_from(GlobalTracer *g, PyObject *ts, PyObject *act, PyObject *info, int library)
{
    LocalTracer *self = (LocalTracer *)LocalTracerType.tp_alloc(&LocalTracerType, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = lt_vectorcall;
    self->library = library;
    self->ts = Py_NewRef(ts);
    self->act = Py_NewRef(act);
    self->steps = Py_NewRef(g->steps);
    self->changes = Py_NewRef(g->changes);
    self->diff = Py_NewRef(g->diff);
    self->display = Py_NewRef(g->display);
    self->immutable = Py_NewRef(g->immutable);
    self->chunk_last = g->chunk_last;
    self->fingerprint = Py_XNewRef(g->fingerprint);
    self->node_of = Py_XNewRef(g->node_of);
    self->kinds = Py_XNewRef(g->kinds);
    if ((self->effects = slot_checked(&g->code_effects, info, &PyDict_Type, "act.code.effects")) == NULL
            || (self->cid = slot_get(&g->code_cid, info)) == NULL
            || (self->serial = slot_get(&g->act_serial, act)) == NULL
            || (self->depth = slot_get(&g->act_depth, act)) == NULL
            || (self->thread = slot_get(&g->ts_index, ts)) == NULL
            || (self->values = slot_checked(&g->act_values, act, &PyDict_Type, "act.values")) == NULL
            || (self->nodes = slot_checked(&g->act_nodes, act, &PyDict_Type, "act.nodes")) == NULL
            || (g->fingerprint != NULL
                && (self->fps = slot_checked(&g->act_fps, act, &PyDict_Type, "act.fps")) == NULL)) {
        Py_DECREF(self);
        return NULL;
    }
    /* act.line and act.frame through their members, as find_line_member and find_member
     * would find them (the slots have just read act's other fields, so they know its type) */
    PyObject *line = slot_get(&g->act_line, act);
    if (line == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    Py_DECREF(line);
    if (g->act_line.member != NULL) {
        self->line_descr = Py_NewRef(g->act_line.descr);
        self->line_member = g->act_line.member;
    }
    if (g->returning != NULL) {
        PyObject *frame = slot_get(&g->act_frame, act);
        if (frame == NULL) {
            Py_DECREF(self);
            return NULL;
        }
        Py_DECREF(frame);
        if (g->act_frame.member != NULL) {
            self->frame_descr = Py_NewRef(g->act_frame.descr);
            self->frame_member = g->act_frame.member;
        }
        self->returning = Py_NewRef(g->returning);
        self->act_end = Py_NewRef(g->act_end);
        self->live = Py_NewRef(g->live);
        if ((self->stack = slot_checked(&g->ts_stack, ts, &PyList_Type, "ts.stack")) == NULL) {
            Py_DECREF(self);
            return NULL;
        }
    }
    self->rec_dict = Py_XNewRef(g->rec_dict);
    self->rec = Py_NewRef(g->rec);  /* set last: a NULL rec marks an unusable object */
    return (PyObject *)self;
}

/* This thread's _Thread: rec._threads[threading.get_ident()], else rec.thread() (which makes
 * it). New reference, NULL on error. */
static PyObject *
gt_thread(GlobalTracer *g)
{
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        return NULL;
    }
    PyObject *ts = PyDict_GetItemWithError(g->threads, ident);
    Py_DECREF(ident);
    if (ts != NULL) {
        return Py_NewRef(ts);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_CallMethodNoArgs(g->rec, s_thread);
}

/* 1 when a library frame called now is called directly from traced application code: the
 * thread's innermost activation is the caller's, of in-scope code. 0, or -1 on error. */
static int
called_from_app(GlobalTracer *g, PyObject *ts, PyFrameObject *frame)
{
    PyObject *stack = slot_checked(&g->ts_stack, ts, &PyList_Type, "ts.stack");
    if (stack == NULL) {
        return -1;
    }
    Py_ssize_t size = PyList_GET_SIZE(stack);
    if (size == 0) {
        Py_DECREF(stack);
        return 0;
    }
    PyObject *top = Py_NewRef(PyList_GET_ITEM(stack, size - 1));
    Py_DECREF(stack);
    PyObject *top_frame = slot_get(&g->act_frame, top);
    if (top_frame == NULL) {
        Py_DECREF(top);
        return -1;
    }
    PyFrameObject *back = PyFrame_GetBack(frame);
    int same = (PyObject *)back == top_frame;
    Py_XDECREF(back);
    Py_DECREF(top_frame);
    if (!same) {
        Py_DECREF(top);
        return 0;
    }
    PyObject *code = slot_get(&g->act_code, top);
    Py_DECREF(top);
    if (code == NULL) {
        return -1;
    }
    int in_scope = slot_true(&g->code_in_scope, code);
    Py_DECREF(code);
    return in_scope;
}

/* TraceRecorder.push(ts, info, frame) in C for a frame called below a traced activation
 * whose code already has its id (any other call goes to rec.push: a thread's root call
 * checks its strand, a library function's first call numbers its code), when the global
 * tracer was given the Activation class and snapshot_locals' arguments. The same steps,
 * table entries and changes, in the same order; the Activation made as its __init__ makes it.
 * New reference, NULL on error. */
static PyObject *
gt_push(GlobalTracer *g, PyObject *ts, PyObject *info, PyFrameObject *frame)
{
    PyObject *stack = NULL, *parent = NULL, *kids = NULL, *parent_serial = NULL, *qualname = NULL;
    PyObject *cid = NULL, *act = NULL, *serial = NULL, *depth = NULL, *thread = NULL, *nth = NULL;
    PyObject *n = NULL, *line = NULL, *module_level = NULL;
    int ok = 0;
    if (g->activation == NULL || (cid = slot_get(&g->code_cid, info)) == NULL) {
        goto python;
    }
    long cid_value = PyLong_AsLong(cid);
    if (cid_value < 0 || (stack = slot_checked(&g->ts_stack, ts, &PyList_Type, "ts.stack")) == NULL
            || PyList_GET_SIZE(stack) == 0) {
        if (PyErr_Occurred()) {
            goto done;
        }
        goto python;
    }
    Py_ssize_t count = PyObject_Length(g->act_tables[0]);
    if (count < 0) {
        goto done;
    }
    parent = Py_NewRef(PyList_GET_ITEM(stack, PyList_GET_SIZE(stack) - 1));
    if ((kids = slot_checked(&g->act_kids, parent, &PyDict_Type, "act.kids")) == NULL
            || (parent_serial = slot_get(&g->act_serial, parent)) == NULL
            || (qualname = slot_get(&g->code_qualname, info)) == NULL) {
        goto done;
    }
    PyObject *seen = PyDict_GetItemWithError(kids, qualname);
    if (seen == NULL && PyErr_Occurred()) {
        goto done;
    }
    nth = PyNumber_Add(seen != NULL ? seen : g->zero, g->one);
    if (nth == NULL || PyDict_SetItem(kids, qualname, nth) < 0) {
        goto done;
    }
    if ((serial = PyLong_FromSsize_t(count)) == NULL || (depth = PyLong_FromSsize_t(PyList_GET_SIZE(stack))) == NULL
            || (thread = slot_get(&g->ts_index, ts)) == NULL) {
        goto done;
    }
    /* Activation(serial, info, frame, depth, thread), its fields set as __init__ sets them */
    PyTypeObject *type = (PyTypeObject *)g->activation;
    act = type->tp_alloc(type, 0);
    if (act == NULL) {
        goto done;
    }
    PyObject *fields[] = {serial, info, (PyObject *)frame, depth, thread, NULL, NULL, NULL, NULL, NULL, g->zero};
    for (int i = 0; i < ACT_FIELDS; i++) {
        PyObject *value = fields[i] != NULL ? Py_NewRef(fields[i]) : PyDict_New();
        int rc = value != NULL ? PyMember_SetOne((char *)act, g->act_members[i], value) : -1;
        Py_XDECREF(value);
        if (rc < 0) {
            goto done;
        }
    }
    PyObject *base = PyObject_GetAttr(g->rec, s_base);
    if (base == NULL) {
        goto done;
    }
    PyObject *offset = PyLong_FromSsize_t(steps_size(g->steps));
    n = offset != NULL ? PyNumber_Add(base, offset) : NULL;
    Py_DECREF(base);
    Py_XDECREF(offset);
    if (n == NULL) {
        goto done;
    }
    PyObject *row[] = {cid, parent_serial, n, g->minus_one, depth, thread, nth};
    for (int i = 0; i < ACT_TABLES; i++) {  /* rec._act_code.append(info.cid), ... */
        PyObject *res = PyObject_CallOneArg(g->act_appends[i], row[i]);
        if (res == NULL) {
            goto done;
        }
        Py_DECREF(res);
    }
    if (PyList_Append(stack, act) < 0 || PyDict_SetItem(g->live, serial, act) < 0
            || (line = frame_lineno((PyObject *)frame)) == NULL
            || PyMember_SetOne((char *)act, g->act_members[ACT_FIELDS - 1], line) < 0
            || (module_level = slot_get(&g->code_module_level, info)) == NULL) {
        goto done;
    }
    PyObject *args[11] = {act, (PyObject *)frame, n, g->changes};
    for (Py_ssize_t i = 0; i < 6; i++) {
        args[4 + i + (i >= 3)] = PyTuple_GET_ITEM(g->snapshot, i);  /* display, immutable, shown, kinds, fp, node_of */
    }
    args[7] = module_level;
    PyObject *res = snapshot_locals(NULL, args, 11);
    if (res == NULL) {
        goto done;
    }
    Py_DECREF(res);
    PyObject *record[STEP_FIELDS] = {g->zero, cid, line, serial, depth, thread};  /* CALL is 0 */
    ok = append_step(g->steps, record) == 0;
    goto done;
python:
    Py_CLEAR(cid);
    Py_CLEAR(stack);
    PyObject *pargs[4] = {g->rec, ts, info, (PyObject *)frame};
    act = PyObject_VectorcallMethod(s_push, pargs, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    return act;
done:
    Py_XDECREF(stack);
    Py_XDECREF(parent);
    Py_XDECREF(kids);
    Py_XDECREF(parent_serial);
    Py_XDECREF(qualname);
    Py_XDECREF(cid);
    Py_XDECREF(serial);
    Py_XDECREF(depth);
    Py_XDECREF(thread);
    Py_XDECREF(nth);
    Py_XDECREF(n);
    Py_XDECREF(line);
    Py_XDECREF(module_level);
    if (!ok) {
        Py_CLEAR(act);
    }
    return act;
}

/* The call event: SettraceTracer._global. The frame's new f_trace (new reference; None: no
 * change), or NULL with a BaseException set. */
static PyObject *
gt_call(GlobalTracer *g, PyFrameObject *frame)
{
    PyObject *code = NULL, *info = NULL, *ts = NULL, *act = NULL, *result = NULL;
    int off = attr_true(g->rec, s_stopped);
    if (off == 0) {
        off = attr_true(g->rec, s_in_gc);
    }
    if (off != 0) {
        if (off < 0 || clear_f_trace(frame) < 0) {
            goto error;
        }
        Py_RETURN_NONE;
    }
    code = (PyObject *)PyFrame_GetCode(frame);
    info = PyDict_GetItemWithError(g->codes, code);
    if (info != NULL) {
        Py_INCREF(info);
    }
    else if (PyErr_Occurred() || (info = PyObject_CallMethodOneArg(g->rec, s_code, code)) == NULL) {
        goto error;
    }
    if ((ts = gt_thread(g)) == NULL) {
        goto error;
    }
    int in_scope = slot_true(&g->code_in_scope, info);
    if (in_scope < 0) {
        goto error;
    }
    if (!in_scope) {
        int traced = slot_true(&g->code_lib, info);
        if (traced > 0) {
            traced = called_from_app(g, ts, frame);
        }
        if (traced < 0) {
            goto error;
        }
        if (!traced) {  /* not traced: no line events, and no stale f_trace (a resumed generator) */
            if (clear_f_trace(frame) < 0 || set_trace_lines(frame, 0) < 0) {
                goto error;
            }
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    act = gt_push(g, ts, info, frame);
    if (act == NULL || (!in_scope && set_trace_lines(frame, 0) < 0)) {
        goto error;
    }
    result = lt_from(g, ts, act, info, !in_scope);
    if (result == NULL) {
        goto error;
    }
done:
    Py_XDECREF(act);
    Py_XDECREF(ts);
    Py_XDECREF(info);
    Py_XDECREF(code);
    return result;
error:
    Py_XDECREF(act);
    Py_XDECREF(ts);
    Py_XDECREF(info);
    Py_XDECREF(code);
    return report_failure(g->rec);
}

#if PY_VERSION_HEX < 0x030D0000
#define FAST_TO_LOCALS(frame) PyFrame_FastToLocalsWithError(frame)
#define LOCALS_TO_FAST(frame) PyFrame_LocalsToFast((frame), 1)
#else  /* 3.13: frame.f_locals is a write-through proxy (PEP 667) */
#define FAST_TO_LOCALS(frame) 0
#define LOCALS_TO_FAST(frame) ((void)0)
#endif

/* f_trace(frame, event, arg) for an f_trace that is not a LocalTracer (set by the program),
 * as the trampoline calls it. New reference or NULL. */
static PyObject *
call_foreign(PyObject *callback, PyFrameObject *frame, int what, PyObject *arg)
{
    static const char *names[] = {"call", "exception", "line", "return", "c_call", "c_exception",
                                  "c_return", "opcode"};
    if (what < 0 || what > 7) {
        Py_RETURN_NONE;
    }
    PyObject *event = PyUnicode_InternFromString(names[what]);
    if (event == NULL || FAST_TO_LOCALS(frame) < 0) {
        Py_XDECREF(event);
        return NULL;
    }
    PyObject *args[3] = {(PyObject *)frame, event, arg};
    PyObject *result = PyObject_Vectorcall(callback, args, 3, NULL);
    LOCALS_TO_FAST(frame);
    Py_DECREF(event);
    return result;
}

/* An error leaves the trace function as the trampoline does: tracing off on this thread,
 * the frame's f_trace cleared, the error raised in the frame. */
static int
gt_raise(PyFrameObject *frame)
{
    PyTraceBack_Here(frame);
    PyEval_SetTrace(NULL, NULL);
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
    if (set_f_trace(frame, Py_None) < 0) {
        PyErr_Clear();
    }
    PyErr_SetRaisedException(exc);
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (set_f_trace(frame, Py_None) < 0) {
        PyErr_Clear();
    }
    PyErr_Restore(type, value, tb);
#endif
    return -1;
}

/* The C trace function (PyEval_SetTrace). */
static int
gt_trace(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    GlobalTracer *g = (GlobalTracer *)obj;
    PyObject *result;
    if (arg == NULL) {  /* a return while an exception unwinds the frame */
        arg = Py_None;
    }
    if (what == PyTrace_CALL) {
        if (g->rec == NULL) {
            return 0;
        }
        Py_INCREF(obj);  /* sys.settrace(None) in a callee of the recorder would free it */
        result = gt_call(g, frame);
        Py_DECREF(obj);
        if (result == NULL) {
            return gt_raise(frame);
        }
        int rc = result != Py_None ? set_f_trace(frame, result) : 0;
        Py_DECREF(result);
        return rc;
    }
    PyObject *callback = get_f_trace(frame);
    if (callback == NULL) {
        return -1;
    }
    if (callback == Py_None) {
        Py_DECREF(callback);
        return 0;
    }
    if (Py_IS_TYPE(callback, &LocalTracerType)) {
        result = lt_event((LocalTracer *)callback, (PyObject *)frame, what, arg);
    }
    else {
        result = call_foreign(callback, frame, what, arg);
    }
    if (result == NULL) {
        Py_DECREF(callback);
        return gt_raise(frame);
    }
    int rc = result != Py_None && result != callback ? set_f_trace(frame, result) : 0;
    Py_DECREF(result);
    Py_DECREF(callback);
    return rc;
}

/* Called as a settrace function (by the trampoline, for a thread's first call event after
 * sys.settrace(self)): the call event, then install the C trace function on this thread. */
static PyObject *
gt_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    GlobalTracer *g = (GlobalTracer *)op;
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "GlobalTracer takes (frame, event, arg)");
        return NULL;
    }
    if (!PyFrame_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "GlobalTracer: frame must be a frame");
        return NULL;
    }
    if (g->rec == NULL || !event_is(args[1], s_call)) {
        Py_RETURN_NONE;
    }
    Py_INCREF(op);
    PyObject *result = gt_call(g, (PyFrameObject *)args[0]);
    if (result != NULL) {
        PyEval_SetTrace(gt_trace, op);
    }
    Py_DECREF(op);
    return result;
}

/* What gt_push needs: every field of ``activation`` a plain slot (else every push goes to
 * rec.push), rec's activation tables and their append methods. 0, or -1 on error. */
static int
gt_find_push(GlobalTracer *self, PyTypeObject *activation, PyObject *rec, PyObject *snapshot)
{
    const char *fields[ACT_FIELDS] = {"serial", "code", "frame", "depth", "thread", "nodes", "values", "fps",
                                      "kids", "hits", "line"};
    const char *tables[ACT_TABLES] = {"_act_code", "_act_parent", "_act_call", "_act_end", "_act_depth",
                                      "_act_thread", "_act_nth"};
    if (activation->tp_new != PyBaseObject_Type.tp_new || activation->tp_alloc != PyType_GenericAlloc) {
        return 0;
    }
    for (int i = 0; i < ACT_FIELDS; i++) {
        PyObject *name = PyUnicode_InternFromString(fields[i]);
        int rc = name != NULL ? find_type_member(activation, name, &self->act_descrs[i], &self->act_members[i]) : -1;
        Py_XDECREF(name);
        if (rc < 0) {
            return -1;
        }
        if (self->act_members[i] == NULL) {
            return 0;  /* not a plain slot: rec.push */
        }
    }
    for (int i = 0; i < ACT_TABLES; i++) {
        if ((self->act_tables[i] = PyObject_GetAttrString(rec, tables[i])) == NULL
                || (self->act_appends[i] = PyObject_GetAttrString(self->act_tables[i], "append")) == NULL) {
            return -1;
        }
    }
    if ((self->zero = PyLong_FromLong(0)) == NULL || (self->one = PyLong_FromLong(1)) == NULL
            || (self->minus_one = PyLong_FromLong(-1)) == NULL) {
        return -1;
    }
    self->snapshot = Py_NewRef(snapshot);
    self->activation = Py_NewRef(activation);
    return 0;
}

static PyObject *
gt_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rec", "display", "immutable", "chunk_steps", "fingerprint", "node_of", "kinds",
                             "returning", "activation", "snapshot", NULL};
    PyObject *rec, *display, *immutable, *fingerprint = Py_None, *node_of = Py_None;
    PyObject *kinds = Py_None, *returning = Py_None, *activation = Py_None, *snapshot = Py_None;
    Py_ssize_t chunk_steps;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOn|OOOOOO:GlobalTracer", kwlist, &rec, &display, &immutable,
                                     &chunk_steps, &fingerprint, &node_of, &kinds, &returning, &activation,
                                     &snapshot)) {
        return NULL;
    }
    if ((activation != Py_None || snapshot != Py_None)
            && (!PyType_Check(activation) || !PyTuple_CheckExact(snapshot) || PyTuple_GET_SIZE(snapshot) != 6
                || returning == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "GlobalTracer: activation must be a class and snapshot a 6-tuple, "
                                         "with returning");
        return NULL;
    }
    if (kinds != Py_None && !PyDict_CheckExact(kinds)) {
        PyErr_SetString(PyExc_TypeError, "GlobalTracer: kinds must be a dict or None");
        return NULL;
    }
    if (chunk_steps < 1) {
        PyErr_SetString(PyExc_ValueError, "GlobalTracer: chunk_steps must be positive");
        return NULL;
    }
    GlobalTracer *self = (GlobalTracer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = gt_vectorcall;
    Slot *slots[] = {&self->code_in_scope, &self->code_lib, &self->code_effects, &self->code_cid,
                     &self->code_qualname, &self->code_module_level,
                     &self->act_frame, &self->act_code, &self->act_serial, &self->act_depth,
                     &self->act_values, &self->act_nodes, &self->act_fps, &self->act_line, &self->act_kids,
                     &self->ts_stack, &self->ts_index};
    PyObject *names[] = {s_in_scope, s_lib, s_effects, s_cid, s_qualname, s_module_level, s_frame, s_code,
                         s_serial, s_depth, s_values, s_nodes, s_fps, s_line, s_kids, s_stack, s_index};
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        slot_init(slots[i], names[i]);
    }
    self->display = Py_NewRef(display);
    self->immutable = Py_NewRef(immutable);
    self->chunk_last = chunk_steps - 1;
    self->fingerprint = fingerprint != Py_None ? Py_NewRef(fingerprint) : NULL;
    self->node_of = fingerprint != Py_None && node_of != Py_None ? Py_NewRef(node_of) : NULL;
    self->kinds = fingerprint != Py_None && kinds != Py_None ? Py_NewRef(kinds) : NULL;
    self->returning = returning != Py_None ? Py_NewRef(returning) : NULL;
    if ((self->codes = get_attr_checked(rec, s_codes, &PyDict_Type, "rec.codes")) == NULL
            || (self->threads = get_attr_checked(rec, s_threads, &PyDict_Type, "rec._threads")) == NULL
            || (self->steps = get_steps(rec)) == NULL
            || (self->changes = get_attr_checked(rec, s_changes, &PyList_Type, "rec.changes")) == NULL
            || (self->diff = PyObject_GetAttr(rec, s_diff)) == NULL
            || (self->returning != NULL
                && ((self->act_end = PyObject_GetAttr(rec, s_act_end)) == NULL
                    || (self->live = get_attr_checked(rec, s_live, &PyDict_Type, "rec.live")) == NULL))) {
        Py_DECREF(self);
        return NULL;
    }
    self->rec_dict = base_dict(rec);
    if (activation != Py_None && gt_find_push(self, (PyTypeObject *)activation, rec, snapshot) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->rec = Py_NewRef(rec);  /* set last: a NULL rec marks an unusable object */
    return (PyObject *)self;
}

static int
gt_traverse(GlobalTracer *self, visitproc visit, void *arg)
{
    Py_VISIT(self->rec);
    Py_VISIT(self->codes);
    Py_VISIT(self->threads);
    Py_VISIT(self->steps);
    Py_VISIT(self->changes);
    Py_VISIT(self->diff);
    Py_VISIT(self->act_end);
    Py_VISIT(self->live);
    Py_VISIT(self->display);
    Py_VISIT(self->immutable);
    Py_VISIT(self->fingerprint);
    Py_VISIT(self->node_of);
    Py_VISIT(self->kinds);
    Py_VISIT(self->returning);
    Py_VISIT(self->activation);
    Py_VISIT(self->snapshot);
    Py_VISIT(self->rec_dict);
    for (int i = 0; i < ACT_TABLES; i++) {
        Py_VISIT(self->act_tables[i]);
        Py_VISIT(self->act_appends[i]);
    }
    return 0;
}

static int
gt_clear(GlobalTracer *self)
{
    Py_CLEAR(self->rec);
    Py_CLEAR(self->codes);
    Py_CLEAR(self->threads);
    Py_CLEAR(self->steps);
    Py_CLEAR(self->changes);
    Py_CLEAR(self->diff);
    Py_CLEAR(self->act_end);
    Py_CLEAR(self->live);
    Py_CLEAR(self->display);
    Py_CLEAR(self->immutable);
    Py_CLEAR(self->fingerprint);
    Py_CLEAR(self->node_of);
    Py_CLEAR(self->kinds);
    Py_CLEAR(self->returning);
    Py_CLEAR(self->activation);
    Py_CLEAR(self->snapshot);
    Py_CLEAR(self->rec_dict);
    Py_CLEAR(self->zero);
    Py_CLEAR(self->one);
    Py_CLEAR(self->minus_one);
    for (int i = 0; i < ACT_FIELDS; i++) {
        self->act_members[i] = NULL;
        Py_CLEAR(self->act_descrs[i]);
    }
    for (int i = 0; i < ACT_TABLES; i++) {
        Py_CLEAR(self->act_tables[i]);
        Py_CLEAR(self->act_appends[i]);
    }
    Slot *slots[] = {&self->code_in_scope, &self->code_lib, &self->code_effects, &self->code_cid,
                     &self->code_qualname, &self->code_module_level,
                     &self->act_frame, &self->act_code, &self->act_serial, &self->act_depth,
                     &self->act_values, &self->act_nodes, &self->act_fps, &self->act_line, &self->act_kids,
                     &self->ts_stack, &self->ts_index};
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        slot_clear(slots[i]);
    }
    return 0;
}

static void
gt_dealloc(GlobalTracer *self)
{
    PyObject_GC_UnTrack(self);
    gt_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(gt_doc,
"GlobalTracer(rec, display, immutable, chunk_steps, fingerprint=None, node_of=None, kinds=None,\n"
"             returning=None)\n--\n\n"
"SettraceTracer's global trace function in C: pass it to sys.settrace and threading.settrace;\n"
"on a thread's first call event it installs itself with PyEval_SetTrace. Frames it traces\n"
"get a LocalTracer (made with the same arguments) as f_trace, called from C.");

static PyTypeObject GlobalTracerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.GlobalTracer",
    .tp_basicsize = sizeof(GlobalTracer),
    .tp_dealloc = (destructor)gt_dealloc,
    .tp_vectorcall_offset = offsetof(GlobalTracer, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = gt_doc,
    .tp_traverse = (traverseproc)gt_traverse,
    .tp_clear = (inquiry)gt_clear,
    .tp_new = gt_new,
};

/* ------------------------------------------------------------------ chunk columns */

/* Open-addressing map from a 64-bit key to its index in first-seen order. */
typedef struct {
    uint64_t *keys;
    Py_ssize_t *slots;  /* index + 1 into keys (0: empty) */
    Py_ssize_t mask, used;
} KeyIndex;

static int
keyindex_init(KeyIndex *ki, Py_ssize_t n)
{
    Py_ssize_t cap = 16;
    while (cap < 2 * n) {
        cap <<= 1;
    }
    ki->keys = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    ki->slots = PyMem_Calloc((size_t)cap, sizeof(Py_ssize_t));
    ki->mask = cap - 1;
    ki->used = 0;
    if (ki->keys == NULL || ki->slots == NULL) {
        PyMem_Free(ki->keys);
        PyMem_Free(ki->slots);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
keyindex_free(KeyIndex *ki)
{
    PyMem_Free(ki->keys);
    PyMem_Free(ki->slots);
}

/* The first-seen index of ``key``, added if new. */
static Py_ssize_t
keyindex_add(KeyIndex *ki, uint64_t key)
{
    /* all 64 bits mixed: the keys differ in their frame (high half) as much as in their line */
    Py_ssize_t i = (Py_ssize_t)(fp_mix(key) & (uint64_t)ki->mask);
    while (ki->slots[i]) {
        if (ki->keys[ki->slots[i] - 1] == key) {
            return ki->slots[i] - 1;
        }
        i = (i + 1) & ki->mask;
    }
    ki->keys[ki->used] = key;
    ki->slots[i] = ++ki->used;
    return ki->used - 1;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* An unsigned field of a step, checked as array("I") / array("B") check it. */
static int
step_field(PyObject *item, unsigned long limit, uint32_t *out)
{
    unsigned long v = PyLong_AsUnsignedLong(item);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (v > limit) {
        PyErr_SetString(PyExc_OverflowError, "step field out of range");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

PyDoc_STRVAR(chunk_columns_doc,
"chunk_columns(steps, exception_kind)\n--\n\n"
"One pass over a chunk's steps (a non-empty list of (kind, code, line, frame, depth, thread)\n"
"tuples of ints), computing what TraceRecorder.flush builds from them:\n\n"
"Returns (kind, code, line, frame, depth, thread, hits, code_ids, code_lines, exceptions,\n"
"min_depth, max_depth): the six columns as the bytes of array('B') and array('I') (native\n"
"order); hits, a flat list [frame, kind << 24 | line, count, ...] in order of first\n"
"occurrence (Counter(zip(frames, kinds, lines)) merged per frame and key); code_ids, the\n"
"sorted distinct codes; code_lines, sorted(c << 24 | ln for c, ln in set(zip(codes, lines)));\n"
"exceptions, the steps of kind exception_kind; the least and greatest depth.\n\n"
"Raises TypeError for a step that is not a 6-tuple of ints, OverflowError for a field out\n"
"of its column's range, ValueError for no steps.");

static PyObject *
chunk_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !(PyList_Check(args[0]) || Py_IS_TYPE(args[0], &StepsType))) {
        PyErr_SetString(PyExc_TypeError, "chunk_columns(steps: list | Steps, exception_kind: int)");
        return NULL;
    }
    PyObject *steps = args[0];
    long exception_kind = PyLong_AsLong(args[1]);
    if (exception_kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const uint32_t *rows = Py_IS_TYPE(steps, &StepsType) ? ((Steps *)steps)->rows : NULL;
    Py_ssize_t n = rows != NULL ? ((Steps *)steps)->size : PyList_GET_SIZE(steps);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "chunk_columns: no steps");
        return NULL;
    }
    PyObject *result = NULL, *hits = NULL, *code_ids = NULL, *code_lines = NULL;
    PyObject *cols[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    uint32_t *fields[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t *counts = NULL;
    uint64_t *sorted = NULL;
    KeyIndex pairs = {NULL, NULL, 0, 0}, code_line = {NULL, NULL, 0, 0}, codes = {NULL, NULL, 0, 0};
    long exceptions = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    if (keyindex_init(&pairs, n) < 0 || keyindex_init(&code_line, n) < 0 || keyindex_init(&codes, n) < 0) {
        goto done;
    }
    counts = PyMem_Calloc((size_t)n, sizeof(Py_ssize_t));
    sorted = PyMem_Malloc(sizeof(uint64_t) * (size_t)n);
    for (int c = 0; c < 6; c++) {
        fields[c] = PyMem_Malloc(sizeof(uint32_t) * (size_t)n);
        if (fields[c] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    if (counts == NULL || sorted == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (rows != NULL) {  /* a Steps: checked when appended */
            for (int c = 0; c < 6; c++) {
                fields[c][i] = rows[STEP_FIELDS * i + c];
            }
        }
        else {
            PyObject *step = PyList_GET_ITEM(steps, i);
            if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) != 6) {
                PyErr_SetString(PyExc_TypeError, "chunk_columns: a step is not a 6-tuple");
                goto done;
            }
            for (int c = 0; c < 6; c++) {
                if (step_field(PyTuple_GET_ITEM(step, c), c == 0 ? 0xFFUL : 0xFFFFFFFFUL, &fields[c][i]) < 0) {
                    goto done;
                }
            }
        }
        uint32_t kind = fields[0][i], cid = fields[1][i], line = fields[2][i], depth = fields[4][i];
        exceptions += (long)kind == exception_kind;
        lo = depth < lo ? depth : lo;
        hi = depth > hi ? depth : hi;
        uint32_t key = (kind << 24) | line;
        counts[keyindex_add(&pairs, (uint64_t)fields[3][i] << 32 | key)]++;
        keyindex_add(&code_line, (uint64_t)cid << 32 | line);
        keyindex_add(&codes, cid);
    }
    cols[0] = PyBytes_FromStringAndSize(NULL, n);
    if (cols[0] == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyBytes_AS_STRING(cols[0])[i] = (char)fields[0][i];
    }
    for (int c = 1; c < 6; c++) {
        cols[c] = PyBytes_FromStringAndSize((const char *)fields[c], n * (Py_ssize_t)sizeof(uint32_t));
        if (cols[c] == NULL) {
            goto done;
        }
    }
    hits = PyList_New(3 * pairs.used);
    if (hits == NULL) {
        goto done;
    }
    for (Py_ssize_t j = 0; j < pairs.used; j++) {
        PyObject *frame = PyLong_FromUnsignedLong((unsigned long)(pairs.keys[j] >> 32));
        PyObject *key = PyLong_FromUnsignedLong((unsigned long)(pairs.keys[j] & 0xFFFFFFFFUL));
        PyObject *count = PyLong_FromSsize_t(counts[j]);
        PyList_SET_ITEM(hits, 3 * j, frame);
        PyList_SET_ITEM(hits, 3 * j + 1, key);
        PyList_SET_ITEM(hits, 3 * j + 2, count);
        if (frame == NULL || key == NULL || count == NULL) {
            goto done;
        }
    }
    memcpy(sorted, codes.keys, sizeof(uint64_t) * (size_t)codes.used);
    qsort(sorted, (size_t)codes.used, sizeof(uint64_t), cmp_u64);
    code_ids = PyList_New(codes.used);
    if (code_ids == NULL) {
        goto done;
    }
    for (Py_ssize_t j = 0; j < codes.used; j++) {
        PyObject *v = PyLong_FromUnsignedLongLong(sorted[j]);
        if (v == NULL) {
            goto done;
        }
        PyList_SET_ITEM(code_ids, j, v);
    }
    /* Distinct (code, line) pairs, then c << 24 | ln (equal values kept, as in Python). */
    for (Py_ssize_t j = 0; j < code_line.used; j++) {
        sorted[j] = (code_line.keys[j] >> 32) << 24 | (code_line.keys[j] & 0xFFFFFFFFULL);
    }
    qsort(sorted, (size_t)code_line.used, sizeof(uint64_t), cmp_u64);
    code_lines = PyList_New(code_line.used);
    if (code_lines == NULL) {
        goto done;
    }
    for (Py_ssize_t j = 0; j < code_line.used; j++) {
        PyObject *v = PyLong_FromUnsignedLongLong(sorted[j]);
        if (v == NULL) {
            goto done;
        }
        PyList_SET_ITEM(code_lines, j, v);
    }
    result = Py_BuildValue("(OOOOOOOOOlkk)", cols[0], cols[1], cols[2], cols[3], cols[4], cols[5],
                           hits, code_ids, code_lines, exceptions, (unsigned long)lo, (unsigned long)hi);
done:
    for (int c = 0; c < 6; c++) {
        Py_XDECREF(cols[c]);
        PyMem_Free(fields[c]);
    }
    Py_XDECREF(hits);
    Py_XDECREF(code_ids);
    Py_XDECREF(code_lines);
    PyMem_Free(counts);
    PyMem_Free(sorted);
    keyindex_free(&pairs);
    keyindex_free(&code_line);
    keyindex_free(&codes);
    return result;
}

/* ------------------------------------------------------------------ change columns */

PyDoc_STRVAR(change_columns_doc,
"change_columns(changes, first)\n--\n\n"
"A chunk's changes as columns, in one C pass (the twin of tracer._change_columns_py, which\n"
"documents the result): changes is a list of (step, serial, name, node) or (step, serial,\n"
"name) tuples; returns (steps - first as array('I') bytes, serials as array('I') bytes,\n"
"names, nodes (None for a deletion), indexes of deletions), ordered by step (stable).\n\n"
"Raises TypeError for a change that is not such a tuple, OverflowError for a step before\n"
"first or a field outside 32 bits.");

static PyObject *
change_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "change_columns(changes: list, first: int)");
        return NULL;
    }
    PyObject *changes = args[0];
    long long first = PyLong_AsLongLong(args[1]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(changes);
    PyObject *result = NULL, *steps_b = NULL, *serials_b = NULL, *names = NULL, *nodes = NULL, *deleted = NULL;
    uint64_t *order = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    uint32_t *serials = PyMem_Malloc(sizeof(uint32_t) * (size_t)(n ? n : 1));
    if (order == NULL || serials == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int sorted = 1;
    uint32_t prev = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = PyList_GET_ITEM(changes, i);
        if (!PyTuple_Check(c) || PyTuple_GET_SIZE(c) < 3 || PyTuple_GET_SIZE(c) > 4) {
            PyErr_SetString(PyExc_TypeError, "change_columns: a change is not a 3- or 4-tuple");
            goto done;
        }
        long long step = PyLong_AsLongLong(PyTuple_GET_ITEM(c, 0));
        if (step == -1 && PyErr_Occurred()) {
            goto done;
        }
        if (step < first || step - first > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_OverflowError, "change_columns: step outside the chunk");
            goto done;
        }
        uint32_t rel = (uint32_t)(step - first), serial;
        if (step_field(PyTuple_GET_ITEM(c, 1), 0xFFFFFFFFUL, &serial) < 0) {
            goto done;
        }
        serials[i] = serial;
        if (rel < prev) {
            sorted = 0;
        }
        prev = rel;
        order[i] = (uint64_t)rel << 32 | (uint64_t)i;  /* (step, index): a stable order */
    }
    if (!sorted) {
        qsort(order, (size_t)n, sizeof(uint64_t), cmp_u64);
    }
    steps_b = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint32_t));
    serials_b = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint32_t));
    names = PyList_New(n);
    nodes = PyList_New(n);
    deleted = PyList_New(0);
    if (steps_b == NULL || serials_b == NULL || names == NULL || nodes == NULL || deleted == NULL) {
        goto done;
    }
    uint32_t *steps_out = (uint32_t *)PyBytes_AS_STRING(steps_b);
    uint32_t *serials_out = (uint32_t *)PyBytes_AS_STRING(serials_b);
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = (Py_ssize_t)(order[j] & 0xFFFFFFFFULL);
        PyObject *c = PyList_GET_ITEM(changes, i);
        steps_out[j] = (uint32_t)(order[j] >> 32);
        serials_out[j] = serials[i];
        PyList_SET_ITEM(names, j, Py_NewRef(PyTuple_GET_ITEM(c, 2)));
        if (PyTuple_GET_SIZE(c) == 4) {
            PyList_SET_ITEM(nodes, j, Py_NewRef(PyTuple_GET_ITEM(c, 3)));
        }
        else {
            PyList_SET_ITEM(nodes, j, Py_NewRef(Py_None));
            PyObject *index = PyLong_FromSsize_t(j);
            if (index == NULL || PyList_Append(deleted, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
        }
    }
    result = PyTuple_Pack(5, steps_b, serials_b, names, nodes, deleted);
done:
    PyMem_Free(order);
    PyMem_Free(serials);
    Py_XDECREF(steps_b);
    Py_XDECREF(serials_b);
    Py_XDECREF(names);
    Py_XDECREF(nodes);
    Py_XDECREF(deleted);
    return result;
}

PyDoc_STRVAR(snapshot_locals_doc,
"snapshot_locals(act, frame, n, changes, display, immutable, shown, module_level, kinds=None, fingerprint=None,\n"
"                node_of=None)\n--\n\n"
"TraceRecorder._snapshot_locals in C: for each (name, value) of frame.f_locals that\n"
"shown(name, value, module_level) keeps (names that start and end with '__' and names that\n"
"start with '.' are dropped here without asking shown unless module_level), act.values[name] =\n"
"value; with ``fingerprint``, fp = fingerprint(value) for a value whose type is not in\n"
"``immutable`` (display_fingerprint's walk over ``kinds`` first); act.nodes[name] = the node\n"
"(node_of(value, fp) for a fingerprint, in C when node_of is a Display, else display(value));\n"
"act.fps[name] = (fp, node) as tracer._keep_fingerprint keeps it (fp bytes); changes.append((n,\n"
"act.serial, name, node)).\n"
"A frame whose locals cannot be read records nothing.");

/* One LocalTracer-shaped context for the helpers above, without a tracer object. */
static PyObject *
snapshot_locals(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 8 || nargs > 11) {
        PyErr_SetString(PyExc_TypeError, "snapshot_locals(act, frame, n, changes, display, immutable, shown, "
                                         "module_level, kinds=None, fingerprint=None, node_of=None)");
        return NULL;
    }
    PyObject *act = args[0], *frame = args[1], *step = args[2], *changes = args[3], *display = args[4];
    PyObject *immutable = args[5], *shown = args[6];
    int module_level = PyObject_IsTrue(args[7]);
    PyObject *kinds = nargs > 8 && args[8] != Py_None ? args[8] : NULL;
    PyObject *fingerprint = nargs > 9 && args[9] != Py_None ? args[9] : NULL;
    PyObject *node_of = nargs > 10 && args[10] != Py_None ? args[10] : NULL;
    if (module_level < 0) {
        return NULL;
    }
    if (!PyList_Check(changes) || (kinds != NULL && !PyDict_CheckExact(kinds))) {
        PyErr_SetString(PyExc_TypeError, "snapshot_locals: changes must be a list, kinds a dict");
        return NULL;
    }
    LocalTracer ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.display = display;
    ctx.node_of = fingerprint != NULL ? node_of : NULL;
    ctx.fingerprint = fingerprint;
    ctx.kinds = fingerprint != NULL ? kinds : NULL;
    ctx.changes = changes;
    PyObject *items = NULL, *loc = NULL, *result = NULL, *value = NULL, *fp = NULL, *node = NULL;
    if ((ctx.values = PyObject_GetAttr(act, s_values)) == NULL || (ctx.nodes = PyObject_GetAttr(act, s_nodes)) == NULL
            || (ctx.fps = PyObject_GetAttr(act, s_fps)) == NULL || (ctx.serial = PyObject_GetAttr(act, s_serial)) == NULL) {
        goto done;
    }
    loc = PyFrame_Check(frame) ? PyFrame_GetLocals((PyFrameObject *)frame) : PyObject_GetAttr(frame, s_f_locals);
    if (loc != NULL) {
        items = PyMapping_Items(loc);  /* list(frame.f_locals.items()) */
    }
    if (items == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            goto done;
        }
        PyErr_Clear();  /* a broken frame proxy must not stop the replay */
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i), *name;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "snapshot_locals: f_locals.items() gave something else than pairs");
            goto done;
        }
        name = PyTuple_GET_ITEM(pair, 0);
        value = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
        int keep;
        if (!module_level && PyUnicode_CheckExact(name)) {  /* _shown, inlined */
            Py_ssize_t len = PyUnicode_GET_LENGTH(name);
            Py_UCS4 first = len > 0 ? PyUnicode_READ_CHAR(name, 0) : 0;
            keep = !(first == '.' || (len >= 2 && first == '_' && PyUnicode_READ_CHAR(name, 1) == '_'
                                      && PyUnicode_READ_CHAR(name, len - 2) == '_'
                                      && PyUnicode_READ_CHAR(name, len - 1) == '_'));
        }
        else {
            PyObject *res = PyObject_CallFunctionObjArgs(shown, name, value, module_level ? Py_True : Py_False, NULL);
            keep = res != NULL ? PyObject_IsTrue(res) : -1;
            Py_XDECREF(res);
            if (keep < 0) {
                goto done;
            }
        }
        if (!keep) {
            Py_CLEAR(value);
            continue;
        }
        if (PyDict_SetItem(ctx.values, name, value) < 0) {
            goto done;
        }
        if (fingerprint != NULL) {
            int fixed = PySequence_Contains(immutable, (PyObject *)Py_TYPE(value));
            if (fixed < 0 || (!fixed && (fp = take_fingerprint(&ctx, value)) == NULL)) {
                goto done;
            }
        }
        node = fp != NULL ? encode(&ctx, value, fp) : call_display(&ctx, value);
        if (node == NULL || PyDict_SetItem(ctx.nodes, name, node) < 0
                || (fp != NULL && fp != Py_None && fp_keep(&ctx, name, fp, node) < 0)) {
            goto done;
        }
        PyObject *change = PyTuple_Pack(4, step, ctx.serial, name, node);
        if (change == NULL) {
            goto done;
        }
        if (!PyObject_GC_IsTracked(node)) {
            PyObject_GC_UnTrack(change);
        }
        int rc = PyList_Append(changes, change);
        Py_DECREF(change);
        if (rc < 0) {
            goto done;
        }
        Py_CLEAR(fp);
        Py_CLEAR(node);
        Py_CLEAR(value);
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(fp);
    Py_XDECREF(node);
    Py_XDECREF(value);
    Py_XDECREF(items);
    Py_XDECREF(loc);
    Py_XDECREF(ctx.values);
    Py_XDECREF(ctx.nodes);
    Py_XDECREF(ctx.fps);
    Py_XDECREF(ctx.serial);
    return result;
}

PyDoc_STRVAR(add_hits_doc,
"add_hits(hits, live)\n--\n\n"
"What TraceRecorder.flush does with chunk_columns' hits, in C: for each (frame, key, count) of\n"
"the flat list ``hits``, live.get(frame).hits[key] += count (from 0) when the activation is live.");

static PyObject *
add_hits(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyDict_Check(args[1]) || PyList_GET_SIZE(args[0]) % 3 != 0) {
        PyErr_SetString(PyExc_TypeError, "add_hits(hits: list of triples, live: dict)");
        return NULL;
    }
    PyObject *hits = args[0], *live = args[1], *last = NULL, *table = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hits); i += 3) {
        PyObject *act = PyDict_GetItemWithError(live, PyList_GET_ITEM(hits, i));
        if (act == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            continue;
        }
        if (act != last) {  /* a chunk's hits come grouped by frame, mostly */
            Py_XDECREF(table);
            if ((table = PyObject_GetAttrString(act, "hits")) == NULL) {
                goto error;
            }
            last = act;
        }
        PyObject *key = PyList_GET_ITEM(hits, i + 1), *count = PyList_GET_ITEM(hits, i + 2);
        PyObject *old = PyObject_GetItem(table, key);
        if (old == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                goto error;
            }
            PyErr_Clear();
            old = PyLong_FromLong(0);
            if (old == NULL) {
                goto error;
            }
        }
        PyObject *sum = PyNumber_Add(old, count);
        Py_DECREF(old);
        if (sum == NULL || PyObject_SetItem(table, key, sum) < 0) {
            Py_XDECREF(sum);
            goto error;
        }
        Py_DECREF(sum);
    }
    Py_XDECREF(table);
    Py_RETURN_NONE;
error:
    Py_XDECREF(table);
    return NULL;
}

static PyMethodDef fastline_methods[] = {
    {"add_hits", (PyCFunction)(void (*)(void))add_hits, METH_FASTCALL, add_hits_doc},
    {"snapshot_locals", (PyCFunction)(void (*)(void))snapshot_locals, METH_FASTCALL, snapshot_locals_doc},
    {"chunk_columns", (PyCFunction)(void (*)(void))chunk_columns, METH_FASTCALL, chunk_columns_doc},
    {"change_columns", (PyCFunction)(void (*)(void))change_columns, METH_FASTCALL, change_columns_doc},
    {"display_fingerprint", (PyCFunction)(void (*)(void))display_fingerprint, METH_FASTCALL,
     display_fingerprint_doc},
    {"generic_dict", generic_dict, METH_O, generic_dict_doc},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------ module */

static struct PyModuleDef fastline_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "replay.replayer._fastline",
    .m_doc = "C version of the trace recorder's per-frame line tracer (optional speed-up).",
    .m_size = -1,
    .m_methods = fastline_methods,
};

static int
intern_all(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_line, "line"}, {&s_return, "return"}, {&s_exception, "exception"},
        {&s_base, "base"}, {&s_flush, "flush"}, {&s_pop, "pop"}, {&s_get, "get"},
        {&s_f_lineno, "f_lineno"}, {&s_f_locals, "f_locals"}, {&s_code, "code"},
        {&s_effects, "effects"}, {&s_cid, "cid"}, {&s_serial, "serial"}, {&s_depth, "depth"},
        {&s_values, "values"}, {&s_nodes, "nodes"}, {&s_index, "index"}, {&s_steps, "steps"},
        {&s_changes, "changes"}, {&s_diff, "diff"}, {&s_stopped, "stopped"},
        {&s_failed, "failed"}, {&s_fps, "fps"}, {&s_placeholder, "?"},
        {&s_unreadable, "<unreadable>"},
        {&t_list, "l"}, {&t_tuple, "t"}, {&t_dict, "d"}, {&t_set, "s"}, {&t_frozenset, "f"},
        {&t_ba, "ba"}, {&t_ref, "@"}, {&t_more, "+"}, {&t_bigint, "i"}, {&t_cut_str, "S"},
        {&t_surrogates, "su"}, {&t_cut_bytes, "B"}, {&t_deep, "..."}, {&t_obj, "obj"}, {&t_dc, "dc"},
        {&t_nt, "nt"}, {&t_type, "type"}, {&r_resource, "an operating-system resource or a type implemented in C"},
        {&s_module_attr, "__module__"}, {&s_frame, "frame"}, {&s_return_name, "<return>"},
        {&s_act_end, "_act_end"}, {&s_stack, "stack"}, {&s_live, "live"},
        {&s_call, "call"}, {&s_in_gc, "in_gc"}, {&s_codes, "codes"}, {&s_threads, "_threads"},
        {&s_thread, "thread"}, {&s_push, "push"}, {&s_in_scope, "in_scope"}, {&s_lib, "lib"},
        {&s_f_trace, "f_trace"}, {&s_f_trace_lines, "f_trace_lines"}, {&s_qualname, "qualname"},
        {&s_module_level, "module_level"}, {&s_kids, "kids"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return -1;
        }
    }
    if (fp_prime == NULL && (fp_prime = PyLong_FromUnsignedLongLong(18446744073709551557ULL)) == NULL) {
        return -1;
    }
    if (kind_line == NULL && (kind_line = PyLong_FromLong(KIND_LINE)) == NULL) {
        return -1;
    }
    if (kind_return == NULL && (kind_return = PyLong_FromLong(KIND_RETURN)) == NULL) {
        return -1;
    }
    return 0;
}

/* DISPLAY_BOUNDS = (max_depth, max_bytes, max_items): the DISPLAY profile the fingerprint
 * walks by (tests compare it with replay.snapshot.encoding.DISPLAY). */
static int
add_display_bounds(PyObject *module)
{
    PyObject *bounds = Py_BuildValue("(iii)", FP_MAX_DEPTH, FP_MAX_BYTES, FP_MAX_ITEMS);
    if (bounds == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "DISPLAY_BOUNDS", bounds);
    Py_DECREF(bounds);
    return rc;
}

PyMODINIT_FUNC
PyInit__fastline(void)
{
    if (intern_all() < 0 || find_python_class_slots() < 0 || find_frame_accessors() < 0
            || PyType_Ready(&LocalTracerType) < 0 || PyType_Ready(&GlobalTracerType) < 0
            || PyType_Ready(&ReturningType) < 0 || PyType_Ready(&StepsType) < 0
            || PyType_Ready(&DisplayType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&fastline_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LocalTracer", (PyObject *)&LocalTracerType) < 0
            || PyModule_AddObjectRef(module, "GlobalTracer", (PyObject *)&GlobalTracerType) < 0
            || PyModule_AddObjectRef(module, "Returning", (PyObject *)&ReturningType) < 0
            || PyModule_AddObjectRef(module, "Steps", (PyObject *)&StepsType) < 0
            || PyModule_AddObjectRef(module, "Display", (PyObject *)&DisplayType) < 0
            || PyModule_AddIntConstant(module, "LINE", KIND_LINE) < 0
            || PyModule_AddIntConstant(module, "RETURN", KIND_RETURN) < 0
            || add_display_bounds(module) < 0
            || PyModule_AddIntConstant(module, "DISPLAY_MAX_STR", DN_MAX_STR) < 0
            || PyModule_AddIntConstant(module, "KIND_OTHER", KIND_OTHER) < 0
            || PyModule_AddIntConstant(module, "KIND_PLAIN", KIND_PLAIN) < 0
            || PyModule_AddIntConstant(module, "KIND_OPAQUE", KIND_OPAQUE) < 0
            || PyModule_AddIntConstant(module, "KIND_NAMEDTUPLE", KIND_NAMEDTUPLE) < 0
            || PyModule_AddIntConstant(module, "KIND_CLASS", KIND_CLASS) < 0
            || PyModule_AddIntConstant(module, "KIND_SLOTTED", KIND_SLOTTED) < 0
            || PyModule_AddIntConstant(module, "KIND_DATACLASS", KIND_DATACLASS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
