/* replay.replayer._fastline: reading a line's names straight from a frame's fast locals.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own.
 *
 * On 3.11 and 3.12, frame.f_locals (PyFrame_GetLocals) runs PyFrame_FastToLocalsWithError:
 * it copies every fast local and cell of the frame into the frame's f_locals dict, and the
 * tracer then looks the few names a line could have changed up by string. Here those names'
 * values are read from the frame's _PyInterpreterFrame.localsplus by index instead, giving
 * exactly what the dict would hold after that copy (CPython's frame_get_var /
 * _PyFrame_FastToLocalsWithError logic, mirrored):
 *
 *   - a plain local: the slot (NULL: unbound, i.e. missing from f_locals);
 *   - a free variable (CO_FAST_FREE): the contents of the cell COPY_FREE_VARS put there;
 *   - a cell variable (CO_FAST_CELL): the raw value until MAKE_CELL has run (an argument
 *     captured by a closure holds its value at first), then the cell's contents; a slot
 *     holding a cell counts as made when the code's prologue (the instructions before its
 *     first RESUME, where the compiler puts every MAKE_CELL) makes it, since the frame is
 *     past the prologue (see fast_open);
 *   - the slot of a name listed twice in co_localsplusnames: the last one (FastToLocals
 *     writes them in order).
 *
 * Only where that mirror is certain: a real frame object of a function (CO_OPTIMIZED: no
 * module level, no class body, whose f_locals is the namespace itself), past its prologue,
 * every name found among co_localsplusnames, none of them hidden (3.12's comprehension
 * variables of non-function scopes), cells made by the prologue. Anything else reads
 * f_locals as before (fast_open or fast_read says 0). 3.13 (PEP 667: f_locals is a proxy
 * with no copy) always reads f_locals.
 *
 * Generator, coroutine and async generator frames read f_locals too: their f_locals dict
 * lives across suspensions, and the tracer walks it in its insertion order at every resume
 * (the call step's locals) and every yield or await (full_effect, TraceRecorder.diff). That
 * order is the history of the FastToLocals calls (a name unbound by one and bound again by a
 * later one moves to the end), so those frames make them where the pure tracer makes them.
 * A plain function's dict is walked only when made (its call step), so its history is free.
 *
 * What the program sees: the tracer no longer refreshes the frame's f_locals dict at each
 * line. CPython refreshes it whenever someone reads it (locals(), frame.f_locals), as when
 * nothing traces the program. */

static PyObject *mapping_get(PyObject *loc, PyObject *name, PyObject *missing);  /* frame.c */

/* Reads of a line's names (simple effects): straight from the frame, and through f_locals.
 * Tests read them (locals_reads) to see which path ran. */
static unsigned long long reads_direct, reads_f_locals;

#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
#define FAST_LOCALS 1

typedef struct {
    _PyInterpreterFrame *frame;
    PyCodeObject *code;
} FastLocals;

/* 1 and ``fast`` set when the values of ``frame`` (a frame object, or anything else) can be
 * read from its fast locals: a plain function's frame (not a generator's or a coroutine's:
 * see above) whose prologue has run (the instruction executing is at or past the first
 * RESUME; at a line or return event it always is). 0 when f_locals must be read. */
static int
fast_open(PyObject *frame, FastLocals *fast)
{
    if (!PyFrame_Check(frame)) {
        return 0;
    }
    _PyInterpreterFrame *f = ((PyFrameObject *)frame)->f_frame;
    if (f == NULL) {
        return 0;
    }
    PyCodeObject *code = f->f_code;
    if (!(code->co_flags & CO_OPTIMIZED) || (code->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR))
            || _PyInterpreterFrame_LASTI(f) < code->_co_firsttraceable) {
        return 0;
    }
    fast->frame = f;
    fast->code = code;
    return 1;
}

/* 1 when the prologue of ``code`` makes the cell of slot ``index`` (a MAKE_CELL index before
 * the first RESUME); 0 when it is not there. The prologue's instructions (COPY_FREE_VARS,
 * MAKE_CELL, EXTENDED_ARG) have no specialised forms and no inline caches, except 3.11's
 * EXTENDED_ARG_QUICK; the MAKE_CELLs come before any other instruction. */
static int
prologue_makes_cell(PyCodeObject *code, int index)
{
    const _Py_CODEUNIT *instr = _PyCode_CODE(code);
    int oparg = 0;
    for (int k = 0; k < code->_co_firsttraceable; k++) {
        int op = _Py_OPCODE(instr[k]);
        oparg |= _Py_OPARG(instr[k]);
        if (op == MAKE_CELL && oparg == index) {
            return 1;
        }
#ifdef EXTENDED_ARG_QUICK
        if (op == EXTENDED_ARG || op == EXTENDED_ARG_QUICK) {
#else
        if (op == EXTENDED_ARG) {
#endif
            oparg <<= 8;
        }
        else if (op == MAKE_CELL || op == COPY_FREE_VARS) {
            oparg = 0;
        }
        else {
            return 0;
        }
    }
    return 0;
}

/* The value f_locals would hold for ``name`` after FastToLocals: 1 and *value set (borrowed;
 * NULL when the name is unbound, that is missing from f_locals), or 0 when this name cannot
 * be read from the fast locals. Never raises. */
static int
fast_value(const FastLocals *fast, PyObject *name, PyObject **value)
{
    PyCodeObject *code = fast->code;
    PyObject *names = code->co_localsplusnames;
    if (!PyUnicode_CheckExact(name)) {
        return 0;
    }
    int interned = PyUnicode_CHECK_INTERNED(name) != 0, i;
    for (i = code->co_nlocalsplus - 1; i >= 0; i--) {  /* the last slot of a name wins */
        PyObject *other = PyTuple_GET_ITEM(names, i);
        if (other == name) {
            break;
        }
        /* two interned strings are equal only if they are the same object */
        if (PyUnicode_CheckExact(other) && !(interned && PyUnicode_CHECK_INTERNED(other))
                && PyUnicode_GET_LENGTH(other) == PyUnicode_GET_LENGTH(name) && PyUnicode_Compare(other, name) == 0) {
            break;
        }
    }
    if (i < 0) {
        return 0;  /* not a fast local: f_locals may still have it (written by the program) */
    }
    _PyLocals_Kind kind = _PyLocals_GetKind(code->co_localspluskinds, i);
#ifdef CO_FAST_HIDDEN
    if (kind & CO_FAST_HIDDEN) {
        return 0;
    }
#endif
    PyObject *v = fast->frame->localsplus[i];
    if (fast->frame->stacktop) {  /* as CPython: a frame whose stack is cleared has no values */
        if (kind & CO_FAST_FREE) {
            if (v == NULL || !PyCell_Check(v)) {
                return 0;
            }
            v = PyCell_GET(v);
        }
        else if ((kind & CO_FAST_CELL) && v != NULL && PyCell_Check(v)) {
            if (!prologue_makes_cell(code, i)) {
                return 0;  /* CPython would look for the MAKE_CELL further on */
            }
            v = PyCell_GET(v);
        }
    }
    *value = v;
    return 1;
}

/* The values of ``first`` then ``second`` (tuples of names) into out[0 .. len(first) +
 * len(second)): new references, NULL for an unbound name. 1 when every name was read from
 * the fast locals, else 0 with nothing held. */
static int
fast_read(const FastLocals *fast, PyObject *first, PyObject *second, PyObject **out)
{
    Py_ssize_t n1 = PyTuple_GET_SIZE(first), n = n1 + PyTuple_GET_SIZE(second);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *name = k < n1 ? PyTuple_GET_ITEM(first, k) : PyTuple_GET_ITEM(second, k - n1);
        if (!fast_value(fast, name, &out[k])) {
            return 0;
        }
    }
    for (Py_ssize_t k = 0; k < n; k++) {  /* held: the program's code may run before they are used */
        Py_XINCREF(out[k]);
    }
    return 1;
}
#endif /* 3.11, 3.12 */

/* Where simple_effect takes a line's values from: frame.f_locals (``loc``), or the values read
 * from the frame's fast locals (``read``: reencode's names, then check's). */
typedef struct {
    PyObject *loc;
    PyObject **read;
    Py_ssize_t count;
    PyObject *buffer[16];
} LineValues;

/* Fill ``lv`` for the names of ``reencode`` and ``check`` in ``frame``: from the fast locals
 * when ``direct`` and they can be read there, else frame.f_locals. 0, or -1 with an
 * exception set (f_locals could not be read). */
static int
line_values_open(LineValues *lv, PyObject *frame, PyObject *reencode, PyObject *check, int direct)
{
    lv->loc = NULL;
    lv->read = NULL;
    lv->count = 0;
#ifdef FAST_LOCALS
    FastLocals fast;
    Py_ssize_t count = PyTuple_GET_SIZE(reencode) + PyTuple_GET_SIZE(check);
    if (direct && fast_open(frame, &fast)) {
        PyObject **read = count <= (Py_ssize_t)(sizeof(lv->buffer) / sizeof(lv->buffer[0]))
                          ? lv->buffer : PyMem_New(PyObject *, count);
        if (read == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        if (fast_read(&fast, reencode, check, read)) {
            lv->read = read;
            lv->count = count;
            reads_direct++;
            return 0;
        }
        if (read != lv->buffer) {
            PyMem_Free(read);
        }
    }
#else
    (void)reencode;
    (void)check;
    (void)direct;
#endif
    reads_f_locals++;
    lv->loc = PyFrame_Check(frame) ? PyFrame_GetLocals((PyFrameObject *)frame) : PyObject_GetAttr(frame, s_f_locals);
    return lv->loc != NULL ? 0 : -1;
}

/* The value of name number ``k`` (``name``) of the line, or ``missing`` when it is unbound:
 * a new reference, NULL on error. */
static PyObject *
line_value(const LineValues *lv, Py_ssize_t k, PyObject *name, PyObject *missing)
{
    if (lv->loc == NULL) {
        PyObject *value = lv->read[k];
        return Py_NewRef(value != NULL ? value : missing);
    }
    return mapping_get(lv->loc, name, missing);
}

static void
line_values_close(LineValues *lv)
{
    for (Py_ssize_t k = 0; k < lv->count; k++) {
        Py_XDECREF(lv->read[k]);
    }
    if (lv->read != NULL && lv->read != lv->buffer) {
        PyMem_Free(lv->read);
    }
    lv->read = NULL;
    lv->count = 0;
    Py_CLEAR(lv->loc);
}

PyDoc_STRVAR(locals_reads_doc,
"locals_reads()\n--\n\n"
"(direct, f_locals): how many times LocalTracer has read the names a line could change\n"
"straight from the frame's fast locals (3.11, 3.12, function frames) and through\n"
"frame.f_locals, since the module was loaded (a diagnostic for tests and profiling).");

static PyObject *
locals_reads(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("(KK)", reads_direct, reads_f_locals);
}
