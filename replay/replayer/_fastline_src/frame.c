/* replay.replayer._fastline: helpers of the tracers: reading frames, activations and the recorder.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

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

/* rec.base as a C number (read at each use, as step_number reads it). 0 or -1. */
static int
base_value(LocalTracer *self, long long *out)
{
    PyObject *base = NULL;
    if (self->rec_dict != NULL) {
        base = PyDict_GetItemWithError(self->rec_dict, s_base);
        if (base == NULL && PyErr_Occurred()) {
            return -1;
        }
        Py_XINCREF(base);
    }
    if (base == NULL && (base = PyObject_GetAttr(self->rec, s_base)) == NULL) {
        return -1;
    }
    *out = PyLong_AsLongLong(base);
    Py_DECREF(base);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* Append (rec.base + n, serial, name, node) to rec.changes, or (rec.base + n, serial, name)
 * for a deletion (node NULL). 0 or -1. */
static int
add_change(LocalTracer *self, Py_ssize_t n, PyObject *name, PyObject *node)
{
    if (Py_IS_TYPE(self->changes, &ChangesType)) {  /* no step object, no tuple */
        long long base;
        if (base_value(self, &base) < 0) {
            return -1;
        }
        return changes_push((Changes *)self->changes, base + n, self->serial, name, node);
    }
    PyObject *step = step_number(self, n);
    if (step == NULL) {
        return -1;
    }
    int rc = append_change(self->changes, step, self->serial, name, node);
    Py_DECREF(step);
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
 * before display, as TraceRecorder.diff does). The values are read once, before any is
 * encoded: from the frame's fast locals with ``direct`` where fastlocals.c can (what
 * frame.f_locals would hold, without copying every local into it), else from frame.f_locals.
 * 0 or -1. */
static int
simple_effect(LocalTracer *self, PyObject *frame, PyObject *check, PyObject *reencode,
              Py_ssize_t n, int deletions_last, int direct)
{
    Py_ssize_t deferred = 0;  /* with deletions_last: names of ``check`` gone from the frame */
    Py_ssize_t nre = PyTuple_GET_SIZE(reencode);
    LineValues lv;
    if (line_values_open(&lv, frame, reencode, check, direct) < 0) {
        return -1;
    }
    PyObject *values = self->values, *nodes = self->nodes;
    PyObject *value = NULL, *node = NULL, *old = NULL, *fp = NULL;
    /* Same object, maybe mutated in place: re-encode and compare. */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(reencode); i++) {
        PyObject *name = PyTuple_GET_ITEM(reencode, i);
        value = line_value(&lv, i, name, values);  /* ``values`` doubles as "missing" */
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
        value = line_value(&lv, nre + i, name, values);
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
        value = line_value(&lv, nre + i, name, values);
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
    line_values_close(&lv);
    return 0;
error:
    Py_XDECREF(fp);
    Py_XDECREF(old);
    Py_XDECREF(node);
    Py_XDECREF(value);
    line_values_close(&lv);
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
