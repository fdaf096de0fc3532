/* replay.replayer._fastline: snapshot_locals and add_hits: TraceRecorder helpers called from Python.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

PyDoc_STRVAR(snapshot_locals_doc,
"snapshot_locals(act, frame, n, changes, display, immutable, shown, module_level, kinds=None, fingerprint=None,\n"
"                node_of=None)\n--\n\n"
"TraceRecorder._snapshot_locals in C: for each (name, value) of frame.f_locals that\n"
"shown(name, value, module_level) keeps (names that start and end with '__' and names that\n"
"start with '.' are dropped here without asking shown unless module_level), act.values[name] =\n"
"value; with ``fingerprint``, fp = fingerprint(value) for a value whose type is not in\n"
"``immutable`` (display_fingerprint's walk over ``kinds`` first); act.nodes[name] = the node\n"
"(node_of(value, fp) for a fingerprint, in C when node_of is a Display, else display(value));\n"
"act.fps[name] = (fp, node) as tracer._keep_fingerprint keeps it (fp bytes); changes.append((n,\n"
"act.serial, name, node)).\n"
"A frame whose locals cannot be read records nothing.");

/* One LocalTracer-shaped context for the helpers above, without a tracer object. */
static PyObject *
snapshot_locals(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 8 || nargs > 11) {
        PyErr_SetString(PyExc_TypeError, "snapshot_locals(act, frame, n, changes, display, immutable, shown, "
                                         "module_level, kinds=None, fingerprint=None, node_of=None)");
        return NULL;
    }
    PyObject *act = args[0], *frame = args[1], *step = args[2], *changes = args[3], *display = args[4];
    PyObject *immutable = args[5], *shown = args[6];
    int module_level = PyObject_IsTrue(args[7]);
    PyObject *kinds = nargs > 8 && args[8] != Py_None ? args[8] : NULL;
    PyObject *fingerprint = nargs > 9 && args[9] != Py_None ? args[9] : NULL;
    PyObject *node_of = nargs > 10 && args[10] != Py_None ? args[10] : NULL;
    if (module_level < 0) {
        return NULL;
    }
    if (!(PyList_Check(changes) || Py_IS_TYPE(changes, &ChangesType)) || (kinds != NULL && !PyDict_CheckExact(kinds))) {
        PyErr_SetString(PyExc_TypeError, "snapshot_locals: changes must be a list or a Changes, kinds a dict");
        return NULL;
    }
    LocalTracer ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.display = display;
    ctx.node_of = fingerprint != NULL ? node_of : NULL;
    ctx.fingerprint = fingerprint;
    ctx.kinds = fingerprint != NULL ? kinds : NULL;
    ctx.changes = changes;
    PyObject *items = NULL, *loc = NULL, *result = NULL, *value = NULL, *fp = NULL, *node = NULL;
    if ((ctx.values = PyObject_GetAttr(act, s_values)) == NULL || (ctx.nodes = PyObject_GetAttr(act, s_nodes)) == NULL
            || (ctx.fps = PyObject_GetAttr(act, s_fps)) == NULL || (ctx.serial = PyObject_GetAttr(act, s_serial)) == NULL) {
        goto done;
    }
    loc = PyFrame_Check(frame) ? PyFrame_GetLocals((PyFrameObject *)frame) : PyObject_GetAttr(frame, s_f_locals);
    if (loc != NULL) {
        items = PyMapping_Items(loc);  /* list(frame.f_locals.items()) */
    }
    if (items == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            goto done;
        }
        PyErr_Clear();  /* a broken frame proxy must not stop the replay */
        result = Py_NewRef(Py_None);
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i), *name;
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "snapshot_locals: f_locals.items() gave something else than pairs");
            goto done;
        }
        name = PyTuple_GET_ITEM(pair, 0);
        value = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
        int keep;
        if (!module_level && PyUnicode_CheckExact(name)) {  /* _shown, inlined */
            Py_ssize_t len = PyUnicode_GET_LENGTH(name);
            Py_UCS4 first = len > 0 ? PyUnicode_READ_CHAR(name, 0) : 0;
            keep = !(first == '.' || (len >= 2 && first == '_' && PyUnicode_READ_CHAR(name, 1) == '_'
                                      && PyUnicode_READ_CHAR(name, len - 2) == '_'
                                      && PyUnicode_READ_CHAR(name, len - 1) == '_'));
        }
        else {
            PyObject *res = PyObject_CallFunctionObjArgs(shown, name, value, module_level ? Py_True : Py_False, NULL);
            keep = res != NULL ? PyObject_IsTrue(res) : -1;
            Py_XDECREF(res);
            if (keep < 0) {
                goto done;
            }
        }
        if (!keep) {
            Py_CLEAR(value);
            continue;
        }
        if (PyDict_SetItem(ctx.values, name, value) < 0) {
            goto done;
        }
        if (fingerprint != NULL) {
            int fixed = PySequence_Contains(immutable, (PyObject *)Py_TYPE(value));
            if (fixed < 0 || (!fixed && (fp = take_fingerprint(&ctx, value)) == NULL)) {
                goto done;
            }
        }
        node = fp != NULL ? encode(&ctx, value, fp) : call_display(&ctx, value);
        if (node == NULL || PyDict_SetItem(ctx.nodes, name, node) < 0
                || (fp != NULL && fp != Py_None && fp_keep(&ctx, name, fp, node) < 0)) {
            goto done;
        }
        if (append_change(changes, step, ctx.serial, name, node) < 0) {
            goto done;
        }
        Py_CLEAR(fp);
        Py_CLEAR(node);
        Py_CLEAR(value);
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(fp);
    Py_XDECREF(node);
    Py_XDECREF(value);
    Py_XDECREF(items);
    Py_XDECREF(loc);
    Py_XDECREF(ctx.values);
    Py_XDECREF(ctx.nodes);
    Py_XDECREF(ctx.fps);
    Py_XDECREF(ctx.serial);
    return result;
}

PyDoc_STRVAR(add_hits_doc,
"add_hits(hits, live)\n--\n\n"
"What TraceRecorder.flush does with chunk_columns' hits, in C: for each (frame, key, count) of\n"
"the flat list ``hits``, live.get(frame).hits[key] += count (from 0) when the activation is live.");

static PyObject *
add_hits(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyDict_Check(args[1]) || PyList_GET_SIZE(args[0]) % 3 != 0) {
        PyErr_SetString(PyExc_TypeError, "add_hits(hits: list of triples, live: dict)");
        return NULL;
    }
    PyObject *hits = args[0], *live = args[1], *last = NULL, *table = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(hits); i += 3) {
        PyObject *act = PyDict_GetItemWithError(live, PyList_GET_ITEM(hits, i));
        if (act == NULL) {
            if (PyErr_Occurred()) {
                goto error;
            }
            continue;
        }
        if (act != last) {  /* a chunk's hits come grouped by frame, mostly */
            Py_XDECREF(table);
            if ((table = PyObject_GetAttrString(act, "hits")) == NULL) {
                goto error;
            }
            last = act;
        }
        PyObject *key = PyList_GET_ITEM(hits, i + 1), *count = PyList_GET_ITEM(hits, i + 2);
        PyObject *old = PyObject_GetItem(table, key);
        if (old == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) {
                goto error;
            }
            PyErr_Clear();
            old = PyLong_FromLong(0);
            if (old == NULL) {
                goto error;
            }
        }
        PyObject *sum = PyNumber_Add(old, count);
        Py_DECREF(old);
        if (sum == NULL || PyObject_SetItem(table, key, sum) < 0) {
            Py_XDECREF(sum);
            goto error;
        }
        Py_DECREF(sum);
    }
    Py_XDECREF(table);
    Py_RETURN_NONE;
error:
    Py_XDECREF(table);
    return NULL;
}
