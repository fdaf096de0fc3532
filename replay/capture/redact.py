"""Redaction policy: name rules, value scanners and keyed tokens (stdlib only).

Everything a snapshot holds passes through a :class:`Redactor` before it is serialised
(:mod:`replay.capture.redact_records` walks the snapshot's records). Three kinds of rules:

* **Name rules.** A value bound to a secret-looking name (an argument, a local, a dict key,
  an attribute, an HTTP header, a query or form field, a JSON key, a DB column, an
  environment variable) is replaced whole. Names are normalised (lower case, ``_ - .`` and
  spaces removed) and matched by substring (:data:`CONTAINS`) or equality (:data:`EQUALS`),
  minus :data:`EXCLUDED` (``author``...). The lists are the union of Sentry's, Datadog's,
  Relay's and detect-secrets' (research: anchors-capture-security.md sections 3, 4, 8, 10.3).
* **Value scanners** (:data:`SCANNERS`) on every string and bytes value (bytes are scanned
  as latin-1, one character per byte): token shapes of common providers, JWTs, PEM keys,
  ``Bearer``/``Basic`` credentials, URL passwords, Luhn-checked card numbers, US SSNs,
  mod-97-checked IBANs, e-mail addresses and public IP addresses (PII), ``name=value`` and
  ``"name": "value"`` pairs inside text whose name is secret, and high-entropy words.
* **Remembered secrets.** A secret found once is replaced by the same token wherever the
  same text appears again in the snapshot (an exception message, a URL, a log line).
* **A scan limit per value** (:attr:`Policy.scan_limit`, default 64 KiB: research section
  10.3). Scanners run on the first ``scan_limit`` characters of a string (bytes of a bytes
  value); the rest is never written: it becomes one ``~redacted~unscanned___~<hmac>~`` token
  of exactly its length (fail closed, and the scan cost stays bounded whatever the size).

A redacted value becomes a **keyed token** ``~redacted~<rule>~<hmac>~``: the first 8 hex
digits of HMAC-SHA256 of the secret under a random key made for each snapshot (each
:class:`Redactor`) and never stored, so equal secrets give equal tokens within a snapshot
(replay's comparisons and request matching behave the same) but a token cannot be
brute-forced offline nor linked to a token of another snapshot. ``str`` stays ``str`` and
``bytes`` stay ``bytes``; an ``int`` bound to a numeric secret name (a PIN, a card number)
becomes another int with the same number of digits.

Configuration: :func:`configure` in code; ``REPLAY_REDACT_NAMES``,
``REPLAY_REDACT_PATTERNS``, ``REPLAY_REDACT_SCAN_LIMIT`` and ``REPLAY_REDACT=strict`` in the
environment. The environment
can only add rules: ``REPLAY_REDACT=off`` is refused (logged, counted); turning redaction
off takes ``configure(enabled=False)`` in code, and the snapshot's manifest says so.
See docs/redaction.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

from replay.capture.redact_rules import (  # noqa: F401 - SQL, DISPLAY, CODE, VALUE: re-exported modes
    CODE,
    CONTAINS,
    DISPLAY,
    ENTROPY_MIN_LENGTH,
    EQUALS,
    EXCLUDED,
    MIN_REMEMBERED,
    MIN_REMEMBERED_WORDS,
    NOT_IN_CODE,
    PAIR_END,
    PII,
    PLACEHOLDER,
    SCANNERS,
    SCHEME_RE,
    SCHEME_WORDS,
    SEPARATOR_RE,
    SQL,
    TOKEN_RE,
    VALUE,
    WORDS_RE,
    Scanner,
    documentation_email,
    entropy_spans,
    normalise,
    not_secret,
)

log = logging.getLogger("replay.capture")
_NO_DIGITS: Final = str.maketrans("", "", "0123456789")
_MASK: Final = re.compile(r"\*{3,}|•{3,}|#{3,}|[xX]{4,}|\[(?:filtered|redacted|masked|withheld)\]|<(?:filtered|redacted|masked|withheld)>", re.I)

POLICY_VERSION: Final = 1
SCAN_LIMIT: Final = 64 << 10
"""Default characters (bytes) of one value the scanners read; the rest becomes a token."""
UNSCANNED: Final = "unscanned"
# A value at most this much longer than the limit is scanned whole: its tail could not hold
# a token of its own length, and cutting it would save nothing.
_SCAN_SLACK: Final = 256
# The cut moves back to the last separator within this many characters, so a word (a
# token, a key) that straddles the limit goes whole into the unscanned tail.
_CUT_BACKOFF: Final = 1024
_SEPARATORS: Final = re.compile(r"[\s\"',;&<>(){}\[\]|]")


# ------------------------------------------------------------------------------ policy


@dataclasses.dataclass(frozen=True)
class Policy:
    """What is redacted (see :func:`configure`)."""

    enabled: bool = True
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    pii: bool = True
    entropy: bool = True
    strict: bool = False
    scan_limit: int = SCAN_LIMIT

    def digest(self) -> str:
        """A short hash of the rules in force (stored in the manifest)."""
        text = json.dumps([POLICY_VERSION, dataclasses.astuple(self), CONTAINS, EQUALS, PII, EXCLUDED,
                           [s.pattern.pattern for s in SCANNERS]], default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_lock = threading.Lock()
_policy = Policy()
_compiled: tuple[Policy, list[Scanner], dict[str, str | None]] | None = None
_counters: dict[str, int] = {}


def _count(name: str) -> None:
    with _lock:
        _counters[name] = _counters.get(name, 0) + 1


def counters() -> dict[str, int]:
    """Redaction counters of this process (``off_refused``, ``errors``, ``snapshots``)."""
    with _lock:
        return dict(_counters)


def _split_env(value: str) -> list[str]:
    return [p for p in re.split(r"[\s,]+", value) if p]


def _env_patterns(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            got = json.loads(value)
        except ValueError:
            log.warning("replay: REPLAY_REDACT_PATTERNS is not a JSON array of strings; ignored")
            return []
        return [str(p) for p in got]
    return [p for p in value.splitlines() if p.strip()] if value else []


def policy_from_environment(base: Policy, environ: dict[str, str] | os._Environ[str] | None = None) -> Policy:
    """``base`` plus the rules the environment adds (it can only add: see the module doc)."""
    env = os.environ if environ is None else environ
    names = base.names + tuple(_split_env(env.get("REPLAY_REDACT_NAMES", "")))
    patterns = base.patterns + tuple(_env_patterns(env.get("REPLAY_REDACT_PATTERNS", "")))
    mode = (env.get("REPLAY_REDACT") or "").strip().lower()
    strict = base.strict or mode == "strict"
    scan_limit = base.scan_limit
    text = (env.get("REPLAY_REDACT_SCAN_LIMIT") or "").strip()
    if text:
        # Either way is safe (what is not scanned is not written), so the environment may
        # also raise the limit: a service with large bodies trades CPU for replayable tails.
        try:
            scan_limit = _check_scan_limit(int(text), "REPLAY_REDACT_SCAN_LIMIT")
        except ValueError:
            log.warning("replay: REPLAY_REDACT_SCAN_LIMIT=%r is not a positive number of characters; "
                        "the limit stays %d", text, scan_limit)
    if mode in ("off", "0", "false", "no", "none", "disabled"):
        _count("off_refused")
        log.warning("replay: REPLAY_REDACT=%s ignored: the environment cannot turn redaction off "
                    "(use replay.capture.redact.configure(enabled=False) in code)", mode)
    return dataclasses.replace(base, names=names, patterns=patterns, strict=strict, scan_limit=scan_limit)


def _check_scan_limit(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        from replay.errors import UsageError

        raise UsageError(f"{where}={value!r}: expected a positive number of characters (bytes)")
    return value


def configure(*, names: Iterable[str] | None = None, patterns: Iterable[str] | None = None,
              allow: Iterable[str] | None = None, pii: bool | None = None, entropy: bool | None = None,
              strict: bool | None = None, enabled: bool | None = None, scan_limit: int | None = None) -> Policy:
    """Change the process's redaction policy (the defaults always stay on).

    Args:
        names: Extra secret names, matched like :data:`CONTAINS` (normalised substrings).
        patterns: Extra value regexes; group 1 (else the whole match) is the secret.
        allow: Normalised names never treated as secret (e.g. ``"author"``): exclusions.
        pii: Redact personal data (PII names, e-mail and public IP addresses). Default True.
        entropy: Redact high-entropy words. Default True.
        strict: Also replace every string and bytes value shown for context only (locals,
            return value display, flight trace) by a token; replay-critical values keep
            the targeted rules so the snapshot still replays.
        enabled: ``False`` turns redaction off (code only; the manifest records it).
        scan_limit: Characters of a string (bytes of a bytes value) the scanners read, default
            :data:`SCAN_LIMIT` (64 KiB). The rest of a longer value is replaced by one token
            of the same length (``~redacted~unscanned___~<hmac>~``), counted in the
            manifest's ``hits["unscanned"]``. Source text is always scanned whole.

    Returns:
        The policy now in force.

    Raises:
        ValueError: a pattern is not a valid regular expression.
        UsageError: ``scan_limit`` is not a positive int (a ValueError too).
    """
    global _policy, _compiled
    if scan_limit is not None:
        _check_scan_limit(scan_limit, "scan_limit")
    for p in patterns or ():
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"redaction pattern {p!r}: {exc}") from exc
    with _lock:
        _policy = dataclasses.replace(
            _policy,
            names=tuple(names) if names is not None else _policy.names,
            patterns=tuple(patterns) if patterns is not None else _policy.patterns,
            allow=tuple(normalise(a) for a in allow) if allow is not None else _policy.allow,
            pii=_policy.pii if pii is None else pii,
            entropy=_policy.entropy if entropy is None else entropy,
            strict=_policy.strict if strict is None else strict,
            enabled=_policy.enabled if enabled is None else enabled,
            scan_limit=_policy.scan_limit if scan_limit is None else scan_limit,
        )
        _compiled = None
        return _policy


def reset() -> None:
    """Back to the defaults (tests)."""
    global _policy, _compiled
    with _lock:
        _policy = Policy()
        _compiled = None


def current_policy() -> Policy:
    """The policy in force: :func:`configure`'s plus the environment's additions."""
    return _rules()[0]


def _compile(policy: Policy) -> list[Scanner]:
    scanners = [s for s in SCANNERS if policy.pii or not s.pii]
    custom = [Scanner(f"custom_{n + 1}", re.compile(p)) for n, p in enumerate(policy.patterns)]
    return custom + scanners


def _rules() -> tuple[Policy, list[Scanner], dict[str, str | None]]:
    global _compiled
    compiled = _compiled
    if compiled is None:
        with _lock:
            policy = _policy
        policy = policy_from_environment(policy)
        compiled = _compiled = (policy, _compile(policy), {})
    return compiled


def secret_name(name: str, policy: Policy | None = None, cache: dict[str, str | None] | None = None) -> str | None:
    """The rule that makes ``name`` secret (a normalised entry of the lists), or None."""
    if cache is None or policy is None:
        policy, _, cache = _rules()
    hit = cache.get(name, "")
    if hit != "":
        return hit
    norm = normalise(name)
    rule: str | None = None
    if norm and norm not in EXCLUDED and norm not in policy.allow:
        if norm in EQUALS:
            rule = norm
        else:
            extra = tuple(normalise(n) for n in policy.names)
            rule = next((c for c in (*CONTAINS, *extra) if c in norm), None)
            if rule is None and policy.pii:
                rule = next((c for c in PII if c in norm), None)
    if len(cache) < 8192:
        cache[name] = rule
    return rule


# ------------------------------------------------------------------------------ the redactor


class Redactor:
    """Redacts values for one snapshot: tokens, remembered secrets and hit counts.

    Use :meth:`text`, :meth:`data` and :meth:`integer` on leaves (the record walker in
    :mod:`replay.capture.redact_records` calls them). ``learning`` mode only remembers
    values bound to secret names, so a second pass replaces them everywhere. Not
    thread-safe: one per snapshot.

    Args:
        policy: The rules; default the process's (:func:`current_policy`).
        key: The token key; default 32 random bytes of this redactor's own, never stored.
            One redactor serves one snapshot (its tape, outcome, header and embedded trace),
            so equal secrets give equal tokens there and unrelated ones in any other snapshot.
        allow_text: True for text that is never a secret (the application's own literals).

    Attributes:
        hits: Redactions per rule.
        policy: The policy applied.
    """

    def __init__(self, policy: Policy | None = None, *, key: bytes | None = None,
                 allow_text: Callable[[str], bool] | None = None):
        base, scanners, cache = _rules()
        if policy is not None and policy != base:
            scanners, cache = _compile(policy), {}
        self.policy = policy or base
        self._scanners = scanners
        self._prefilter, self._prefilter_fold, self._fold_hint = _prefilters(scanners)
        exact = {k for sc in scanners if not sc.fold for k in sc.keywords}
        self._contained = {k: {c for c in exact if c in k} for k in exact}
        self._names = cache
        self._key = key or os.urandom(32)
        self._allow_text = allow_text
        self.hits: Counter[str] = Counter()
        self.learning = False
        self.errors = 0
        self._tokens: dict[bytes, str] = {}  # secret bytes -> token
        self._known: dict[str, str] = {}  # remembered secret (str) -> token
        self._known_latin1: dict[str, str] = {}  # the same, as latin-1 text of its utf-8 bytes
        self._order: list[str] | None = None
        self._order_latin1: list[str] | None = None

    # -- names

    def name_rule(self, name: Any) -> str | None:
        """The secret rule of a name, or None (non-strings are never secret names)."""
        if type(name) is not str or len(name) > 200:
            return None
        return secret_name(name, self.policy, self._names)

    # -- tokens

    def token(self, secret: str | bytes, label: str) -> str:
        """The token of ``secret`` (the same for the same text, whatever its label)."""
        raw = secret.encode("utf-8", "surrogatepass") if isinstance(secret, str) else bytes(secret)
        tok = self._tokens.get(raw)
        if tok is None:
            label = re.sub(r"[^a-z0-9_]", "_", label.lower())[:40] or "secret"
            digest = hmac.new(self._key, raw, hashlib.sha256).hexdigest()[:8]
            tok = self._tokens[raw] = f"~redacted~{label}~{digest}~"
        self.hits[label] += 1
        return tok

    def integer(self, value: int, label: str) -> int:
        """A keyed int with as many digits as ``value`` (same sign)."""
        if -10 < value < 10:
            return value
        digits = len(str(abs(value)))
        mac = int.from_bytes(hmac.new(self._key, str(value).encode(), hashlib.sha256).digest()[:16], "big")
        low = 10 ** (digits - 1)
        out = low + mac % (9 * low)
        self.hits[label] += 1
        return -out if value < 0 else out

    # -- leaves

    def text(self, value: str, rule: str | None = None, *, mode: str = VALUE) -> str:
        """Redact a string.

        Args:
            value: The string.
            rule: The secret name rule it is bound to: the value is replaced whole unless its
                secret parts are already tokens (``"Bearer <token>"``).
            mode: :data:`VALUE` (every rule), :data:`DISPLAY` (a value shown for context
                only: also replaced whole in strict mode), :data:`SQL` (no ``name=value``
                or entropy rules: SQL text must stay as the program sends it) or
                :data:`CODE` (source text: provider token shapes and remembered secrets).
        """
        if self.learning:
            if rule is not None:
                self._learn(value, rule)
            return value
        try:
            if rule is None and mode == DISPLAY and self.policy.strict and value:
                rule = "strict"
            return self._text(value, rule, mode, False)
        except Exception:  # noqa: BLE001 - fail closed: never write a value we could not check
            self.errors += 1
            return self.token(value, "redaction_error")

    def data(self, value: bytes | bytearray, rule: str | None = None, *, mode: str = VALUE) -> bytes:
        """Redact bytes (scanned as latin-1 text, one character per byte); returns bytes."""
        if self.learning:
            if rule is not None:
                self._learn(bytes(value).decode("utf-8", "replace"), rule)
            return bytes(value)
        try:
            if rule is None and mode == DISPLAY and self.policy.strict and value:
                rule = "strict"
            text = bytes(value).decode("latin-1")
            out = self._text(text, rule, mode, True)
            return bytes(value) if out is text else out.encode("latin-1")
        except Exception:  # noqa: BLE001 - fail closed
            self.errors += 1
            return self.token(bytes(value), "redaction_error").encode()

    def cut_tail(self, value: str, *, latin1: bool = False) -> str:
        """A display string cut short: a remembered secret cut at its end is replaced too."""
        for secret, tok in (self._known_latin1 if latin1 else self._known).items():
            for k in range(min(len(secret) - 1, len(value)), MIN_REMEMBERED - 1, -1):
                if value.endswith(secret[:k]):
                    self.hits[_label(tok)] += 1
                    return value[: len(value) - k] + tok
        return value

    def _learn(self, value: str, rule: str) -> None:
        m = SCHEME_RE.match(value)
        if m:
            value = m.group(2).strip()
        self.remember(value, rule)

    def remember(self, secret: str, label: str) -> None:
        """Replace ``secret`` by its token wherever it appears from now on.

        Only text that cannot be an ordinary word or number is remembered (at least
        :data:`MIN_REMEMBERED` characters, not a short number, and only letters only from
        :data:`MIN_REMEMBERED_WORDS` characters) and never
        text that occurs in the application's own sources: replacing "password" in every SQL
        statement, or a literal of the code, would make replay ask for something else.
        """
        if (label == "strict" or len(secret) < MIN_REMEMBERED or secret in self._known
                or not_secret(secret, label)
                or (WORDS_RE.fullmatch(secret) and len(secret) < MIN_REMEMBERED_WORDS)
                or (secret.isdigit() and len(secret) < 9)
                or TOKEN_RE.fullmatch(secret) or _MASK.fullmatch(secret) or documentation_email(secret)
                or (self._allow_text is not None and self._allow_text(secret))):
            return
        tok = self.token(secret, label)
        self.hits[label] -= 1  # remembering is not a redaction
        self._known[secret] = tok
        with contextlib.suppress(UnicodeError):
            self._known_latin1[secret.encode("utf-8", "surrogatepass").decode("latin-1")] = tok
        self._order = self._order_latin1 = None

    def _remember_found(self, secret: str, label: str, latin1: bool) -> None:
        if latin1:
            try:
                secret = secret.encode("latin-1").decode("utf-8")
            except UnicodeError:
                return
        self.remember(secret, label)

    def _text(self, value: str, rule: str | None, mode: str, latin1: bool) -> str:
        if not value:
            return value
        known = self._known_latin1 if latin1 else self._known
        if known:
            tok = known.get(value)
            if tok is not None:
                self.hits[_label(tok)] += 1
                return tok
        if mode != CODE and len(value) > self.policy.scan_limit + _SCAN_SLACK:
            return self._bounded(value, rule, mode, latin1)
        text = self._substitute(value, known, latin1) if known else value
        out = self._scan(text, mode, latin1) if len(text) >= 7 or self.policy.patterns else text
        if rule is None or TOKEN_RE.fullmatch(value) or _MASK.fullmatch(value):
            return out  # not named, already a token, or already masked ("***")
        if rule in PII and documentation_email(value):
            return out  # an address at a documentation domain (RFC 2606) is nobody's
        if not_secret(value, rule):
            return out
        if "~redacted~" in out and not SCHEME_WORDS.sub("", TOKEN_RE.sub("", out)).strip(" \t\r\n=;:,\"'"):
            return out  # the secret parts are already tokens (e.g. "Bearer <token>")
        self._remember_found(value, rule, latin1)
        return self.token(value.encode("latin-1") if latin1 else value, rule)

    def _bounded(self, value: str, rule: str | None, mode: str, latin1: bool) -> str:
        """A value longer than the scan limit: its head scanned, its tail one token.

        A value bound to a secret name is replaced whole, as a short one is. Otherwise the
        head (up to the limit, cut back to a separator so a word straddling the limit goes
        whole into the tail) is redacted as any value, and the tail becomes
        ``~redacted~unscanned___~<hmac>~`` of exactly its length: a body keeps its framing
        (``Content-Length``), and replay's request matching takes the token for any text;
        a program whose behaviour depends on the tail's content does not reproduce. Remembered
        secrets of more than :data:`_CUT_BACKOFF` characters are replaced in the whole value
        first (they could span the cut); a shorter one cut at the end of the head is
        replaced too (:meth:`cut_tail`).
        """
        if rule is not None:
            return self.token(value.encode("latin-1") if latin1 else value, rule)
        known = self._known_latin1 if latin1 else self._known
        for secret in [s for s in known if len(s) > _CUT_BACKOFF]:
            if secret in value:
                self.hits[_label(known[secret])] += value.count(secret)
                value = value.replace(secret, known[secret])
        limit = self.policy.scan_limit
        cut = limit
        for m in _SEPARATORS.finditer(value, max(0, limit - _CUT_BACKOFF), limit):
            cut = m.end()
        head = self.cut_tail(self._text(value[:cut], None, mode, latin1), latin1=latin1)
        tail = value[cut:]
        digest = hmac.new(self._key, tail.encode("latin-1") if latin1 else tail.encode("utf-8", "surrogatepass"),
                          hashlib.sha256).hexdigest()[:8]
        pad = len(tail) - len(f"~redacted~{UNSCANNED}~{digest}~")
        self.hits[UNSCANNED] += 1
        return f"{head}~redacted~{UNSCANNED}{'_' * max(pad, 0)}~{digest}~"

    def _substitute(self, text: str, known: dict[str, str], latin1: bool) -> str:
        order = self._order_latin1 if latin1 else self._order
        if order is None:
            order = sorted(known, key=len, reverse=True)
            if latin1:
                self._order_latin1 = order
            else:
                self._order = order
        for secret in order:
            if secret in text:
                tok = known[secret]
                self.hits[_label(tok)] += text.count(secret)
                text = text.replace(secret, tok)
        return text

    def _scan(self, text: str, mode: str, latin1: bool) -> str:  # noqa: C901 - one pass over the rules
        spans: list[tuple[int, int, str]] = []
        # Prefilter (gitleaks' keyword idea): one regex finds every scanner keyword present;
        # only those scanners, the digit-shaped ones on text with enough digits, and the
        # custom ones run their own regex.
        words = set()
        for word in self._prefilter.findall(text):
            words.update(self._contained[word])  # "sk-ant-" also counts as "sk-"
        folded = self._prefilter_fold.findall(text.lower()) if self._fold_hint.search(text) else ()
        digits = len(text) - len(text.translate(_NO_DIGITS))
        for sc in self._scanners:
            if sc.keywords:
                hit = (not words.isdisjoint(sc.keywords)) if not sc.fold else bool(set(folded) & set(sc.keywords))
                if not hit:
                    continue
            if sc.min_digits and digits < sc.min_digits:
                continue
            if mode == CODE and sc.label in NOT_IN_CODE:
                continue
            group = "s" if "s" in sc.pattern.groupindex else (1 if sc.pattern.groups else 0)
            for m in sc.pattern.finditer(text):
                start, end = m.span(group)
                if start < 0 or end <= start:
                    continue
                secret = text[start:end]
                if sc.check is not None and not sc.check(secret):
                    continue
                if sc.pii and self._allow_text is not None and self._allow_text(secret):
                    continue
                spans.append((start, end, sc.label))
        if mode in (VALUE, DISPLAY):
            if "=" in text or ":" in text:
                spans.extend(self._pairs(text))
            if self.policy.entropy and len(text) >= ENTROPY_MIN_LENGTH:
                spans.extend(entropy_spans(text))
        if not spans:
            return text
        protected = [m.span() for m in TOKEN_RE.finditer(text)] if "~redacted~" in text else []
        spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
        out: list[str] = []
        pos = 0
        for start, end, label in spans:
            if start < pos or any(a < end and start < b for a, b in protected):
                continue
            secret = text[start:end]
            out.append(text[pos:start])
            out.append(self.token(secret.encode("latin-1") if latin1 else secret, label))
            self._remember_found(secret, label, latin1)
            pos = end
        if pos == 0:
            return text
        out.append(text[pos:])
        return "".join(out)

    def _pairs(self, text: str) -> list[tuple[int, int, str]]:
        """Values of ``name=value``, ``name: value`` and ``"name": "value"`` whose name is secret.

        Anchored on each ``:`` and ``=`` (found by one C scan) and read outwards, which is
        several times cheaper than a regex that tries every identifier.
        """
        found: list[tuple[int, int, str]] = []
        n = len(text)
        for sep_at in SEPARATOR_RE.finditer(text):
            i = sep_at.start()
            j = i
            while j > 0 and i - j < 4 and text[j - 1] in " \t\"'\\":
                j -= 1
            k = j
            while k > 0 and j - k < 64 and (text[k - 1].isalnum() or text[k - 1] in "_.-"):
                k -= 1
            if k == j or not (text[k].isalpha() or text[k] == "_"):
                continue
            rule = self.name_rule(text[k:j])
            if rule is None:
                continue
            start = i + 1
            while start < n and text[start] in " \t":
                start += 1
            if start < n and text[start] == "\\":
                start += 1
            quote = text[start] if start < n and text[start] in "\"'" else None
            if quote:
                start += 1
            if text.startswith("~redacted~", start):
                continue
            scheme = SCHEME_RE.match(text[start : start + 300])
            if scheme and not quote:
                start += scheme.start(2)
            end = start
            if quote:
                end = text.find(quote, start)
                end = n if end < 0 else end
                if end > start and text[end - 1] == "\\":
                    end -= 1
            else:
                while end < n and text[end] not in PAIR_END:
                    end += 1
            if end > start and not PLACEHOLDER.fullmatch(text[start:end]):
                found.append((start, end, rule))
        return found


def _prefilters(scanners: list[Scanner]) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Regexes that find the keywords of ``scanners`` (exact, and lower-cased for ``fold``)."""
    exact = sorted({k for s in scanners if not s.fold for k in s.keywords}, key=len, reverse=True)
    fold = sorted({k for s in scanners if s.fold for k in s.keywords}, key=len, reverse=True)
    never = r"(?!x)x"
    hint = "".join(sorted({k[0].lower() + k[0].upper() for k in fold}))
    return (re.compile("|".join(map(re.escape, exact)) or never), re.compile("|".join(map(re.escape, fold)) or never),
            re.compile(f"[{re.escape(hint)}]" if hint else never))


def _label(token: str) -> str:
    return token[10 : token.rindex("~", 0, -1)]


def argument_names(code: Any, count: int) -> list[str | None]:
    """Parameter names of ``count`` positional arguments of a call of ``code`` (None: unknown)."""
    names: list[str | None] = []
    try:
        varnames = code.co_varnames
        n_pos = code.co_argcount
        star = varnames[n_pos + code.co_kwonlyargcount] if code.co_flags & 0x04 else None
        for i in range(count):
            names.append(varnames[i] if i < n_pos else star)
    except Exception:  # noqa: BLE001 - names are a hint; values are still scanned
        return [None] * count
    return names
