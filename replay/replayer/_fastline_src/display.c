/* replay.replayer._fastline: Display, the display codec in C (leaves, containers, known objects).
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

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

/* type_path(tp): "module:qualname" (new reference), or NULL (see dn_type_names). Objects of
 * a few types are encoded over and over (every re-encoded local holding one), so the last
 * path made for a type is kept in a small direct-mapped table. An entry holds the module and
 * qualname objects it was made from (or, for a static type, its tp_name) and serves only
 * while the type still has those very objects: a later __qualname__ or __module__
 * assignment, or another type at a freed type's address, makes a new path. */
#define DN_PATHS 64

static struct {
    PyTypeObject *tp;
    const char *name;         /* tp_name of a static type */
    PyObject *module, *qual;  /* strong references: their identity is the key */
    PyObject *path;
} dn_paths[DN_PATHS];

static PyObject *
dn_type_path(FpWalk *w, PyTypeObject *tp)
{
    PyObject *module, *qualname;
    size_t slot = ((uintptr_t)tp >> 4) % DN_PATHS;
    int heap = (tp->tp_flags & Py_TPFLAGS_HEAPTYPE) != 0;
    if (dn_paths[slot].tp == tp && !heap && dn_paths[slot].name == tp->tp_name
            && Py_IS_TYPE(tp, &PyType_Type)) {  /* a metaclass goes through dn_type_names' check */
        return Py_NewRef(dn_paths[slot].path);
    }
    if (dn_type_names(w, tp, &module, &qualname) < 0) {
        return NULL;
    }
    if (dn_paths[slot].tp == tp && heap && dn_paths[slot].module == module && dn_paths[slot].qual == qualname) {
        Py_DECREF(module);
        Py_DECREF(qualname);
        return Py_NewRef(dn_paths[slot].path);
    }
    PyObject *path = PyUnicode_FromFormat("%U:%U", module, qualname);
    if (path == NULL) {
        Py_DECREF(module);
        Py_DECREF(qualname);
        return NULL;
    }
    PyObject *old[3] = {dn_paths[slot].module, dn_paths[slot].qual, dn_paths[slot].path};
    dn_paths[slot].tp = tp;
    dn_paths[slot].name = heap ? NULL : tp->tp_name;
    dn_paths[slot].module = module;  /* the references dn_type_names gave */
    dn_paths[slot].qual = qualname;
    dn_paths[slot].path = Py_NewRef(path);
    for (int i = 0; i < 3; i++) {  /* last: a decref may run code that reaches this table */
        Py_XDECREF(old[i]);
    }
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
        PyObject *name, *value = fp_dataclass_field(v, PyTuple_GET_ITEM(spec, i), &fields, &name, &rc);
        if (value == NULL) {
            break;
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
        if (!kind_fits(k, kind, v)) {
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
    fp_walk_start(&w, self->kinds, 0);
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
