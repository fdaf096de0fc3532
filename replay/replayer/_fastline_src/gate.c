/* replay.replayer._fastline: EventGate: one thread at a time inside the recorder's events.
 * Part of a unity build (module.c includes every part, in order, after fastline.h); not
 * compiled on its own. */

/* ------------------------------------------------------------------ event gate */

/* ``EventGate()`` (TraceRecorder.gate): a step's number is the length of the step buffer when
 * its event starts, and its changed locals are appended under that number before the step
 * itself. An event that runs Python code in between (rec.diff, rec.push, rec.exception,
 * rec.flush, a Python display) can lose the GIL there, and another thread's event would take
 * that number: the first thread's changes would land on the other thread's step. The gate
 * keeps every other thread out of the recorder until the event ends.
 *
 * Every access is made holding the GIL, so the gate is two plain fields: the thread state
 * inside an event and a nesting depth. Uncontended (one traced thread, or another one
 * between events) entering costs a thread-state read and two stores. A thread that finds
 * the gate held waits with the GIL released (sched_yield, then 50 us sleeps). After about
 * GATE_PATIENCE_MS it goes on without the gate and counts it (``timeouts``): a finalizer run
 * inside the holder's event could wait for a lock the waiting thread holds, and a trace that
 * may misplace a change is better than a program that hangs. */

#include <sched.h>
#include <time.h>

#define GATE_PATIENCE_MS 500

typedef struct {
    PyObject_HEAD
    PyThreadState *holder;  /* the thread inside an event, or NULL */
    Py_ssize_t depth;       /* its nesting (an event calling rec.diff, rec.push ...) */
    Py_ssize_t timeouts;    /* events that went on without the gate */
    Py_ssize_t waits;       /* events that waited for another thread */
} EventGate;

static PyTypeObject EventGateType;

static double
gate_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Enter the gate (the GIL held). 1: entered (gate_leave(g, 1) after), 0: went on without it. */
static int
gate_enter(EventGate *g)
{
    PyThreadState *me = PyThreadState_Get();
    if (g->holder != NULL && g->holder != me) {
        g->waits++;
        double deadline = 0;
        for (int i = 0; g->holder != NULL; i++) {
            Py_BEGIN_ALLOW_THREADS
            if (i < 16) {
                sched_yield();
            }
            else {
                struct timespec pause = {0, 50000};
                nanosleep(&pause, NULL);
            }
            Py_END_ALLOW_THREADS
            if (i == 16) {
                deadline = gate_now_ms() + GATE_PATIENCE_MS;
            }
            else if (i > 16 && (i & 63) == 0 && gate_now_ms() > deadline) {
                g->timeouts++;
                return 0;
            }
        }
    }
    g->holder = me;
    g->depth++;
    return 1;
}

static inline void
gate_leave(EventGate *g, int entered)
{
    if (entered && --g->depth == 0) {
        g->holder = NULL;
    }
}

/* The gate of ``rec.gate`` when it is an EventGate (new reference), else NULL (no error). */
static PyObject *
gate_of(PyObject *rec)
{
    PyObject *gate = PyObject_GetAttrString(rec, "gate");
    if (gate == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!Py_IS_TYPE(gate, &EventGateType)) {
        Py_DECREF(gate);
        return NULL;
    }
    return gate;
}

static PyObject *
gate_py_enter(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(gate_enter((EventGate *)op));
}

static PyObject *
gate_py_leave(PyObject *op, PyObject *entered)
{
    int yes = PyObject_IsTrue(entered);
    if (yes < 0) {
        return NULL;
    }
    EventGate *g = (EventGate *)op;
    if (yes && (g->holder != PyThreadState_Get() || g->depth < 1)) {
        PyErr_SetString(PyExc_RuntimeError, "EventGate.leave(True) by a thread that is not inside it");
        return NULL;
    }
    gate_leave(g, yes);
    Py_RETURN_NONE;
}

static PyMethodDef gate_methods[] = {
    {"enter", gate_py_enter, METH_NOARGS,
     "enter() -> bool: wait until no other thread is inside (the GIL released meanwhile); "
     "False when it went on without the gate after the patience ran out."},
    {"leave", gate_py_leave, METH_O, "leave(entered): leave after enter() returned ``entered``."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef gate_members[] = {
    {"timeouts", T_PYSSIZET, offsetof(EventGate, timeouts), READONLY,
     "events that went on without the gate (another thread held it too long)"},
    {"waits", T_PYSSIZET, offsetof(EventGate, waits), READONLY, "events that waited for another thread"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject EventGateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "replay.replayer._fastline.EventGate",
    .tp_basicsize = sizeof(EventGate),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "EventGate()\n--\n\nOne thread at a time inside the trace recorder's events (see gate.c).",
    .tp_new = PyType_GenericNew,
    .tp_methods = gate_methods,
    .tp_members = gate_members,
};
