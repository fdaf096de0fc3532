/* replay.replayer._fastline: Changes: the recorder's buffer of changed locals.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

/* ------------------------------------------------------------------ change buffer */

/* ``Changes()``: TraceRecorder.changes when the extension is built: a list of (step, serial,
 * name, node) and (step, serial, name) tuples (a deletion) to Python code (append, len,
 * indexing and slicing, ``del changes[i:j]``, clear, iteration, ``==`` with a list), stored
 * as rows (the step as a 64-bit number, the serial as a 32-bit one, the name and the node
 * held): no tuple per change for the tracer to make and the flush to free. append raises
 * TypeError for another shape and what array("q") and array("I") raise for the step and the
 * serial (OverflowError). change_columns reads it directly. */

typedef struct {
    long long step;
    uint32_t serial;
    PyObject *name;
    PyObject *node;  /* NULL for a deletion */
} ChangeRow;

typedef struct {
    PyObject_HEAD
    ChangeRow *rows;
    Py_ssize_t size, cap;
} Changes;

static PyTypeObject ChangesType;

/* Append one change (``node`` NULL for a deletion); the serial given as an int object. 0 or -1. */
static int
changes_push(Changes *self, long long step, PyObject *serial, PyObject *name, PyObject *node)
{
    unsigned long number = PyLong_AsUnsignedLong(serial);
    if (number == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    if (number > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_OverflowError, "Changes: serial out of range");
        return -1;
    }
    if (self->size == self->cap) {
        Py_ssize_t cap = self->cap < 1024 ? 1024 : self->cap * 2;
        ChangeRow *rows = PyMem_Realloc(self->rows, sizeof(ChangeRow) * (size_t)cap);
        if (rows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->rows = rows;
        self->cap = cap;
    }
    ChangeRow *row = &self->rows[self->size++];
    row->step = step;
    row->serial = (uint32_t)number;
    row->name = Py_NewRef(name);
    row->node = Py_XNewRef(node);
    return 0;
}

/* 1 for a list or a Changes (what rec.changes may be). */
static int
is_changes(PyObject *changes)
{
    return PyList_CheckExact(changes) || Py_IS_TYPE(changes, &ChangesType);
}

/* changes.append((step, serial, name, node)), or (step, serial, name) for a deletion (node
 * NULL), for a list (a tuple untracked by the collector when the node is) or a Changes (no
 * tuple). ``step`` is the step number as an int object. 0 or -1. */
static int
append_change(PyObject *changes, PyObject *step, PyObject *serial, PyObject *name, PyObject *node)
{
    if (Py_IS_TYPE(changes, &ChangesType)) {
        long long number = PyLong_AsLongLong(step);
        if (number == -1 && PyErr_Occurred()) {
            return -1;
        }
        return changes_push((Changes *)changes, number, serial, name, node);
    }
    PyObject *change = node ? PyTuple_Pack(4, step, serial, name, node) : PyTuple_Pack(3, step, serial, name);
    if (change == NULL) {
        return -1;
    }
    if (node == NULL || !PyObject_GC_IsTracked(node)) {  /* no cycle can pass through it */
        PyObject_GC_UnTrack(change);
    }
    int rc = PyList_Append(changes, change);
    Py_DECREF(change);
    return rc;
}

static PyObject *
changes_row(Changes *self, Py_ssize_t i)
{
    const ChangeRow *row = &self->rows[i];
    PyObject *step = PyLong_FromLongLong(row->step);
    PyObject *serial = PyLong_FromUnsignedLong(row->serial);
    PyObject *tuple = NULL;
    if (step != NULL && serial != NULL) {
        tuple = row->node != NULL ? PyTuple_Pack(4, step, serial, row->name, row->node)
                                  : PyTuple_Pack(3, step, serial, row->name);
    }
    Py_XDECREF(step);
    Py_XDECREF(serial);
    return tuple;
}

static Py_ssize_t
changes_length(PyObject *op)
{
    return ((Changes *)op)->size;
}

static PyObject *
changes_item(PyObject *op, Py_ssize_t i)
{
    Changes *self = (Changes *)op;
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "change index out of range");
        return NULL;
    }
    return changes_row(self, i);
}

/* The changes as a list of tuples (new reference). */
static PyObject *
changes_list(Changes *self, Py_ssize_t start, Py_ssize_t step, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    for (Py_ssize_t k = 0, i = start; list != NULL && k < n; k++, i += step) {
        PyObject *row = changes_row(self, i);
        if (row == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, k, row);
    }
    return list;
}

static PyObject *
changes_subscript(PyObject *op, PyObject *key)
{
    Changes *self = (Changes *)op;
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) {
            return NULL;
        }
        return changes_item(op, i < 0 ? i + self->size : i);
    }
    if (!PySlice_Check(key)) {
        PyErr_Format(PyExc_TypeError, "change indices must be integers or slices, not %.100s", Py_TYPE(key)->tp_name);
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) {
        return NULL;
    }
    Py_ssize_t n = PySlice_AdjustIndices(self->size, &start, &stop, step);
    return changes_list(self, start, step, n);
}

/* Drop rows [start, stop). Their references go once the buffer is whole again (freeing a
 * name or a node runs no code of the tracer's, but the buffer never shows a half-done state). */
static void
changes_drop(Changes *self, Py_ssize_t start, Py_ssize_t stop)
{
    Py_ssize_t n = stop - start;
    if (n <= 0) {
        return;
    }
    ChangeRow *gone;
    if (stop == self->size) {  /* the tail (clear, a cut): the rows stay where they are */
        self->size = start;
        gone = self->rows + start;
    }
    else {
        gone = PyMem_Malloc(sizeof(ChangeRow) * (size_t)n);
        if (gone == NULL) {  /* no room to set them aside: release them first */
            for (Py_ssize_t i = start; i < stop; i++) {
                Py_CLEAR(self->rows[i].name);
                Py_CLEAR(self->rows[i].node);
            }
        }
        else {
            memcpy(gone, self->rows + start, sizeof(ChangeRow) * (size_t)n);
        }
        memmove(self->rows + start, self->rows + stop, sizeof(ChangeRow) * (size_t)(self->size - stop));
        self->size -= n;
        if (gone == NULL) {
            return;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(gone[i].name);
        Py_XDECREF(gone[i].node);
    }
    if (gone != self->rows + start) {
        PyMem_Free(gone);
    }
}

/* del changes[i] and del changes[a:b] (contiguous); no assignment. */
static int
changes_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    Changes *self = (Changes *)op;
    Py_ssize_t start, stop;
    int found = fl_deleted_range(key, value, self->size, "change", &start, &stop);
    if (found <= 0) {
        return found;
    }
    changes_drop(self, start, stop);
    return 0;
}

static PyObject *
changes_append(PyObject *op, PyObject *change)
{
    if (!PyTuple_Check(change) || PyTuple_GET_SIZE(change) < 3 || PyTuple_GET_SIZE(change) > 4) {
        PyErr_SetString(PyExc_TypeError, "Changes.append: a change is a 3- or 4-tuple");
        return NULL;
    }
    long long step = PyLong_AsLongLong(PyTuple_GET_ITEM(change, 0));
    if (step == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *node = PyTuple_GET_SIZE(change) == 4 ? PyTuple_GET_ITEM(change, 3) : NULL;
    if (changes_push((Changes *)op, step, PyTuple_GET_ITEM(change, 1), PyTuple_GET_ITEM(change, 2), node) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
changes_clear(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    changes_drop((Changes *)op, 0, ((Changes *)op)->size);
    Py_RETURN_NONE;
}

/* == and != with a list (or another Changes) compare the changes as tuples. */
static PyObject *
changes_richcompare(PyObject *op, PyObject *other, int cmp)
{
    if ((cmp != Py_EQ && cmp != Py_NE) || !(PyList_Check(other) || Py_IS_TYPE(other, &ChangesType))) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *mine = changes_list((Changes *)op, 0, 1, ((Changes *)op)->size);
    PyObject *theirs = Py_IS_TYPE(other, &ChangesType)
                       ? changes_list((Changes *)other, 0, 1, ((Changes *)other)->size) : Py_NewRef(other);
    PyObject *result = mine != NULL && theirs != NULL ? PyObject_RichCompare(mine, theirs, cmp) : NULL;
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    return result;
}

static PyObject *
changes_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Changes", kwlist)) {
        return NULL;
    }
    return type->tp_alloc(type, 0);
}

static int
changes_traverse(Changes *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Py_VISIT(self->rows[i].name);
        Py_VISIT(self->rows[i].node);
    }
    return 0;
}

static int
changes_tp_clear(Changes *self)
{
    changes_drop(self, 0, self->size);
    return 0;
}

static void
changes_dealloc(Changes *self)
{
    PyObject_GC_UnTrack(self);
    changes_drop(self, 0, self->size);
    PyMem_Free(self->rows);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef changes_methods[] = {
    {"append", changes_append, METH_O, "Append one (step, serial, name[, node]) change."},
    {"clear", changes_clear, METH_NOARGS, "Remove every change."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods changes_as_sequence = {
    .sq_length = changes_length,
    .sq_item = changes_item,
};

static PyMappingMethods changes_as_mapping = {
    .mp_length = changes_length,
    .mp_subscript = changes_subscript,
    .mp_ass_subscript = changes_ass_subscript,
};

static PyTypeObject ChangesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.Changes",
    .tp_basicsize = sizeof(Changes),
    .tp_dealloc = (destructor)changes_dealloc,
    .tp_as_sequence = &changes_as_sequence,
    .tp_as_mapping = &changes_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)changes_traverse,
    .tp_clear = (inquiry)changes_tp_clear,
    .tp_doc = "Changes()\n--\n\nThe recorder's changed locals: (step, serial, name[, node]) rows.",
    .tp_richcompare = changes_richcompare,
    .tp_methods = changes_methods,
    .tp_new = changes_new,
};
