/* replay.capture._fastcapture: optional C speed-ups of production capture.
 *
 * Capture runs in production on every request, so its fixed costs are paid by every
 * request of every recorded service, failing or not (DESIGN.md section 9: under 3%
 * throughput loss with capture on-error). These types take the per-request and
 * per-boundary-call work that needs no Python off the interpreter:
 *
 *   interceptor.c: Interceptor, MethodInterceptor (a boundary interceptor's C front);
 *   exchange.c: WSGIExchange, wsgi_serve (ReplayWSGIMiddleware's per-request path).
 *
 * The package works without this module (no compiler, no headers): the Python code it
 * stands in front of is complete on its own (replay.capture.boundary.intercept).
 *
 * API: the public C API of CPython 3.11+; heap types; not for free-threaded builds. The
 * Python pieces exchange.c calls are kept in static variables (one interpreter per process,
 * as the rest of the capture package assumes).
 * Source layout: one translation unit (this file includes the parts). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <structmember.h>

#include "interceptor.c"
#include "exchange.c"

static int
fastcapture_exec(PyObject *module)
{
    return interceptor_add_types(module) < 0 || exchange_add_types(module) < 0 ? -1 : 0;
}

static PyModuleDef_Slot fastcapture_slots[] = {
    {Py_mod_exec, fastcapture_exec},
    {0, NULL},
};

static struct PyModuleDef fastcapture_module = {
    PyModuleDef_HEAD_INIT, "replay.capture._fastcapture",
    "Optional C speed-ups of production capture (see module.c).", 0, NULL, fastcapture_slots,
};

PyMODINIT_FUNC
PyInit__fastcapture(void)
{
    return PyModuleDef_Init(&fastcapture_module);
}
