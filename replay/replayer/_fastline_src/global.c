/* replay.replayer._fastline: GlobalTracer: the global trace function (call events, TraceRecorder.push in C).
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

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
 *   call:  when rec.stopped or rec.in_gc (this thread runs the collector), nothing (and
 *          f_trace = None). Else the code's rec.codes entry (rec.code(code) when missing),
 *          the thread's rec._threads entry (rec.thread() when missing); an in-scope frame:
 *          rec.push(ts, info, frame) and f_trace = a LocalTracer; a library frame called
 *          directly from traced application code: rec.push, f_trace_lines = 0 and f_trace =
 *          a library LocalTracer (its return only); any other frame: f_trace = None,
 *          f_trace_lines = 0 (no line events).
 *   other: to frame.f_trace: a LocalTracer directly in C, anything else called as the
 *          trampoline calls it; a result other than None becomes f_trace.
 * An Exception raised while handling an event goes to rec.failed(exc) (tracing stops, the
 * program goes on); another BaseException propagates into the program and ends tracing on
 * this thread, as from the trampoline.
 *
 * What a program could see differently from the trampoline: a frame's f_locals dict (3.11,
 * 3.12) is refreshed when the recorder reads it (a call's first locals; the lines of
 * generators, coroutines and class bodies; not a plain function's lines, whose values are
 * read from the frame: fastlocals.c), not before every event (closer to running untraced),
 * and frames that were not traced keep f_trace_lines = False (a debugger that later sets
 * f_trace on such a frame, still live, gets no line events from it). */

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
    PyObject *gate;                           /* gate_of(rec), or NULL */
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

/* bool(value) of a new reference (stolen), or -1 when it is NULL (an error is set). */
static int
truth(PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    int yes = value == Py_True ? 1 : value == Py_False ? 0 : PyObject_IsTrue(value);
    Py_DECREF(value);
    return yes;
}

/* bool(obj.<name>): 1, 0 or -1. */
static int
slot_true(Slot *s, PyObject *obj)
{
    return truth(slot_get(s, obj));
}

/* bool(obj.<name>) for a plain attribute: 1, 0 or -1. */
static int
attr_true(PyObject *obj, PyObject *name)
{
    return truth(PyObject_GetAttr(obj, name));
}

/* Is this thread running the cyclic collector (rec.gc_thread, TraceRecorder.in_gc)? 1, 0, -1. */
static int
collecting_here(PyObject *rec)
{
    PyObject *value = PyObject_GetAttr(rec, s_gc_thread);
    if (value == NULL) {
        return -1;
    }
    unsigned long ident = PyLong_AsUnsignedLong(value);
    Py_DECREF(value);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    return ident != 0 && ident == PyThread_get_thread_ident();
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
    PyObject *module_level = slot_get(&g->code_module_level, info);
    self->function_level = module_level != NULL && PyObject_Not(module_level) == 1;
    Py_XDECREF(module_level);
    PyErr_Clear();  /* cannot say: rec.diff handles the lines that suspend */
    self->rec_dict = Py_XNewRef(g->rec_dict);
    self->gate = Py_XNewRef(g->gate);
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
static PyObject *gt_call(GlobalTracer *g, PyFrameObject *frame);

/* gt_call inside the recorder's event gate (gate.c). */
static PyObject *
gt_call_gated(GlobalTracer *g, PyFrameObject *frame)
{
    EventGate *gate = (EventGate *)Py_XNewRef(g->gate);
    int entered = gate != NULL ? gate_enter(gate) : 0;
    PyObject *result = gt_call(g, frame);
    if (gate != NULL) {
        gate_leave(gate, entered);
        Py_DECREF(gate);
    }
    return result;
}

static PyObject *
gt_call(GlobalTracer *g, PyFrameObject *frame)
{
    PyObject *code = NULL, *info = NULL, *ts = NULL, *act = NULL, *result = NULL;
    int off = attr_true(g->rec, s_stopped);
    if (off == 0) {
        off = collecting_here(g->rec);
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
        result = gt_call_gated(g, frame);
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
    PyObject *result = gt_call_gated(g, (PyFrameObject *)args[0]);
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
            || (self->changes = get_changes(rec)) == NULL
            || (self->diff = PyObject_GetAttr(rec, s_diff)) == NULL
            || (self->returning != NULL
                && ((self->act_end = PyObject_GetAttr(rec, s_act_end)) == NULL
                    || (self->live = get_attr_checked(rec, s_live, &PyDict_Type, "rec.live")) == NULL))) {
        Py_DECREF(self);
        return NULL;
    }
    self->rec_dict = base_dict(rec);
    self->gate = gate_of(rec);
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
    Py_CLEAR(self->gate);
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
