/* replay.capture._fastcapture: WSGIExchange and wsgi_serve, the per-request path of
 * ReplayWSGIMiddleware in C. Part of a unity build (module.c includes every part); not
 * compiled on its own.
 *
 * ``wsgi_serve(middleware, environ, start_response)`` does what the Python
 * ``ReplayWSGIMiddleware.__call__`` does (replay/capture/middleware.py; the tests run both
 * and compare), and ``WSGIExchange`` is the C base of the middleware's exchange class: one
 * object per request that holds the recorder, the environ copy and the response, and that
 * is the response iterable the server gets for a streamed response. What only a failing
 * request needs stays in Python and is called only then: the exchange's ``finish`` (write
 * the snapshot), ``crashed``, ``add`` (keep the body of a response that may be written),
 * ``write`` (the app's ``write()`` callable), ``policy.admit`` when the policy samples or
 * its settings changed, the middleware's ``start`` for the first request. A successful
 * request in mode "error" thus runs one Python function (``Recorder.__init__``) instead of
 * thirteen; benchmarks/bench_capture_load.py measures the difference.
 *
 * ``wsgi_setup(exchange_type, sized_type, var, buffer_input, body_buffer, count, recorder,
 * perf_counter_ns)`` gives this file the Python pieces once (middleware.py calls it at
 * import): the exchange class (a subclass of WSGIExchange with ``__slots__ = ()`` and the
 * Python methods), the ``_SizedBody`` class, ACTIVE, ``webdata.buffer_input``,
 * ``webdata.BodyBuffer``, ``recorder.count``, the Recorder class and the real
 * ``time.perf_counter_ns``. */

typedef struct {
    PyObject_HEAD
    PyObject *owner, *environ, *reasons, *body, *real_start_response, *server_write;
    PyObject *status, *headers, *out, *rec, *t0, *result, *chunks, *exc;
    char file_body, keep, closed;
} WSGIExchange;

static PyObject *wsgi_base_type, *wsgi_exchange_type, *wsgi_sized_type, *wsgi_var, *wsgi_buffer_input,
    *wsgi_body_buffer, *wsgi_count, *wsgi_recorder, *wsgi_perf_counter_ns;
static PyObject *s_app, *s_policy, *s_admit, *s_settings, *s_on, *s_always, *s_start, *s_close,
    *s_finish, *s_crashed, *s_add, *s_write, *s_start_response, *s_max_body_bytes,
    *s_content_length, *s_transfer_encoding, *s_file_wrapper, *s_capture_errors,
    *s_serve_unrecorded, *s_admits_all, *s_entry, *s_template_attr, *s_max_interactions, *s_roots,
    *s_app_roots, *s_closed, *empty_bytes, *empty_tuple;

/* ---------------------------------------------------------------- helpers */

/* 1 if ``status`` starts with "5" (a str; anything else as ``status[:1] == "5"``), 0 if not,
 * -1 with an exception (a status that cannot be sliced). */
static int
server_error(PyObject *status)
{
    if (PyUnicode_Check(status)) {
        return PyUnicode_GET_LENGTH(status) > 0 && PyUnicode_READ_CHAR(status, 0) == '5';
    }
    PyObject *head = PySequence_GetSlice(status, 0, 1);
    if (head == NULL) {
        return -1;
    }
    PyObject *five = PyUnicode_FromString("5");
    int rc = five != NULL ? PyObject_RichCompareBool(head, five, Py_EQ) : -1;
    Py_DECREF(head);
    Py_XDECREF(five);
    return rc;
}

/* ``count("capture_errors")``: an internal error, counted (never raised to the app). */
static void
count_capture_error(void)
{
    PyObject *r = PyObject_CallOneArg(wsgi_count, s_capture_errors);
    if (r == NULL) {
        PyErr_Clear();
    }
    Py_XDECREF(r);
}

/* ``fn(a, b)`` (``c`` too when not NULL), by vectorcall: the result or NULL. */
static PyObject *
call_args(PyObject *fn, PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *args[4] = {NULL, a, b, c};
    return PyObject_Vectorcall(fn, args + 1, (c != NULL ? 3 : 2) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* Call ``obj.name(arg)`` (arg may be NULL: no argument); the result or NULL. */
static PyObject *
call_method(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args, (arg != NULL ? 2 : 1) | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* Stop recording: later interactions (of threads still running) are dropped. As
 * Recorder.close(), without a Python call. 0 or -1. */
static int
close_recorder(PyObject *rec)
{
    return PyObject_SetAttr(rec, s_closed, Py_True);
}

/* The response is over (the recorder is closed): ``exchange.finish(exc)`` unless this is a
 * success in mode "error" (nothing to write: the common case, decided here). 0 or -1. */
static int
finish(WSGIExchange *self, PyObject *exc)
{
    if (exc == NULL && !self->keep) {
        if (self->status == Py_None) {
            return 0;
        }
        int failed = server_error(self->status);
        if (failed == 0) {
            return 0;
        }
        PyErr_Clear();  /* a status that cannot be sliced: the Python method decides */
    }
    PyObject *r = call_method((PyObject *)self, s_finish, exc != NULL ? exc : Py_None);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* ---------------------------------------------------------------- the exchange */

/* exchange.start_response(status, headers, exc_info=None): the server's, then the status
 * kept; the headers and a body buffer only for a response that may be written (a 5xx, or
 * any in mode "always"). Returns the exchange's ``write`` (the server's if the bookkeeping
 * failed). */
static PyObject *
ex_start_response(WSGIExchange *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *status, *headers, *exc_info = NULL;
    if (kwnames == NULL && (nargs == 2 || nargs == 3)) {  /* the common call: positional */
        status = args[0];
        headers = args[1];
        exc_info = nargs == 3 ? args[2] : NULL;
    }
    else {
        static char *names[] = {"status", "headers", "exc_info", NULL};
        PyObject *tuple = PyTuple_New(nargs), *dict = kwnames != NULL ? PyDict_New() : NULL;
        int ok = tuple != NULL && (kwnames == NULL || dict != NULL);
        for (Py_ssize_t i = 0; ok && i < nargs; i++) {
            PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
        }
        for (Py_ssize_t i = 0; ok && kwnames != NULL && i < PyTuple_GET_SIZE(kwnames); i++) {
            ok = PyDict_SetItem(dict, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) == 0;
        }
        /* the objects parsed are borrowed from the tuple and the dict; args keeps them alive */
        ok = ok && PyArg_ParseTupleAndKeywords(tuple, dict, "OO|O:start_response", names, &status, &headers, &exc_info);
        Py_XDECREF(tuple);
        Py_XDECREF(dict);
        if (!ok) {
            return NULL;
        }
    }
    int with_info = exc_info != NULL ? PyObject_IsTrue(exc_info) : 0;
    if (with_info < 0) {
        return NULL;
    }
    PyObject *write = call_args(self->real_start_response, status, headers, with_info ? exc_info : NULL);
    if (write == NULL) {
        return NULL;
    }
    Py_XSETREF(self->server_write, Py_NewRef(write));
    /* The last call wins (an error handler may replace a started response: PEP 3333). */
    Py_XSETREF(self->status, Py_NewRef(status));
    int keep = self->keep ? 1 : server_error(status);
    if (keep > 0) {
        PyObject *copy = PySequence_List(headers);
        if (copy == NULL) {
            keep = -1;
        }
        else {
            Py_XSETREF(self->headers, copy);
        }
        if (keep > 0 && self->out == Py_None) {
            PyObject *cap = PyObject_GetAttr(self->owner, s_max_body_bytes);
            PyObject *out = cap != NULL ? PyObject_CallOneArg(wsgi_body_buffer, cap) : NULL;
            Py_XDECREF(cap);
            if (out == NULL) {
                keep = -1;
            }
            else {
                Py_XSETREF(self->out, out);
            }
        }
    }
    else if (keep == 0) {
        Py_XSETREF(self->headers, Py_NewRef(empty_tuple));
    }
    if (keep < 0) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_DECREF(write);
            return NULL;
        }
        PyErr_Clear();  /* fail open */
        count_capture_error();
        return write;
    }
    Py_DECREF(write);
    return PyObject_GetAttr((PyObject *)self, s_write);
}

/* next(exchange): the app's next chunk, made inside the session; kept when the body may
 * be written. An exception from the app's iterable is remembered (the request failed) and
 * propagates to the server. */
static PyObject *
ex_iternext(WSGIExchange *self)
{
    if (self->chunks == NULL || self->chunks == Py_None) {
        return NULL;
    }
    PyObject *token = PyContextVar_Set(wsgi_var, self->rec);
    if (token == NULL) {
        return NULL;
    }
    PyObject *chunk = PyIter_Next(self->chunks);
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (chunk == NULL && type != NULL) {
        PyErr_NormalizeException(&type, &value, &tb);
        if (PyErr_GivenExceptionMatches(type, PyExc_Exception)) {
            Py_XSETREF(self->exc, Py_NewRef(value));
        }
    }
    int reset = PyContextVar_Reset(wsgi_var, token);
    Py_DECREF(token);
    if (reset < 0) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        Py_XDECREF(chunk);
        return NULL;
    }
    PyErr_Restore(type, value, tb);
    if (chunk != NULL && self->out != Py_None) {
        PyObject *r = call_method((PyObject *)self, s_add, chunk);
        if (r == NULL) {
            Py_DECREF(chunk);
            return NULL;
        }
        Py_DECREF(r);
    }
    return chunk;
}

/* exchange.close(): the server is done with the streamed response: close the app's
 * iterable (in the session), stop recording, and write the snapshot if the request failed. */
static PyObject *
ex_close(WSGIExchange *self, PyObject *unused)
{
    if (self->closed) {
        Py_RETURN_NONE;
    }
    self->closed = 1;
    PyObject *close = NULL, *raised = NULL;
    if (self->result != NULL && self->result != Py_None) {
        close = PyObject_GetAttr(self->result, s_close);
        if (close == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                return NULL;
            }
            PyErr_Clear();
        }
    }
    PyObject *token = PyContextVar_Set(wsgi_var, self->rec);
    if (token == NULL) {
        Py_XDECREF(close);
        return NULL;
    }
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    if (close != NULL) {
        PyObject *r = PyObject_CallNoArgs(close);
        Py_DECREF(close);
        if (r == NULL) {
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            if (PyErr_GivenExceptionMatches(type, PyExc_Exception)) {
                raised = value;
            }
        }
        Py_XDECREF(r);
    }
    /* finally: as the Python method, even when close() raised */
    int rc = PyContextVar_Reset(wsgi_var, token);
    Py_DECREF(token);
    if (rc == 0) {
        rc = close_recorder(self->rec);
    }
    if (rc == 0) {
        PyObject *exc = self->exc != NULL && self->exc != Py_None ? self->exc : raised;
        rc = finish(self, exc);
    }
    if (type != NULL) {
        if (rc < 0) {  /* the Python method's finally raising would replace close()'s error */
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            return NULL;
        }
        PyErr_Restore(type, value, tb);
        return NULL;
    }
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* exchange.reasons: why the snapshot is not replayable; the list is made when first asked. */
static PyObject *
ex_get_reasons(WSGIExchange *self, void *closure)
{
    if (self->reasons == NULL) {
        self->reasons = PyList_New(0);
        if (self->reasons == NULL) {
            return NULL;
        }
    }
    return Py_NewRef(self->reasons);
}

static int
ex_set_reasons(WSGIExchange *self, PyObject *value, void *closure)
{
    Py_XSETREF(self->reasons, Py_XNewRef(value));
    return 0;
}

/* Every object field, once: for traverse and clear. */
#define EX_OBJECTS(X) X(owner) X(environ) X(reasons) X(body) X(real_start_response) X(server_write) \
    X(status) X(headers) X(out) X(rec) X(t0) X(result) X(chunks) X(exc)

static int
ex_traverse(WSGIExchange *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
#define EX_VISIT(field) Py_VISIT(self->field);
    EX_OBJECTS(EX_VISIT)
#undef EX_VISIT
    return 0;
}

static int
ex_clear(WSGIExchange *self)
{
#define EX_CLEAR(field) Py_CLEAR(self->field);
    EX_OBJECTS(EX_CLEAR)
#undef EX_CLEAR
    return 0;
}

static void
ex_dealloc(WSGIExchange *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    ex_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

#define EX_MEMBER(name, flags) {#name, T_OBJECT, offsetof(WSGIExchange, name), flags}
static PyMemberDef ex_members[] = {
    EX_MEMBER(owner, READONLY), EX_MEMBER(environ, READONLY), EX_MEMBER(body, 0),
    EX_MEMBER(real_start_response, READONLY), EX_MEMBER(server_write, 0), EX_MEMBER(status, 0),
    EX_MEMBER(headers, 0), EX_MEMBER(out, 0), EX_MEMBER(rec, READONLY), EX_MEMBER(t0, READONLY),
    EX_MEMBER(result, 0), EX_MEMBER(chunks, 0), EX_MEMBER(exc, 0),
    {"file_body", T_BOOL, offsetof(WSGIExchange, file_body), 0},
    {"keep", T_BOOL, offsetof(WSGIExchange, keep), 0},
    {"closed", T_BOOL, offsetof(WSGIExchange, closed), 0},
    {NULL},
};
#undef EX_MEMBER

static PyGetSetDef ex_getset[] = {
    {"reasons", (getter)ex_get_reasons, (setter)ex_set_reasons, "why the snapshot is not replayable"},
    {NULL},
};

static PyMethodDef ex_methods[] = {
    {"start_response", (PyCFunction)(void (*)(void))ex_start_response, METH_FASTCALL | METH_KEYWORDS,
     "The start_response given to the app (PEP 3333)."},
    {"close", (PyCFunction)ex_close, METH_NOARGS, "The server is done with the response (PEP 3333)."},
    {NULL},
};

static PyType_Slot ex_slots[] = {
    {Py_tp_dealloc, ex_dealloc},
    {Py_tp_traverse, ex_traverse},
    {Py_tp_clear, ex_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, ex_iternext},
    {Py_tp_members, ex_members},
    {Py_tp_getset, ex_getset},
    {Py_tp_methods, ex_methods},
    {Py_tp_doc, "One WSGI request and its response, recorded (made by wsgi_serve)."},
    {0, NULL},
};

static PyType_Spec ex_spec = {
    "replay.capture._fastcapture.WSGIExchange", sizeof(WSGIExchange), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE, ex_slots,
};

/* ---------------------------------------------------------------- the request */

/* self->rec and self->t0: as _Capture.start (a recorder bounded by the settings' tape
 * length, with the app's roots, and the start time in ns from the real perf_counter_ns),
 * which runs instead for the request that resolves the app's entry (the first). 0 or -1. */
static int
start_recorder(WSGIExchange *self, PyObject *middleware, PyObject *settings)
{
    PyObject *entry = PyObject_GetAttr(middleware, s_entry);
    PyObject *resolved = entry != NULL ? PyObject_GetAttr(entry, s_template_attr) : NULL;
    if (resolved == NULL) {
        Py_XDECREF(entry);
        return -1;
    }
    int rc = -1;
    if (resolved == Py_None) {
        PyObject *started = call_method(middleware, s_start, NULL);  /* (recorder, t0) */
        if (started != NULL && PyTuple_Check(started) && PyTuple_GET_SIZE(started) == 2) {
            self->rec = Py_NewRef(PyTuple_GET_ITEM(started, 0));
            self->t0 = Py_NewRef(PyTuple_GET_ITEM(started, 1));
            rc = 0;
        }
        else if (started != NULL) {
            PyErr_SetString(PyExc_TypeError, "wsgi_serve: middleware.start() must return (recorder, t0)");
        }
        Py_XDECREF(started);
    }
    else {
        PyObject *cap = PyObject_GetAttr(settings, s_max_interactions);
        self->rec = cap != NULL ? PyObject_CallOneArg(wsgi_recorder, cap) : NULL;
        PyObject *roots = self->rec != NULL ? PyObject_GetAttr(entry, s_roots) : NULL;
        if (roots != NULL && PyObject_SetAttr(self->rec, s_app_roots, roots) == 0) {
            self->t0 = PyObject_CallNoArgs(wsgi_perf_counter_ns);
            rc = self->t0 != NULL ? 0 : -1;
        }
        Py_XDECREF(cap);
        Py_XDECREF(roots);
    }
    Py_DECREF(resolved);
    Py_DECREF(entry);
    return rc;
}

/* A new exchange of ``middleware`` for ``environ``, its recorder started; NULL with an
 * exception. As _WSGIExchange.__init__ in middleware.py. */
static WSGIExchange *
new_exchange(PyObject *middleware, PyObject *policy, PyObject *environ, PyObject *start_response)
{
    PyTypeObject *type = (PyTypeObject *)wsgi_exchange_type;
    WSGIExchange *self = (WSGIExchange *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->owner = Py_NewRef(middleware);
    self->real_start_response = Py_NewRef(start_response);
    self->server_write = Py_NewRef(Py_None);
    self->status = Py_NewRef(Py_None);
    self->headers = Py_NewRef(empty_tuple);
    self->out = Py_NewRef(Py_None);
    self->exc = Py_NewRef(Py_None);
    /* a shallow copy: the app adds and replaces keys */
    self->environ = PyDict_Check(environ) ? PyDict_Copy(environ) : PyObject_CallOneArg((PyObject *)&PyDict_Type, environ);
    if (self->environ == NULL) {
        goto error;
    }
    PyObject *length = PyDict_GetItemWithError(self->environ, s_content_length);  /* borrowed */
    int has_body = 0;
    if (length != NULL) {
        has_body = PyObject_IsTrue(length);
        if (has_body > 0 && PyUnicode_Check(length) && PyUnicode_CompareWithASCIIString(length, "0") == 0) {
            has_body = 0;
        }
    }
    if (has_body == 0 && !PyErr_Occurred()) {
        has_body = PyDict_Contains(self->environ, s_transfer_encoding);
    }
    if (has_body < 0 || PyErr_Occurred()) {
        goto error;
    }
    if (has_body) {
        PyObject *reasons = ex_get_reasons(self, NULL);
        PyObject *cap = reasons != NULL ? PyObject_GetAttr(middleware, s_max_body_bytes) : NULL;
        self->body = cap != NULL ? call_args(wsgi_buffer_input, environ, cap, reasons) : NULL;
        Py_XDECREF(reasons);
        Py_XDECREF(cap);
        if (self->body == NULL) {
            goto error;
        }
    }
    else {
        self->body = Py_NewRef(empty_bytes);  /* no body (a GET): nothing to read or replace */
    }
    PyObject *settings = PyObject_GetAttr(policy, s_settings);  /* as admit() just refreshed them */
    PyObject *on = settings != NULL ? PyObject_GetAttr(settings, s_on) : NULL;
    int keep = on != NULL ? PyObject_RichCompareBool(on, s_always, Py_EQ) : -1;
    Py_XDECREF(on);
    if (keep < 0 || start_recorder(self, middleware, settings) < 0) {
        Py_XDECREF(settings);
        goto error;
    }
    Py_DECREF(settings);
    self->keep = (char)keep;
    return self;
error:
    Py_DECREF(self);
    return NULL;
}

/* The app raised (the session is reset): exchange.crashed(exc), then the app's exception
 * again, unchanged (an error of crashed() itself is dropped: fail open). */
static PyObject *
app_raised(WSGIExchange *self)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *r = call_method((PyObject *)self, s_crashed, value);
    if (r == NULL) {
        PyErr_Clear();
        count_capture_error();
    }
    Py_XDECREF(r);
    PyErr_Restore(type, value, tb);
    return NULL;
}

/* 1 if len() works on ``obj`` (its type has __len__), else 0. */
static int
has_len(PyObject *obj)
{
    PyTypeObject *t = Py_TYPE(obj);
    return (t->tp_as_sequence != NULL && t->tp_as_sequence->sq_length != NULL)
        || (t->tp_as_mapping != NULL && t->tp_as_mapping->mp_length != NULL);
}

static PyObject *
wsgi_serve(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "wsgi_serve(middleware, environ, start_response)");
        return NULL;
    }
    if (wsgi_exchange_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "wsgi_serve: wsgi_setup() was not called");
        return NULL;
    }
    PyObject *middleware = args[0], *environ = args[1], *start_response = args[2];
    PyObject *app = PyObject_GetAttr(middleware, s_app);
    if (app == NULL) {
        return NULL;
    }
    PyObject *session, *result = NULL, *policy = NULL;
    if (PyContextVar_Get(wsgi_var, Py_None, &session) < 0) {
        goto done;
    }
    int admitted = session == Py_None;
    Py_DECREF(session);
    if (admitted) {
        /* policy.admits_all: every call admitted, the settings current (else admit() decides) */
        policy = PyObject_GetAttr(middleware, s_policy);
        PyObject *all = policy != NULL ? PyObject_GetAttr(policy, s_admits_all) : NULL;
        PyObject *yes = all == Py_True ? Py_NewRef(all) : all != NULL ? call_method(policy, s_admit, NULL) : NULL;
        Py_XDECREF(all);
        admitted = yes != NULL ? PyObject_IsTrue(yes) : -1;
        Py_XDECREF(yes);
        if (admitted < 0) {
            goto done;
        }
    }
    if (!admitted) {  /* inside a recording or a replay, or not admitted: the app alone */
        result = call_args(app, environ, start_response, NULL);
        goto done;
    }
    WSGIExchange *self = new_exchange(middleware, policy, environ, start_response);
    if (self == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            goto done;
        }
        /* fail open: the Python method counts, logs and serves the request unrecorded */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(value, tb);
        }
        PyObject *call[4] = {middleware, value, environ, start_response};
        result = PyObject_VectorcallMethod(s_serve_unrecorded, call, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        goto done;
    }
    PyObject *token = PyContextVar_Set(wsgi_var, self->rec);
    if (token == NULL) {
        Py_DECREF(self);
        goto done;
    }
    PyObject *sr = PyObject_GetAttr((PyObject *)self, s_start_response);
    PyObject *got = sr != NULL ? call_args(app, environ, sr, NULL) : NULL;
    Py_XDECREF(sr);
    PyObject *body = NULL;
    int listed = 0;
    if (got != NULL) {
        PyTypeObject *kind = Py_TYPE(got);
        listed = kind == &PyList_Type || kind == &PyTuple_Type;
        if (!listed) {
            PyObject *wrapper = PyDict_Check(environ) ? PyDict_GetItemWithError(environ, s_file_wrapper)
                                                      : NULL;  /* borrowed */
            if (wrapper == NULL && PyErr_Occurred()) {
                Py_CLEAR(got);
            }
            else if (wrapper == NULL || wrapper == Py_None || (PyObject *)kind != wrapper) {
                /* iter() may run app code (a custom iterable's __iter__): inside the session */
                self->result = Py_NewRef(got);
                self->chunks = PyObject_GetIter(got);
                if (self->chunks == NULL) {
                    Py_CLEAR(got);
                }
                else {
                    body = has_len(got) ? PyObject_CallOneArg(wsgi_sized_type, (PyObject *)self)
                                        : Py_NewRef((PyObject *)self);
                    if (body == NULL) {
                        Py_CLEAR(got);
                    }
                }
            }
        }
    }
    if (got == NULL) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        int reset = PyContextVar_Reset(wsgi_var, token);
        Py_DECREF(token);
        if (reset < 0) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        else {
            PyErr_Restore(type, value, tb);
            app_raised(self);
        }
        Py_DECREF(self);
        goto done;
    }
    int reset = PyContextVar_Reset(wsgi_var, token);
    Py_DECREF(token);
    if (reset < 0) {
        Py_XDECREF(body);
        Py_DECREF(got);
        Py_DECREF(self);
        goto done;
    }
    if (body != NULL) {
        Py_DECREF(got);
        Py_DECREF(self);
        result = body;
        goto done;
    }
    /* A materialised body (list, tuple) runs no app code when iterated and has no close():
     * recorded now, and the server gets the very object the app returned; so does the
     * server's own file wrapper (sendfile), whose body is a file, not recorded. */
    PyObject *r;
    int ok = close_recorder(self->rec) == 0;
    if (ok && listed && self->out != Py_None) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(got);
        for (Py_ssize_t i = 0; ok && i < n; i++) {
            r = call_method((PyObject *)self, s_add, PySequence_Fast_GET_ITEM(got, i));
            ok = r != NULL;
            Py_XDECREF(r);
        }
    }
    if (ok && !listed) {
        self->file_body = 1;
    }
    if (ok && finish(self, NULL) == 0) {
        result = got;
    }
    else {
        Py_DECREF(got);
    }
    Py_DECREF(self);
done:
    Py_DECREF(app);
    Py_XDECREF(policy);
    return result;
}

static PyObject *
wsgi_setup(PyObject *module, PyObject *args)
{
    PyObject *exchange_type, *sized_type, *var, *buffer_input, *body_buffer, *count, *recorder, *perf_counter_ns;
    if (!PyArg_ParseTuple(args, "O!OOOOOOO:wsgi_setup", &PyType_Type, &exchange_type, &sized_type, &var,
                          &buffer_input, &body_buffer, &count, &recorder, &perf_counter_ns)) {
        return NULL;
    }
    if (!PyType_IsSubtype((PyTypeObject *)exchange_type, (PyTypeObject *)wsgi_base_type)) {
        PyErr_SetString(PyExc_TypeError, "wsgi_setup: exchange_type must be a subclass of WSGIExchange");
        return NULL;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "wsgi_setup: var must be a contextvars.ContextVar");
        return NULL;
    }
    Py_XSETREF(wsgi_exchange_type, Py_NewRef(exchange_type));
    Py_XSETREF(wsgi_sized_type, Py_NewRef(sized_type));
    Py_XSETREF(wsgi_var, Py_NewRef(var));
    Py_XSETREF(wsgi_buffer_input, Py_NewRef(buffer_input));
    Py_XSETREF(wsgi_body_buffer, Py_NewRef(body_buffer));
    Py_XSETREF(wsgi_count, Py_NewRef(count));
    Py_XSETREF(wsgi_recorder, Py_NewRef(recorder));
    Py_XSETREF(wsgi_perf_counter_ns, Py_NewRef(perf_counter_ns));
    Py_RETURN_NONE;
}

static PyMethodDef exchange_functions[] = {
    {"wsgi_serve", (PyCFunction)(void (*)(void))wsgi_serve, METH_FASTCALL,
     "wsgi_serve(middleware, environ, start_response): ReplayWSGIMiddleware.__call__ in C."},
    {"wsgi_setup", wsgi_setup, METH_VARARGS,
     "wsgi_setup(exchange_type, sized_type, var, buffer_input, body_buffer, count, recorder, "
     "perf_counter_ns): the Python pieces wsgi_serve uses (middleware.py calls it once)."},
    {NULL},
};

static int
exchange_add_types(PyObject *module)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_app, "app"}, {&s_policy, "policy"}, {&s_admit, "admit"}, {&s_settings, "settings"},
        {&s_on, "on"}, {&s_always, "always"}, {&s_start, "start"}, {&s_close, "close"},
        {&s_finish, "finish"}, {&s_crashed, "crashed"}, {&s_add, "add"}, {&s_write, "write"},
        {&s_start_response, "start_response"}, {&s_max_body_bytes, "max_body_bytes"},
        {&s_content_length, "CONTENT_LENGTH"}, {&s_transfer_encoding, "HTTP_TRANSFER_ENCODING"},
        {&s_file_wrapper, "wsgi.file_wrapper"}, {&s_capture_errors, "capture_errors"},
        {&s_serve_unrecorded, "_serve_unrecorded"}, {&s_admits_all, "admits_all"}, {&s_entry, "entry"},
        {&s_template_attr, "_template"}, {&s_max_interactions, "max_interactions"}, {&s_roots, "roots"},
        {&s_app_roots, "app_roots"}, {&s_closed, "closed"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return -1;
        }
    }
    if ((empty_bytes == NULL && (empty_bytes = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
            || (empty_tuple == NULL && (empty_tuple = PyTuple_New(0)) == NULL)) {
        return -1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &ex_spec, NULL);
    int rc = type == NULL ? -1 : PyModule_AddObjectRef(module, "WSGIExchange", type);
    Py_XSETREF(wsgi_base_type, type);
    return rc == 0 ? PyModule_AddFunctions(module, exchange_functions) : -1;
}
