/* The per-frame local trace function of the trace recorder, in C (optional speed-up).
 *
 * ``LocalTracer(rec, ts, act, display, immutable, chunk_steps)`` is a callable set as a
 * frame's ``f_trace`` (the settrace backend) or called for LINE events (the monitoring
 * backend). It does what the ``local`` closure of ``replay.replayer.tracer.line_tracer``
 * does, so traces are byte-identical with and without it (tests/unit/test_fastline.py
 * compares them). Called as ``obj(frame, event, arg)``:
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
 * ``chunk_columns(steps, exception_kind)`` does in one C pass what TraceRecorder.flush
 * computes from a chunk's step tuples (the columns' bytes, the per-frame hit counts, the
 * summary's code ids, code-line keys, exception count and depth range); see its docstring.
 *
 * API: the public C API of CPython 3.11+ (PyFrame_GetLineNumber, PyFrame_GetLocals,
 * vectorcall, PyMember_GetOne/SetOne); no internal headers. Not for free-threaded builds.
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
    *s_nodes, *s_index, *s_steps, *s_changes, *s_diff, *s_stopped, *s_failed;
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
    Py_ssize_t chunk_last;          /* chunk_steps - 1 */
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

/* rec.base + n, new reference (read at each use: as the closure, which reads it per change). */
static PyObject *
step_number(LocalTracer *self, Py_ssize_t n)
{
    PyObject *base = PyObject_GetAttr(self->rec, s_base);
    if (base == NULL) {
        return NULL;
    }
    PyObject *offset = PyLong_FromSsize_t(n);
    if (offset == NULL) {
        Py_DECREF(base);
        return NULL;
    }
    PyObject *step = PyNumber_Add(base, offset);
    Py_DECREF(base);
    Py_DECREF(offset);
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
    int rc = PyList_Append(self->changes, change);
    Py_DECREF(change);
    return rc;
}

/* A simple effect (effect[3] true), inlined: ``reencode`` and ``check`` are effect[1] and
 * effect[0]. 0 or -1. */
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
        if (value == values) {  /* gone from the frame: a deletion (no node) */
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

/* Use the slot directly only if type(act).line is a writable object member descriptor of a
 * class on act's MRO, and the class does not customise attribute access. 0, or -1 on error. */
static int
find_line_member(LocalTracer *self)
{
    PyTypeObject *type = Py_TYPE(self->act);
    if (type->tp_getattro != PyObject_GenericGetAttr || type->tp_setattro != PyObject_GenericSetAttr) {
        return 0;
    }
    PyObject *descr = PyObject_GetAttr((PyObject *)type, s_line);
    if (descr == NULL) {
        return -1;
    }
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDescrObject *member = (PyMemberDescrObject *)descr;
        if (member->d_member->type == T_OBJECT_EX && !(member->d_member->flags & READONLY)
                && PyType_IsSubtype(type, member->d_common.d_type)) {
            self->line_member = member->d_member;
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
    PyObject *line = NULL, *record;
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
        int simple = 0;
        if (PyTuple_Check(effect) && PyTuple_GET_SIZE(effect) >= 4) {
            simple = PyObject_IsTrue(PyTuple_GET_ITEM(effect, 3));
            if (simple < 0) {
                goto error;
            }
        }
        if (simple && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 0))
                && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 1))) {
            if (simple_effect(self, frame, PyTuple_GET_ITEM(effect, 0), PyTuple_GET_ITEM(effect, 1), n) < 0) {
                goto error;
            }
        }
        else {
            PyObject *step = step_number(self, n);
            if (step == NULL) {
                goto error;
            }
            PyObject *args[4] = {self->act, frame, effect, step};
            PyObject *res = PyObject_Vectorcall(self->diff, args, 4, NULL);
            Py_DECREF(step);
            if (res == NULL) {
                goto error;
            }
            Py_DECREF(res);
        }
        Py_CLEAR(effect);
    }
    record = PyTuple_New(6);
    if (record == NULL) {
        goto error;
    }
    PyTuple_SET_ITEM(record, 0, Py_NewRef(kind_line));
    PyTuple_SET_ITEM(record, 1, Py_NewRef(self->cid));
    PyTuple_SET_ITEM(record, 2, line);  /* steals the reference */
    PyTuple_SET_ITEM(record, 3, Py_NewRef(self->serial));
    PyTuple_SET_ITEM(record, 4, Py_NewRef(self->depth));
    PyTuple_SET_ITEM(record, 5, Py_NewRef(self->thread));
    rc = PyList_Append(self->steps, record);
    Py_DECREF(record);
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
handle_failure(LocalTracer *self)
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
    PyObject *res = PyObject_CallMethodOneArg(self->rec, s_failed, exc);
    Py_DECREF(exc);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* The entry point. The settrace trampoline calls f_trace without holding a reference to it,
 * and the recorder may drop it during the call (stop_all sets every f_trace to None), so the
 * object keeps itself alive until it returns. A cleared object (tp_clear by the collector)
 * records nothing. */
static PyObject *
lt_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    LocalTracer *self = (LocalTracer *)op;
    if (PyVectorcall_NARGS(nargsf) != 3 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "LocalTracer takes (frame, event, arg)");
        return NULL;
    }
    if (self->rec == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *frame = args[0], *event = args[1], *arg = args[2], *result;
    Py_INCREF(op);
    if (event_is(event, s_line)) {
        result = on_line(self, frame);
    }
    else if (event_is(event, s_return)) {
        result = on_return(self, frame, arg);
    }
    else if (event_is(event, s_exception)) {
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
    self->rec = Py_NewRef(rec);  /* set last: a NULL rec marks an unusable object */
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

PyDoc_STRVAR(lt_doc,
"LocalTracer(rec, ts, act, display, immutable, chunk_steps)\n--\n\n"
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
    uint64_t h = key * 0x9E3779B97F4A7C15ULL;
    Py_ssize_t i = (Py_ssize_t)(h >> 20) & ki->mask;
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
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "chunk_columns(steps: list, exception_kind: int)");
        return NULL;
    }
    PyObject *steps = args[0];
    long exception_kind = PyLong_AsLong(args[1]);
    if (exception_kind == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(steps);
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

static PyMethodDef fastline_methods[] = {
    {"chunk_columns", (PyCFunction)(void (*)(void))chunk_columns, METH_FASTCALL, chunk_columns_doc},
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
        {&s_failed, "failed"},
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
    if (intern_all() < 0 || PyType_Ready(&LocalTracerType) < 0) {
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
