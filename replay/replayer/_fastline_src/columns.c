/* replay.replayer._fastline: chunk_columns and change_columns: a chunk's columns at flush.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

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
"documents the result): changes is a Changes or a list of (step, serial, name, node) or\n"
"(step, serial, name) tuples; returns (steps - first as array('I') bytes, serials as array('I') bytes,\n"
"names, nodes (None for a deletion), indexes of deletions), ordered by step (stable).\n\n"
"Raises TypeError for a change that is not such a tuple, OverflowError for a step before\n"
"first or a field outside 32 bits.");

static PyObject *
change_columns(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !(PyList_Check(args[0]) || Py_IS_TYPE(args[0], &ChangesType))) {
        PyErr_SetString(PyExc_TypeError, "change_columns(changes: list | Changes, first: int)");
        return NULL;
    }
    PyObject *changes = args[0];
    long long first = PyLong_AsLongLong(args[1]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Changes *rows = Py_IS_TYPE(changes, &ChangesType) ? (Changes *)changes : NULL;
    Py_ssize_t n = rows != NULL ? rows->size : PyList_GET_SIZE(changes);
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
        long long step;
        uint32_t serial;
        if (rows != NULL) {
            step = rows->rows[i].step;
            serial = rows->rows[i].serial;
        }
        else {
            PyObject *c = PyList_GET_ITEM(changes, i);
            if (!PyTuple_Check(c) || PyTuple_GET_SIZE(c) < 3 || PyTuple_GET_SIZE(c) > 4) {
                PyErr_SetString(PyExc_TypeError, "change_columns: a change is not a 3- or 4-tuple");
                goto done;
            }
            step = PyLong_AsLongLong(PyTuple_GET_ITEM(c, 0));
            if (step == -1 && PyErr_Occurred()) {
                goto done;
            }
            if (step_field(PyTuple_GET_ITEM(c, 1), 0xFFFFFFFFUL, &serial) < 0) {
                goto done;
            }
        }
        if (step < first || step - first > 0xFFFFFFFFLL) {
            PyErr_SetString(PyExc_OverflowError, "change_columns: step outside the chunk");
            goto done;
        }
        uint32_t rel = (uint32_t)(step - first);
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
        PyObject *name, *node;
        if (rows != NULL) {
            name = rows->rows[i].name;
            node = rows->rows[i].node;
        }
        else {
            PyObject *c = PyList_GET_ITEM(changes, i);
            name = PyTuple_GET_ITEM(c, 2);
            node = PyTuple_GET_SIZE(c) == 4 ? PyTuple_GET_ITEM(c, 3) : NULL;
        }
        steps_out[j] = (uint32_t)(order[j] >> 32);
        serials_out[j] = serials[i];
        PyList_SET_ITEM(names, j, Py_NewRef(name));
        if (node != NULL) {
            PyList_SET_ITEM(nodes, j, Py_NewRef(node));
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
