/* replay.replayer._fastline: the module: its functions, interned names and PyInit__fastline.
 * The extension is one translation unit (every function stays static, as before the
 * split): this file includes the parts in order, each using what the earlier ones
 * define. setup.py compiles this file alone. */

#include "fastline.h"

#include "fingerprint.c"
#include "display.c"
#include "steps.c"
#include "gate.c"
#include "changes.c"
#include "fastlocals.c"
#include "frame.c"
#include "local.c"
#include "global.c"
#include "columns.c"
#include "recorder.c"
#include "pack.c"

static PyMethodDef fastline_methods[] = {
    {"add_hits", (PyCFunction)(void (*)(void))add_hits, METH_FASTCALL, add_hits_doc},
    {"snapshot_locals", (PyCFunction)(void (*)(void))snapshot_locals, METH_FASTCALL, snapshot_locals_doc},
    {"chunk_columns", (PyCFunction)(void (*)(void))chunk_columns, METH_FASTCALL, chunk_columns_doc},
    {"change_columns", (PyCFunction)(void (*)(void))change_columns, METH_FASTCALL, change_columns_doc},
    {"display_fingerprint", (PyCFunction)(void (*)(void))display_fingerprint, METH_FASTCALL,
     display_fingerprint_doc},
    {"generic_dict", generic_dict, METH_O, generic_dict_doc},
    {"pack_nodes", (PyCFunction)(void (*)(void))pack_nodes, METH_FASTCALL, pack_nodes_doc},
    {"locals_reads", locals_reads, METH_NOARGS, locals_reads_doc},
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
        {&s_failed, "failed"}, {&s_fps, "fps"}, {&s_placeholder, "?"},
        {&s_unreadable, "<unreadable>"},
        {&t_list, "l"}, {&t_tuple, "t"}, {&t_dict, "d"}, {&t_set, "s"}, {&t_frozenset, "f"},
        {&t_ba, "ba"}, {&t_ref, "@"}, {&t_more, "+"}, {&t_bigint, "i"}, {&t_cut_str, "S"},
        {&t_surrogates, "su"}, {&t_cut_bytes, "B"}, {&t_deep, "..."}, {&t_obj, "obj"}, {&t_dc, "dc"},
        {&t_nt, "nt"}, {&t_type, "type"}, {&r_resource, "an operating-system resource or a type implemented in C"},
        {&s_module_attr, "__module__"}, {&s_frame, "frame"}, {&s_return_name, "<return>"},
        {&s_act_end, "_act_end"}, {&s_stack, "stack"}, {&s_live, "live"},
        {&s_call, "call"}, {&s_gc_thread, "gc_thread"}, {&s_codes, "codes"}, {&s_threads, "_threads"},
        {&s_thread, "thread"}, {&s_push, "push"}, {&s_in_scope, "in_scope"}, {&s_lib, "lib"},
        {&s_f_trace, "f_trace"}, {&s_f_trace_lines, "f_trace_lines"}, {&s_qualname, "qualname"},
        {&s_module_level, "module_level"}, {&s_kids, "kids"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return -1;
        }
    }
    if (fp_prime == NULL && (fp_prime = PyLong_FromUnsignedLongLong(18446744073709551557ULL)) == NULL) {
        return -1;
    }
    if (kind_line == NULL && (kind_line = PyLong_FromLong(KIND_LINE)) == NULL) {
        return -1;
    }
    if (kind_return == NULL && (kind_return = PyLong_FromLong(KIND_RETURN)) == NULL) {
        return -1;
    }
    return 0;
}

/* DISPLAY_BOUNDS = (max_depth, max_bytes, max_items): the DISPLAY profile the fingerprint
 * walks by (tests compare it with replay.snapshot.encoding.DISPLAY). */
static int
add_display_bounds(PyObject *module)
{
    PyObject *bounds = Py_BuildValue("(iii)", FP_MAX_DEPTH, FP_MAX_BYTES, FP_MAX_ITEMS);
    if (bounds == NULL) {
        return -1;
    }
    int rc = PyModule_AddObjectRef(module, "DISPLAY_BOUNDS", bounds);
    Py_DECREF(bounds);
    return rc;
}

PyMODINIT_FUNC
PyInit__fastline(void)
{
    if (intern_all() < 0 || find_python_class_slots() < 0 || find_frame_accessors() < 0
            || PyType_Ready(&LocalTracerType) < 0 || PyType_Ready(&GlobalTracerType) < 0
            || PyType_Ready(&ReturningType) < 0 || PyType_Ready(&StepsType) < 0 || PyType_Ready(&ChangesType) < 0
            || PyType_Ready(&DisplayType) < 0 || PyType_Ready(&EventGateType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&fastline_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "LocalTracer", (PyObject *)&LocalTracerType) < 0
            || PyModule_AddObjectRef(module, "GlobalTracer", (PyObject *)&GlobalTracerType) < 0
            || PyModule_AddObjectRef(module, "Returning", (PyObject *)&ReturningType) < 0
            || PyModule_AddObjectRef(module, "Steps", (PyObject *)&StepsType) < 0
            || PyModule_AddObjectRef(module, "Changes", (PyObject *)&ChangesType) < 0
            || PyModule_AddObjectRef(module, "Display", (PyObject *)&DisplayType) < 0
            || PyModule_AddObjectRef(module, "EventGate", (PyObject *)&EventGateType) < 0
            || PyModule_AddIntConstant(module, "LINE", KIND_LINE) < 0
            || PyModule_AddIntConstant(module, "RETURN", KIND_RETURN) < 0
            || add_display_bounds(module) < 0
            || PyModule_AddIntConstant(module, "DISPLAY_MAX_STR", DN_MAX_STR) < 0
            || PyModule_AddIntConstant(module, "KIND_OTHER", KIND_OTHER) < 0
            || PyModule_AddIntConstant(module, "KIND_PLAIN", KIND_PLAIN) < 0
            || PyModule_AddIntConstant(module, "KIND_OPAQUE", KIND_OPAQUE) < 0
            || PyModule_AddIntConstant(module, "KIND_NAMEDTUPLE", KIND_NAMEDTUPLE) < 0
            || PyModule_AddIntConstant(module, "KIND_CLASS", KIND_CLASS) < 0
            || PyModule_AddIntConstant(module, "KIND_SLOTTED", KIND_SLOTTED) < 0
            || PyModule_AddIntConstant(module, "KIND_DATACLASS", KIND_DATACLASS) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
