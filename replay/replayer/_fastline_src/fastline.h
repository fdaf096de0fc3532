/* The per-frame local trace function of the trace recorder, in C (optional speed-up), and the
 * display fingerprint that spares it re-encoding unchanged objects.
 *
 * ``LocalTracer(rec, ts, act, display, immutable, chunk_steps, fingerprint=None, node_of=None)``
 * is a callable set as a frame's ``f_trace`` (the settrace backend) or called for LINE events
 * (the monitoring backend). It does what the ``local`` closure of
 * ``replay.replayer.tracer.line_tracer`` does, so traces are byte-identical with and without
 * it (tests/unit/test_fastline.py compares them). Called as ``obj(frame, event, arg)``:
 *
 *   line:      n = len(rec.steps); effect = effects.get(act.line); act.line = frame.f_lineno;
 *              if effect is simple (effect[3]): re-encode the names of effect[1] that still
 *              hold the same mutable object, appending (rec.base + n, serial, name, node) to
 *              rec.changes when the node changed; then compare the names of effect[0] by
 *              identity: rebound -> (rec.base + n, serial, name, node), node = the value for
 *              an int in int64/uint64 range or a float, else display(value); gone from the
 *              frame -> (rec.base + n, serial, name). Otherwise rec.diff(act, frame, effect,
 *              rec.base + n). Then append (LINE, cid, line, serial, depth, thread) to
 *              rec.steps; when n >= chunk_steps - 1, rec.flush() and return None if that
 *              spent the step budget (rec.stopped); return self.
 *              With ``fingerprint`` (tracer.fingerprint), as TraceRecorder.diff does: a name to
 *              re-encode is skipped while fingerprint(value) is the one act.fps keeps with
 *              its current node; a re-encoded or rebound mutable value gets its node from
 *              node_of(value, fp) (tracer._node_of: display, or a node made for the same
 *              fingerprint) and act.fps[name] = (fp, node) (tests/unit/test_fingerprint.py).
 *   return:    rec.pop(ts, act, RETURN, frame.f_lineno, arg); return None.
 *   exception: rec.exception(ts, act, frame.f_lineno, arg[1]); return self.
 *   other:     return self.
 *
 * What the closure captures when it is made is captured at construction (the recorder's step
 * and change lists, ``rec.diff``, the activation's dicts and numbers); ``act.line`` is read
 * and written at every line event, as the closure does (through its ``__slots__`` member
 * when Activation is a plain slots class, else by attribute).
 *
 * Errors, as in the closure: an ``Exception`` raised while handling an event (by the
 * recorder's methods, by reading the frame, or a MemoryError here) never reaches the traced
 * program: it is passed to ``rec.failed(exc)`` (which keeps it for the trace header and stops
 * tracing) and the call returns None. Other BaseExceptions (KeyboardInterrupt, SystemExit)
 * propagate, as they do from the closure.
 *
 * ``display_fingerprint(value, kinds, report=False)``: 16 bytes that change whenever
 * tracer.display(value) would give another node (see its section below).
 *
 * ``GlobalTracer(rec, <LocalTracer's arguments>, activation=None, snapshot=None)`` is
 * SettraceTracer's global trace function, installed with PyEval_SetTrace (no settrace
 * trampoline): call events (and, with ``activation``, the common case of TraceRecorder.push)
 * in C, every other event straight to the frame's LocalTracer (see its section below).
 * ``Steps()`` is TraceRecorder.steps (rows of six u32 instead of a list of tuples), and
 * ``Returning(...)`` tracer._returning, which LocalTracer calls without a Python call.
 *
 * ``chunk_columns(steps, exception_kind)`` does in one C pass what TraceRecorder.flush
 * computes from a chunk's step tuples (the columns' bytes, the per-frame hit counts, the
 * summary's code ids, code-line keys, exception count and depth range); see its docstring.
 *
 * API: the public C API of CPython 3.11+ (PyFrame_GetLineNumber, PyFrame_GetLocals,
 * vectorcall, PyMember_GetOne/SetOne, PyEval_SetTrace; the fingerprint also reads the public
 * structs of member and getset descriptors and of heap types, the global tracer the frame
 * type's own f_trace accessors and f_trace_lines member definition). One exception: on 3.11
 * and 3.12 a line's names are read from the frame's fast locals (the internal
 * _PyInterpreterFrame and code layout, internal/pycore_frame.h) rather than through
 * frame.f_locals, which copies every local at each read (fastlocals.c says when and how).
 * Not for free-threaded builds.
 *
 * Source layout: one translation unit (module.c includes the parts after this header, in this
 * order, so every function stays static and inlinable): fingerprint.c (display_fingerprint),
 * display.c (Display), steps.c (Steps), gate.c (EventGate), changes.c (Changes), fastlocals.c
 * (a line's values from the frame's fast locals), frame.c (helpers: frames,
 * activations, the recorder), local.c (LocalTracer, Returning), global.c (GlobalTracer),
 * columns.c (chunk_columns, change_columns), recorder.c (snapshot_locals, add_hits), pack.c
 * (pack_nodes), module.c (the module). This header holds what they share: the interned names
 * and the LocalTracer struct.
 */

#ifndef REPLAY_FASTLINE_H
#define REPLAY_FASTLINE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

/* 3.11, 3.12: the interpreter frame's layout, to read a frame's fast locals without
 * FastToLocals (fastlocals.c). Internal headers, included the way greenlet and Cython include
 * them: Py_BUILD_CORE defined around them only. 3.13 reads frame.f_locals (PEP 667). */
#if PY_VERSION_HEX >= 0x030B0000 && PY_VERSION_HEX < 0x030D0000
#define Py_BUILD_CORE 1
#include <internal/pycore_code.h>
#include <internal/pycore_frame.h>
#undef Py_BUILD_CORE
#include <opcode.h>
#endif

/* Step kinds: format constants replay.replayer.tracer.LINE and RETURN (the tests check). */
#define KIND_LINE 1
#define KIND_RETURN 2

static PyObject *s_line, *s_return, *s_exception, *s_base, *s_flush, *s_pop, *s_get,
    *s_f_lineno, *s_f_locals, *s_code, *s_effects, *s_cid, *s_serial, *s_depth, *s_values,
    *s_nodes, *s_index, *s_steps, *s_changes, *s_diff, *s_stopped, *s_failed, *s_fps, *s_placeholder, *s_unreadable;
static PyObject *kind_line, *kind_return;
static PyObject *s_frame, *s_return_name, *s_act_end, *s_stack, *s_live;
static PyObject *s_call, *s_gc_thread, *s_codes, *s_threads, *s_thread, *s_push, *s_in_scope, *s_lib,
    *s_f_trace, *s_f_trace_lines, *s_qualname, *s_module_level, *s_kids;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *rec, *ts, *act;       /* recorder, its _Thread, the Activation */
    PyObject *steps, *changes;      /* rec.steps, rec.changes (lists) */
    PyObject *diff;                 /* rec.diff (bound method) */
    PyObject *effects;              /* act.code.effects: {line: (check, reencode, full, simple)} */
    PyObject *values, *nodes;       /* act.values, act.nodes (dicts) */
    PyObject *display, *immutable;  /* tracer.display, tracer._IMMUTABLE */
    PyObject *fingerprint, *fps;    /* tracer.fingerprint and act.fps, or NULL (not used) */
    PyObject *node_of;              /* tracer._node_of(value, fp), or NULL: display(value) */
    PyObject *cid, *serial, *depth, *thread;  /* the step tuple's fixed fields */
    PyObject *line_descr;           /* type(act).line when its slot is used directly, else NULL */
    PyMemberDef *line_member;       /* its member definition (kept alive by line_descr) */
    Py_ssize_t chunk_last;          /* chunk_steps - 1 */
    PyObject *kinds;                /* tracer._TYPE_KINDS (fingerprints walked here first), or NULL */
    PyObject *returning;            /* tracer._returning: return events recorded here, or NULL */
    PyObject *act_end, *stack, *live;  /* rec._act_end, ts.stack, rec.live (with returning) */
    PyObject *frame_descr;          /* type(act).frame when its slot is used directly, else NULL */
    PyMemberDef *frame_member;
    int library;                    /* a library function's activation (GlobalTracer): its return only */
    int function_level;             /* 1: not module level (act.code.module_level false): a line
                                     * that suspends is compared here, not by rec.diff */
    PyObject *rec_dict;             /* rec.__dict__ when rec.base is read from it, else NULL */
    PyObject *last_base, *last_step;  /* step_number's last rec.base and rec.base + last_n */
    Py_ssize_t last_n;
    PyObject *gate;                 /* rec.gate when it is an EventGate (gate.c), else NULL */
} LocalTracer;

#endif /* REPLAY_FASTLINE_H */
