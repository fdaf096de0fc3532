/* replay.replayer._fastline: Steps: the recorder's step buffer as rows of 32-bit numbers.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

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

/* The range [*start, *stop) that ``del buffer[key]`` removes from a buffer of ``size`` rows
 * (Steps and Changes): an index or a contiguous slice; ``what`` names the rows in errors
 * ("step", "change"). 1: a range to remove, 0: nothing to do, -1: an exception is set. */
static int
fl_deleted_range(PyObject *key, PyObject *value, Py_ssize_t size, const char *what, Py_ssize_t *start,
                 Py_ssize_t *stop)
{
    Py_ssize_t step = 1;
    if (value != NULL) {
        PyErr_Format(PyExc_TypeError, "%ss are appended, not assigned", what);
        return -1;
    }
    if (PyIndex_Check(key)) {
        *start = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (*start == -1 && PyErr_Occurred()) {
            return -1;
        }
        *start = *start < 0 ? *start + size : *start;
        if (*start < 0 || *start >= size) {
            PyErr_Format(PyExc_IndexError, "%s index out of range", what);
            return -1;
        }
        *stop = *start + 1;
        return 1;
    }
    if (PySlice_Check(key)) {
        if (PySlice_Unpack(key, start, stop, &step) < 0) {
            return -1;
        }
        if (step != 1) {
            PyErr_Format(PyExc_TypeError, "only contiguous slices of %ss can be deleted", what);
            return -1;
        }
        return PySlice_AdjustIndices(size, start, stop, step) == 0 ? 0 : 1;
    }
    PyErr_Format(PyExc_TypeError, "%s indices must be integers or slices, not %.100s", what, Py_TYPE(key)->tp_name);
    return -1;
}

/* del steps[i] and del steps[a:b] (contiguous); no assignment. */
static int
steps_ass_subscript(PyObject *op, PyObject *key, PyObject *value)
{
    Steps *self = (Steps *)op;
    Py_ssize_t start, stop;
    int found = fl_deleted_range(key, value, self->size, "step", &start, &stop);
    if (found <= 0) {
        return found;
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
