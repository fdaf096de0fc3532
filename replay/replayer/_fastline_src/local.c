/* replay.replayer._fastline: LocalTracer: line, return and exception events of one traced frame; Returning.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

/* ------------------------------------------------------------------ events */

/* 1 if ``code`` (an act.code) says module_level is false, else 0 (also when it cannot say:
 * rec.diff then handles the lines that suspend, as before). */
static int
not_module_level(PyObject *code)
{
    PyObject *flag = code != NULL ? PyObject_GetAttr(code, s_module_level) : NULL;
    int yes = flag != NULL ? PyObject_Not(flag) : 0;
    Py_XDECREF(flag);
    if (yes < 0 || PyErr_Occurred()) {
        PyErr_Clear();
        yes = 0;
    }
    return yes;
}

/* TraceRecorder.diff for a line that suspends (``full``: a yield or an await, where anything
 * may change) in a function's frame: every name of frame.f_locals re-encoded if it holds the
 * same mutable object and compared by identity (as simple_effect does, in f_locals' order),
 * then the names gone from the frame deleted, in act.values' order. A frame whose locals
 * cannot be read records nothing (as rec.diff). 0 or -1. */
static int
full_effect(LocalTracer *self, PyObject *frame, Py_ssize_t n)
{
    PyObject *loc = PyFrame_Check(frame) ? PyFrame_GetLocals((PyFrameObject *)frame)
                                         : PyObject_GetAttr(frame, s_f_locals);
    if (loc == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    PyObject *names = PySequence_Tuple(loc), *gone = PyList_New(0), *name, *value;
    int rc = names != NULL && gone != NULL ? 0 : -1;
    Py_ssize_t pos = 0;
    while (rc == 0 && PyDict_Next(self->values, &pos, &name, &value)) {
        int here = PySequence_Contains(loc, name);
        rc = here < 0 ? -1 : here ? 0 : PyList_Append(gone, name);
    }
    Py_DECREF(loc);
    if (rc == 0) {
        rc = simple_effect(self, frame, names, names, n, 1, 0);  /* f_locals' names: read there */
    }
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(gone); i++) {
        name = PyList_GET_ITEM(gone, i);
        if (PyDict_DelItem(self->values, name) < 0 || dict_discard(self->nodes, name) < 0
                || (self->fps != NULL && dict_discard(self->fps, name) < 0)
                || add_change(self, n, name, NULL) < 0) {
            rc = -1;
        }
    }
    Py_XDECREF(names);
    Py_XDECREF(gone);
    return rc;
}

/* Record what the line ``effect`` (an entry of act.code.effects) changed, at step rec.base + n:
 * a simple one here (deletions after the rebinds with ``deletions_last``, as
 * TraceRecorder.diff orders them), one that suspends in a function's frame by full_effect,
 * any other (module level) by rec.diff. 0 or -1. */
static int
run_effect(LocalTracer *self, PyObject *frame, PyObject *effect, Py_ssize_t n, int deletions_last)
{
    int simple = 0, full = 0;
    if (PyTuple_Check(effect) && PyTuple_GET_SIZE(effect) >= 4) {
        simple = PyObject_IsTrue(PyTuple_GET_ITEM(effect, 3));
        if (simple < 0 || (!simple && (full = PyObject_IsTrue(PyTuple_GET_ITEM(effect, 2))) < 0)) {
            return -1;
        }
    }
    if (simple && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 0)) && PyTuple_CheckExact(PyTuple_GET_ITEM(effect, 1))) {
        return simple_effect(self, frame, PyTuple_GET_ITEM(effect, 0), PyTuple_GET_ITEM(effect, 1), n,
                             deletions_last, 1);
    }
    if (full && self->function_level) {
        return full_effect(self, frame, n);
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
    EventGate *gate = (EventGate *)Py_XNewRef(self->gate);  /* see gate.c */
    int entered = gate != NULL ? gate_enter(gate) : 0;
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
    if (gate != NULL) {
        gate_leave(gate, entered);
        Py_DECREF(gate);
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

/* rec.changes, checked to be a list or a Changes. */
static PyObject *
get_changes(PyObject *rec)
{
    PyObject *changes = PyObject_GetAttr(rec, s_changes);
    if (changes != NULL && !is_changes(changes)) {
        PyErr_Format(PyExc_TypeError, "rec.changes must be a list or a Changes, not %.100s", Py_TYPE(changes)->tp_name);
        Py_CLEAR(changes);
    }
    return changes;
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
            || (self->changes = get_changes(rec)) == NULL
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
    self->function_level = not_module_level(code);
    self->kinds = fingerprint != Py_None && kinds != Py_None ? Py_NewRef(kinds) : NULL;
    self->returning = returning != Py_None ? Py_NewRef(returning) : NULL;
    Py_DECREF(code);
    self->fingerprint = fingerprint != Py_None ? Py_NewRef(fingerprint) : NULL;
    self->node_of = fingerprint != Py_None && node_of != Py_None ? Py_NewRef(node_of) : NULL;
    self->rec_dict = base_dict(rec);
    self->gate = gate_of(rec);
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
    Py_VISIT(self->gate);
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
    Py_CLEAR(self->gate);
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
