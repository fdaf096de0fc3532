/* replay.capture._fastcapture: Interceptor and MethodInterceptor, the C front of a boundary
 * interceptor. Part of a unity build (module.c includes every part); not compiled on its own.
 *
 * ``Interceptor(real, recording, var)`` is what an intercepted function (``time.time``,
 * ``os.urandom``, ...) is replaced by. Called, it reads the context variable ``var``
 * (replay.capture.boundary.ACTIVE): with no session (None) it calls ``real`` with the same
 * arguments, else ``recording``. ``recording`` is the complete Python interceptor (it reads
 * ACTIVE again and calls ``real`` itself when there is no session), so this object changes
 * no behaviour: it spares the process's own calls outside any recording (a web server's clock
 * and socket calls, on every request) a Python frame. Measured by
 * benchmarks/bench_capture_load.py (mode ``idle``).
 *
 * ``MethodInterceptor`` is the same for a method set on a class (``socket.socket.send``): it
 * binds like a function (``sock.send`` is a bound method) and is a method descriptor for the
 * interpreter's LOAD_METHOD/CALL (no bound method object is made for ``sock.send(data)``).
 * ``Interceptor`` does not bind, as the built-in function it replaces does not.
 *
 * Both have a ``__dict__`` (functools.update_wrapper gives them the name, qualname, doc and
 * ``__wrapped__`` of ``recording``), and weak references. */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *real, *recording, *var;
    PyObject *dict, *weakrefs;
} Interceptor;

static PyObject *
ic_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Interceptor *self = (Interceptor *)op;
    PyObject *session;
    if (PyContextVar_Get(self->var, Py_None, &session) < 0) {
        return NULL;
    }
    PyObject *target = session == Py_None ? self->real : self->recording;
    Py_DECREF(session);
    return PyObject_Vectorcall(target, args, nargsf, kwnames);
}

static PyObject *
ic_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *real, *recording, *var;
    static char *names[] = {"real", "recording", "var", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO:Interceptor", names, &real, &recording, &var)) {
        return NULL;
    }
    if (!PyCallable_Check(real) || !PyCallable_Check(recording)) {
        PyErr_SetString(PyExc_TypeError, "Interceptor: real and recording must be callable");
        return NULL;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "Interceptor: var must be a contextvars.ContextVar");
        return NULL;
    }
    Interceptor *self = (Interceptor *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = ic_vectorcall;
    self->real = Py_NewRef(real);
    self->recording = Py_NewRef(recording);
    self->var = Py_NewRef(var);
    return (PyObject *)self;
}

static int
ic_traverse(Interceptor *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->real);
    Py_VISIT(self->recording);
    Py_VISIT(self->var);
    Py_VISIT(self->dict);
    return 0;
}

static int
ic_clear(Interceptor *self)
{
    Py_CLEAR(self->real);
    Py_CLEAR(self->recording);
    Py_CLEAR(self->var);
    Py_CLEAR(self->dict);
    return 0;
}

static void
ic_dealloc(Interceptor *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    ic_clear(self);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *
ic_repr(Interceptor *self)
{
    return PyUnicode_FromFormat("<replay interceptor of %R>", self->real);
}

/* A method set on a class binds to its instance, as the Python function it stands for. */
static PyObject *
ic_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyMemberDef ic_members[] = {
    {"real", T_OBJECT, offsetof(Interceptor, real), READONLY, "the intercepted callable"},
    {"recording", T_OBJECT, offsetof(Interceptor, recording), READONLY,
     "the Python interceptor, called inside a session"},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Interceptor, vectorcall), READONLY},
    {"__dictoffset__", T_PYSSIZET, offsetof(Interceptor, dict), READONLY},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Interceptor, weakrefs), READONLY},
    {NULL},
};

static PyGetSetDef ic_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict},
    {NULL},
};

static PyType_Slot ic_slots[] = {
    {Py_tp_new, ic_new},
    {Py_tp_dealloc, ic_dealloc},
    {Py_tp_traverse, ic_traverse},
    {Py_tp_clear, ic_clear},
    {Py_tp_repr, ic_repr},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, ic_members},
    {Py_tp_getset, ic_getset},
    {Py_tp_doc, "Interceptor(real, recording, var): calls real(*args) with no session in var, "
                "else recording(*args)."},
    {0, NULL},
};

static PyType_Slot mic_slots[] = {
    {Py_tp_descr_get, ic_descr_get},
    {Py_tp_new, ic_new},
    {Py_tp_dealloc, ic_dealloc},
    {Py_tp_traverse, ic_traverse},
    {Py_tp_clear, ic_clear},
    {Py_tp_repr, ic_repr},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, ic_members},
    {Py_tp_getset, ic_getset},
    {Py_tp_doc, "MethodInterceptor(real, recording, var): an Interceptor set on a class; binds "
                "to instances like a function."},
    {0, NULL},
};

#define IC_FLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL)

static PyType_Spec ic_spec = {
    "replay.capture._fastcapture.Interceptor", sizeof(Interceptor), 0,
    IC_FLAGS | Py_TPFLAGS_BASETYPE, ic_slots,
};

static PyType_Spec mic_spec = {
    "replay.capture._fastcapture.MethodInterceptor", sizeof(Interceptor), 0,
    IC_FLAGS | Py_TPFLAGS_METHOD_DESCRIPTOR, mic_slots,
};

static int
interceptor_add_types(PyObject *module)
{
    PyObject *base = PyType_FromModuleAndSpec(module, &ic_spec, NULL);
    if (base == NULL) {
        return -1;
    }
    PyObject *method = PyType_FromModuleAndSpec(module, &mic_spec, base);
    int rc = method == NULL ? -1 : PyModule_AddObjectRef(module, "Interceptor", base);
    if (rc == 0) {
        rc = PyModule_AddObjectRef(module, "MethodInterceptor", method);
    }
    Py_DECREF(base);
    Py_XDECREF(method);
    return rc;
}
