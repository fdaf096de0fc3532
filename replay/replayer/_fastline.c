/* The per-frame local trace function of the settrace backend, in C.
 *
 * ``LocalTracer(rec, ts, act, display, immutable, chunk_steps)`` is a callable set as a frame's
 * ``f_trace``. It does exactly what the ``local`` closure of
 * ``replay.replayer.tracer.SettraceTracer._local`` does, so traces are byte-identical with and
 * without it (tests/unit/test_fastline.py compares them):
 *
 *   line:      n = len(rec.steps); effect = effects.get(act.line); act.line = frame.f_lineno;
 *              if effect: simple effect -> compare/re-encode the named locals inline, appending
 *              (rec.base + n, serial, name, node) to rec.changes ((rec.base + n, serial, name)
 *              for a local the line deleted); otherwise rec.diff(act, frame,
 *              effect, rec.base + n); then append (LINE, cid, line, serial, depth, thread) to
 *              rec.steps and call rec.flush() when n >= chunk_steps - 1; return self, or
 *              None when that flush spent the step budget (rec.stopped).
 *   return:    rec.pop(ts, act, RETURN, frame.f_lineno, arg); return None.
 *   exception: rec.exception(ts, act, frame.f_lineno, arg[1]); return self.
 *   other:     return self.
 *
 * Everything the closure captures when it is made is captured here at construction too (the
 * recorder's step and change lists, ``rec.diff``, the activation's dicts and numbers);
 * ``act.line`` is read and written at every line event, as the closure does (directly in its
 * ``__slots__`` slot when Activation is a plain slots class).
 *
 * Errors. Exceptions raised by the recorder's own methods (rec.diff, rec.flush, rec.pop,
 * rec.exception) propagate exactly as they do from the closure. Any other error in the C code
 * (reading f_locals, a failing comparison, memory) never reaches the traced program: for the
 * locals of a line it is cleared and the step falls back to ``rec.diff`` (which is idempotent
 * with what was already recorded: names already updated compare equal); if the step itself
 * cannot be recorded, the error is cleared and line events are switched off for that frame
 * (``frame.f_trace_lines = False``), so its return event still pops the activation.
 *
 * API: public CPython C API only (3.11+: PyFrame_GetLineNumber, PyFrame_GetLocals, vectorcall).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <structmember.h>

/* Step kinds: format constants replay.replayer.tracer.LINE and RETURN (checked by the tests). */
#define KIND_LINE 1
#define KIND_RETURN 2

static PyObject *s_line, *s_return, *s_exception, *s_base, *s_flush, *s_pop, *s_get,
    *s_f_lineno, *s_f_locals, *s_f_trace_lines, *s_code, *s_effects, *s_cid, *s_serial,
    *s_depth, *s_values, *s_nodes, *s_index, *s_steps, *s_changes, *s_diff, *s_stopped;
static PyObject *kind_line, *kind_return;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *rec, *ts, *act;       /* recorder, its _Thread, the Activation */
    PyObject *steps, *changes;      /* rec.steps, rec.changes (lists) */
    PyObject *diff;                 /* rec.diff (bound method) */
    PyObject *effects;              /* act.code.effects: {line: (check, reencode, full, simple)} */
    PyObject *values, *nodes;       /* act.values, act.nodes (dicts) */
    PyObject *display, *immutable;  /* tracer.display, tracer._IMMUTABLE */
    PyObject *cid, *serial, *depth, *thread;  /* the step tuple's fixed fields */
    PyObject *line_descr;           /* type(act).line when its slot is used directly, else NULL */
    PyMemberDef *line_member;       /* its member definition (kept alive by line_descr) */
    Py_ssize_t chunk_last;          /* CHUNK_STEPS - 1 */
} LocalTracer;

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

/* loc.get(name, missing) as a new reference; NULL with an exception set on error. */
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
    /* 3.13's FrameLocalsProxy, a class body's namespace: the same call as the closure. */
    return PyObject_CallMethodObjArgs(loc, s_get, name, missing, NULL);
}

/* The node of a rebound local: ints in int64/uint64 range and floats as they are, else
 * display(value). New reference, NULL on error. */
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
    return PyObject_CallOneArg(self->display, value);
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

/* Append (rec.base + n, serial, name, node) to rec.changes, or (rec.base + n, serial, name)
 * for a deletion (node NULL). 0 or -1. */
static int
add_change(LocalTracer *self, Py_ssize_t n, PyObject *name, PyObject *node)
{
    PyObject *base = PyObject_GetAttr(self->rec, s_base);
    if (base == NULL) {
        return -1;
    }
    PyObject *offset = PyLong_FromSsize_t(n);
    if (offset == NULL) {
        Py_DECREF(base);
        return -1;
    }
    PyObject *step = PyNumber_Add(base, offset);
    Py_DECREF(base);
    Py_DECREF(offset);
    if (step == NULL) {
        return -1;
    }
    PyObject *change = node ? PyTuple_Pack(4, step, self->serial, name, node)
                            : PyTuple_Pack(3, step, self->serial, name);
    Py_DECREF(step);
    if (change == NULL) {
        return -1;
    }
    int rc = PyList_Append(self->changes, change);
    Py_DECREF(change);
    return rc;
}

/* The simple effect of the previous line, inlined (effect[3] true). 0 or -1 (internal error). */
static int
simple_effect(LocalTracer *self, PyObject *frame, PyObject *check, PyObject *reencode,
              Py_ssize_t n)
{
    PyObject *loc = PyFrame_Check(frame) ? PyFrame_GetLocals((PyFrameObject *)frame)
                                         : PyObject_GetAttr(frame, s_f_locals);
    if (loc == NULL) {
        return -1;
    }
    PyObject *values = self->values, *nodes = self->nodes;
    PyObject *value = NULL, *node = NULL;
    /* Same object, maybe mutated in place: re-encode and compare. */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reencode); i++) {
        PyObject *name = PyTuple_GET_ITEM(reencode, i);
        value = mapping_get(loc, name, values);  /* ``values`` doubles as "missing" */
        if (value == NULL) {
            goto error;
        }
        int immutable = PySequence_Contains(self->immutable, (PyObject *)Py_TYPE(value));
        if (immutable < 0) {
            goto error;
        }
        PyObject *seen = PyDict_GetItemWithError(values, name);
        if (seen == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            seen = values;
        }
        /* Unbound (``values`` is the sentinel), immutable, or rebound: nothing to re-encode. */
        if (value == values || immutable || value != seen) {
            Py_CLEAR(value);
            continue;
        }
        node = PyObject_CallOneArg(self->display, value);
        if (node == NULL) {
            goto error;
        }
        PyObject *old = PyDict_GetItemWithError(nodes, name);
        if (old == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            old = Py_None;
        }
        Py_INCREF(old);
        PyObject *ne = PyObject_RichCompare(node, old, Py_NE);
        Py_DECREF(old);
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
        if (value == values) {  /* gone from the frame: a deletion (name, without a node) */
            if (PyDict_DelItem(values, name) < 0 || dict_discard(nodes, name) < 0
                    || add_change(self, n, name, NULL) < 0) {
                goto error;
            }
            Py_CLEAR(value);
            continue;
        }
        if (PyDict_SetItem(values, name, value) < 0) {
            goto error;
        }
        node = rebound_node(self, value);
        if (node == NULL || PyDict_SetItem(nodes, name, node) < 0 || add_change(self, n, name, node) < 0) {
            goto error;
        }
        Py_CLEAR(node);
        Py_CLEAR(value);
    }
    Py_DECREF(loc);
    return 0;
error:
    Py_XDECREF(node);
    Py_XDECREF(value);
    Py_DECREF(loc);
    return -1;
}

/* Switch line events off for this frame after an error we could not record around. */
static void
stop_lines(PyObject *frame)
{
    PyErr_Clear();
    if (PyObject_SetAttr(frame, s_f_trace_lines, Py_False) < 0) {
        PyErr_Clear();
    }
}

/* act.line (new reference) and act.line = value: through the slot's member definition when
 * Activation keeps it in a __slots__ slot with plain attribute access (what attribute access
 * itself does, minus the lookups), else by attribute. */
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

/* Use the slot directly only if type(act).line is a writable object member descriptor of a
 * class on act's MRO and the class does not customise attribute access. 0, or -1 on error. */
static int
find_line_member(LocalTracer *self)
{
    self->line_member = NULL;
    PyTypeObject *type = Py_TYPE(self->act);
    if (type->tp_getattro != PyObject_GenericGetAttr || type->tp_setattro != PyObject_GenericSetAttr) {
        return 0;
    }
    PyObject *descr = PyObject_GetAttr((PyObject *)type, s_line);
    if (descr == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY)
                && PyType_IsSubtype(type, ((PyMemberDescrObject *)descr)->d_common.d_type)) {
            self->line_member = member;
            self->line_descr = Py_NewRef(descr);
        }
    }
    Py_DECREF(descr);
    return 0;
}

/* ------------------------------------------------------------------ events */

static PyObject *
on_line(LocalTracer *self, PyObject *frame)
{
    Py_ssize_t n = PyList_GET_SIZE(self->steps);
    PyObject *previous = act_line(self);
    if (previous == NULL) {
        stop_lines(frame);
        return Py_NewRef(self);
    }
    PyObject *effect = PyDict_GetItemWithError(self->effects, previous);
    Py_DECREF(previous);
    if (effect == NULL && PyErr_Occurred()) {
        PyErr_Clear();  /* an unhashable line: nothing is known of it, as when absent */
    }
    Py_XINCREF(effect);
    PyObject *line = frame_lineno(frame);
    if (line == NULL || set_act_line(self, line) < 0) {
        Py_XDECREF(line);
        Py_XDECREF(effect);
        stop_lines(frame);
        return Py_NewRef(self);
    }
    if (effect != NULL) {
        int done = 0;
        if (PyTuple_CheckExact(effect) && PyTuple_GET_SIZE(effect) >= 4
                && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 0))
                && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 1))) {
            int simple = PyObject_IsTrue(PyTuple_GET_ITEM(effect, 3));
            if (simple > 0) {
                if (simple_effect(self, frame, PyTuple_GET_ITEM(effect, 0),
                                  PyTuple_GET_ITEM(effect, 1), n) == 0) {
                    done = 1;
                }
                else {
                    PyErr_Clear();  /* finish the step with the recorder's own logic */
                }
            }
            else if (simple < 0) {
                PyErr_Clear();
            }
        }
        if (!done) {
            PyObject *base = PyObject_GetAttr(self->rec, s_base);
            PyObject *offset = base ? PyLong_FromSsize_t(n) : NULL;
            PyObject *step = offset ? PyNumber_Add(base, offset) : NULL;
            Py_XDECREF(base);
            Py_XDECREF(offset);
            if (step == NULL) {
                Py_DECREF(line);
                Py_DECREF(effect);
                stop_lines(frame);
                return Py_NewRef(self);
            }
            PyObject *args[4] = {self->act, frame, effect, step};
            PyObject *res = PyObject_Vectorcall(self->diff, args, 4, NULL);
            Py_DECREF(step);
            if (res == NULL) {  /* the recorder's error: propagates, as from the closure */
                Py_DECREF(line);
                Py_DECREF(effect);
                return NULL;
            }
            Py_DECREF(res);
        }
        Py_DECREF(effect);
    }
    PyObject *record = PyTuple_New(6);
    if (record == NULL) {
        Py_DECREF(line);
        stop_lines(frame);
        return Py_NewRef(self);
    }
    PyTuple_SET_ITEM(record, 0, Py_NewRef(kind_line));
    PyTuple_SET_ITEM(record, 1, Py_NewRef(self->cid));
    PyTuple_SET_ITEM(record, 2, line);  /* steals */
    PyTuple_SET_ITEM(record, 3, Py_NewRef(self->serial));
    PyTuple_SET_ITEM(record, 4, Py_NewRef(self->depth));
    PyTuple_SET_ITEM(record, 5, Py_NewRef(self->thread));
    int rc = PyList_Append(self->steps, record);
    Py_DECREF(record);
    if (rc < 0) {
        stop_lines(frame);
        return Py_NewRef(self);
    }
    if (n >= self->chunk_last) {
        PyObject *res = PyObject_CallMethodNoArgs(self->rec, s_flush);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
        PyObject *stopped = PyObject_GetAttr(self->rec, s_stopped);
        int is_stopped = stopped ? PyObject_IsTrue(stopped) : -1;
        Py_XDECREF(stopped);
        if (is_stopped < 0) {
            return NULL;  /* as the closure's ``if rec.stopped`` */
        }
        if (is_stopped) {  /* the step budget is spent: stop tracing this frame too */
            Py_RETURN_NONE;
        }
    }
    return Py_NewRef(self);
}

static PyObject *
on_return(LocalTracer *self, PyObject *frame, PyObject *arg)
{
    PyObject *line = frame_lineno(frame);
    if (line == NULL) {
        PyErr_Clear();
        line = Py_NewRef(Py_None);
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
    PyObject *exc = line ? PySequence_GetItem(arg, 1) : NULL;
    if (exc == NULL) {  /* not the (type, value, traceback) of the trampoline: not recorded */
        Py_XDECREF(line);
        PyErr_Clear();
        return Py_NewRef(self);
    }
    PyObject *args[5] = {self->rec, self->ts, self->act, line, exc};
    PyObject *res = PyObject_VectorcallMethod(s_exception, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(exc);
    if (res == NULL) {
        Py_DECREF(line);
        return NULL;
    }
    Py_DECREF(res);
    Py_DECREF(line);
    return Py_NewRef(self);
}

static int
event_is(PyObject *event, PyObject *interned)
{
    if (event == interned) {
        return 1;
    }
    if (!PyUnicode_Check(event)) {
        return 0;
    }
    return PyUnicode_Compare(event, interned) == 0;
}

static PyObject *
lt_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    LocalTracer *self = (LocalTracer *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "LocalTracer takes (frame, event, arg)");
        return NULL;
    }
    PyObject *frame = args[0], *event = args[1], *arg = args[2];
    if (event_is(event, s_line)) {
        return on_line(self, frame);
    }
    if (event_is(event, s_return)) {
        return on_return(self, frame, arg);
    }
    if (event_is(event, s_exception)) {
        return on_exception(self, frame, arg);
    }
    return Py_NewRef(self);
}

/* The entry point. The trampoline calls f_trace without holding a reference to it, and the
 * recorder may drop it during the call (stop_all sets every f_trace to None from a flush), so
 * the object keeps itself alive until it returns. A cleared object (tp_clear by the
 * collector) records nothing. */
static PyObject *
lt_vectorcall_checked(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (((LocalTracer *)op)->rec == NULL) {
        return Py_NewRef(Py_None);
    }
    Py_INCREF(op);
    PyObject *result = lt_vectorcall(op, args, nargsf, kwnames);
    Py_DECREF(op);
    return result;
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

static PyObject *
lt_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rec", "ts", "act", "display", "immutable", "chunk_steps", NULL};
    PyObject *rec, *ts, *act, *display, *immutable;
    Py_ssize_t chunk_steps;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOn:LocalTracer", kwlist, &rec, &ts, &act,
                                     &display, &immutable, &chunk_steps)) {
        return NULL;
    }
    if (chunk_steps < 1) {
        PyErr_SetString(PyExc_ValueError, "LocalTracer: chunk_steps must be positive");
        return NULL;
    }
    LocalTracer *self = (LocalTracer *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = lt_vectorcall_checked;
    self->rec = Py_NewRef(rec);
    self->ts = Py_NewRef(ts);
    self->act = Py_NewRef(act);
    self->display = Py_NewRef(display);
    self->immutable = Py_NewRef(immutable);
    self->chunk_last = chunk_steps - 1;
    PyObject *code = NULL;
    if ((self->steps = get_attr_checked(rec, s_steps, &PyList_Type, "rec.steps")) == NULL
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
            || find_line_member(self) < 0) {
        Py_XDECREF(code);
        Py_DECREF(self);
        return NULL;
    }
    Py_DECREF(code);
    return (PyObject *)self;
}

static int
lt_traverse(LocalTracer *self, visitproc visit, void *arg)
{
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
    Py_VISIT(self->cid);
    Py_VISIT(self->serial);
    Py_VISIT(self->depth);
    Py_VISIT(self->thread);
    Py_VISIT(self->line_descr);
    return 0;
}

static int
lt_clear(LocalTracer *self)
{
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
    Py_CLEAR(self->cid);
    Py_CLEAR(self->serial);
    Py_CLEAR(self->depth);
    Py_CLEAR(self->thread);
    self->line_member = NULL;
    Py_CLEAR(self->line_descr);
    return 0;
}

static void
lt_dealloc(LocalTracer *self)
{
    PyObject_GC_UnTrack(self);
    lt_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
lt_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(self, args, kwargs);
}

PyDoc_STRVAR(lt_doc,
"LocalTracer(rec, ts, act, display, immutable, chunk_steps)\n--\n\n"
"The settrace backend's per-frame trace function in C: called as f(frame, event, arg),\n"
"it records steps and changed locals exactly as SettraceTracer._local's closure does.");

static PyTypeObject LocalTracerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.LocalTracer",
    .tp_basicsize = sizeof(LocalTracer),
    .tp_dealloc = (destructor)lt_dealloc,
    .tp_vectorcall_offset = offsetof(LocalTracer, vectorcall),
    .tp_call = lt_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = lt_doc,
    .tp_traverse = (traverseproc)lt_traverse,
    .tp_clear = (inquiry)lt_clear,
    .tp_new = lt_new,
};

/* ------------------------------------------------------------------ module */

static struct PyModuleDef fastline_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "replay.replayer._fastline",
    .m_doc = "C implementation of the settrace backend's per-line trace function (optional).",
    .m_size = -1,
};

static int
intern_all(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_line, "line"}, {&s_return, "return"}, {&s_exception, "exception"},
        {&s_base, "base"}, {&s_flush, "flush"}, {&s_pop, "pop"}, {&s_get, "get"},
        {&s_f_lineno, "f_lineno"}, {&s_f_locals, "f_locals"}, {&s_f_trace_lines, "f_trace_lines"},
        {&s_code, "code"}, {&s_effects, "effects"}, {&s_cid, "cid"}, {&s_serial, "serial"},
        {&s_depth, "depth"}, {&s_values, "values"}, {&s_nodes, "nodes"}, {&s_index, "index"},
        {&s_steps, "steps"}, {&s_changes, "changes"}, {&s_diff, "diff"},
        {&s_stopped, "stopped"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return -1;
        }
    }
    if (kind_line == NULL && (kind_line = PyLong_FromLong(KIND_LINE)) == NULL) {
        return -1;
    }
    if (kind_return == NULL && (kind_return = PyLong_FromLong(KIND_RETURN)) == NULL) {
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC
PyInit__fastline(void)
{
    if (intern_all() < 0) {
        return NULL;
    }
    if (PyType_Ready(&LocalTracerType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&fastline_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LocalTracer", (PyObject *)&LocalTracerType) < 0
            || PyModule_AddIntConstant(module, "LINE", KIND_LINE) < 0
            || PyModule_AddIntConstant(module, "RETURN", KIND_RETURN) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
