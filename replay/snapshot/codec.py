"""The value codec: Python values <-> msgpack-ready trees ("nodes"), and safe display.

A node is a msgpack-native primitive (None, bool, int in 64 bits, float, str, bytes) or a
list whose first item is a string tag (``["t", 1, 2]`` is the tuple ``(1, 2)``). Maps are
never used for values, so dict keys of any type, key order and set membership survive.
Every container or object node gets an id in pre-order; a later ``["@", id]`` refers back
to it, which keeps shared references and reference cycles.

Two profiles share the node language (DESIGN.md section 5):

* ``EXACT``: replay-critical values (entry arguments, tape answers, outcome). Nothing is cut;
  a value that cannot be represented becomes a ``["?", ...]`` placeholder and its reason is
  collected in :attr:`Encoder.lossy`, so the caller can mark the snapshot not replayable.
* ``DISPLAY``: values shown to people (locals). Strings, bytes and containers are cut to
  bounds, with the true sizes kept; depth is bounded.

Encoding never calls a value's ``__repr__``; it reads fields. Decoding rebuilds only types
a :class:`TypeResolver` allows; anything else becomes an inert :class:`Opaque`. Rendering
(:func:`render`) never imports anything.
"""

from __future__ import annotations

from replay.snapshot.decoding import Decoder, Opaque, TypeResolver, decode
from replay.snapshot.encoding import DISPLAY, EXACT, Encoder, Profile, encode, type_path
from replay.snapshot.rendering import render

__all__ = [
    "DISPLAY", "EXACT", "Decoder", "Encoder", "Opaque", "Profile", "TypeResolver",
    "decode", "encode", "render", "type_path",
]
