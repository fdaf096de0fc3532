"""Redaction rules: secret names, value scanners and their validators (stdlib only).

The tables are the union of Sentry's, Datadog's, Relay's, detect-secrets' and gitleaks'
defaults (research: anchors-capture-security.md sections 3, 4, 8 and 10.3), stricter than
each: names match by normalised substring, values by provider token shapes plus checksums
where the format has one (Luhn for cards, mod 97 for IBANs). :mod:`replay.capture.redact`
applies them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

TOKEN_RE: Final = re.compile(r"~redacted~[a-z0-9_]+~[0-9a-f]{8}~")
"""A token. Only RFC 3986 unreserved characters, so URL quoting, form and JSON encoding
leave it unchanged: a replayed program that sends a token it was served sends exactly the
text the recording holds."""
SCHEME_RE: Final = re.compile(r"(?i)^\s*(bearer|basic|token|digest|negotiate)\s+(\S.*)$", re.S)

CONTAINS: Final = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "apikey", "accesskey", "privatekey",
    "secretkey", "clientsecret", "credential", "auth", "cookie", "session", "sessid", "csrf", "xsrf",
    "signature", "bearer", "jwt", "connectionstring", "databaseurl", "dburl", "dsn", "encryptionkey",
    "masterkey", "licensekey", "sshkey", "gpgkey", "pgpkey", "pemfile", "pkcs8", "certificatepin",
    "securityanswer", "securityquestion", "securitycode", "creditcard", "ccnumber", "cardnumber",
    "routingnumber", "accountnumber", "iban", "mysqlpwd", "authkey", "servicekey", "accountkey",
    "dbkey", "databasekey", "privkey", "clientkey", "dbpass", "databasepass", "keypass", "contrasena",
    "contraseña", "recaptchakey", "appkey", "applicationkey", "signingkey", "webhookkey",
)
"""Normalised names that redact a value when they occur anywhere in its name."""
EQUALS: Final = (
    "pin", "pincode", "otp", "2fa", "twofactor", "ssn", "cvv", "cvc", "cvv2", "salt", "nonce", "jti",
    "cipher", "pass", "pw", "symfony", "phpsessid", "connectsid", "voterid",
)
"""Normalised names that redact a value only when they are the whole name."""
PII: Final = ("ipaddress", "remoteaddr", "xforwardedfor", "xrealip", "forwarded", "geolocation", "email",
              "clientip", "userip", "phonenumber", "phone", "dateofbirth", "dob")
"""Names of personal data, redacted unless ``configure(pii=False)``."""
EXCLUDED: Final = ("pwd", "oldpwd", "author", "authors", "authored", "authority", "authorname", "authorid", "tokenizer",
                   "tokenize", "tokenized", "tokens", "tokencount", "maxtokens", "pinned", "sessionlength")
"""Normalised names that look secret but are not (Datadog's excluded identifiers)."""
NUMERIC: Final = frozenset({"pin", "pincode", "otp", "2fa", "cvv", "cvc", "cvv2", "ssn", "cardnumber",
                            "creditcard", "ccnumber", "accountnumber", "routingnumber", "securitycode"})
"""Names whose ``int`` values are redacted too (other ints stay: they drive control flow)."""

MIN_REMEMBERED: Final = 6
# a named secret made of words only ("matrix-secret-value") is hunted elsewhere from this
# length on: shorter ones are too likely to be ordinary text
MIN_REMEMBERED_WORDS: Final = 12
"""Shortest remembered secret replaced inside longer text (shorter: only whole values)."""
ENTROPY_MIN_LENGTH: Final = 20
ENTROPY_BITS: Final = 4.5
"""High-entropy words: at least 20 characters of ``[A-Za-z0-9+/=_-]`` with a digit and a
letter and at least ``min(4.5, 0.85 * log2(length))`` bits per character. 4.5 is
detect-secrets' base64 limit; alone it misses a third of random 32-character tokens (the
entropy of a short string cannot reach it), hence the length-aware bound, which catches
about 98% of random alphanumeric tokens of 20-40 characters. Pure hex words (SHAs,
digests, UUIDs) and path-like words (two or more lower-case ``/`` segments) are never
redacted by entropy alone."""


def entropy_threshold(length: int) -> float:
    """Bits per character a word of ``length`` characters needs to count as high-entropy."""
    return min(ENTROPY_BITS, 0.85 * math.log2(max(length, 2)))


# ------------------------------------------------------------------------------ scanners


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (issuer prefix, lengths) of the card brands (ISO/IEC 7812 ranges as the networks publish
# them): Visa, Mastercard (51-55, 2221-2720), Amex, Diners, Discover/UnionPay, JCB.
_CARD_BRANDS: Final = (
    (re.compile(r"4"), frozenset({13, 16, 19})),
    (re.compile(r"5[1-5]|2(?:2[2-9]|[3-6]|7[0-2])"), frozenset({16})),
    (re.compile(r"3[47]"), frozenset({15})),
    (re.compile(r"3(?:0[0-5]|[689])"), frozenset(range(14, 20))),
    (re.compile(r"6011|64[4-9]|65|62"), frozenset(range(16, 20))),
    (re.compile(r"35(?:2[89]|[3-8])"), frozenset(range(16, 20))),
)


def _card(text: str) -> bool:
    """A card number: a brand's prefix and length, and the Luhn check. Digits written without
    separators must be 15 or 16 long (Amex, and everything else): clock readings in
    nanoseconds or milliseconds (19, 13 digits) pass Luhn one time in ten."""
    digits = re.sub(r"[ -]", "", text)
    if len(digits) == len(text) and len(digits) not in (15, 16):
        return False
    return any(p.match(digits) and len(digits) in lengths for p, lengths in _CARD_BRANDS) and _luhn(digits)


def _iban(text: str) -> bool:
    s = text.replace(" ", "")
    s = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in s)) % 97 == 1
    except ValueError:
        return False


_EXAMPLE_DOMAIN: Final = re.compile(r"(?i)@(?:[\w-]+\.)*(?:example\.(?:com|org|net)|[\w-]+\.(?:test|example|invalid|localhost))$")


def _personal_email(text: str) -> bool:
    """Not an address at a domain reserved for documentation and tests (RFC 2606)."""
    return _EXAMPLE_DOMAIN.search(text) is None


def documentation_email(text: str) -> bool:
    """True for an e-mail address at a documentation domain (PII name rules keep it)."""
    return "@" in text and not _personal_email(text)


FLAGS: Final = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "nil", "undefined", "*"})
"""Values a secret name may hold that are nobody's secret (``Access-Control-Allow-Credentials:
true``): left as they are, so a replayed response that says the same matches."""
ADDRESS_NAMES: Final = frozenset({"ipaddress", "remoteaddr", "xforwardedfor", "xrealip", "clientip", "userip"})


def not_secret(value: str, rule: str) -> bool:
    """Whether a value held under a secret or personal-data name is nobody's secret: a flag
    (:data:`FLAGS`), or under an address name (:data:`ADDRESS_NAMES`) addresses that identify
    no one (loopback, private, link-local: ``127.0.0.1``, ``10.0.0.7, ::1``)."""
    text = value.strip().lower()
    if text in FLAGS:
        return True
    if rule in ADDRESS_NAMES and text:
        try:
            return not any(ipaddress.ip_address(p.strip()).is_global for p in text.split(","))
        except ValueError:
            return False
    return False


def _public_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_global
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Scanner:
    """One value scanner.

    Attributes:
        label: Rule name, used in tokens and the manifest.
        pattern: Compiled regex; group ``s`` (else the whole match) is the secret.
        keywords: Literal prefilter: the regex runs only if one of them is in the text
            (lower-cased when ``fold``). Empty: always runs.
        check: Validator of the secret text (Luhn, mod 97, ...), or None.
        pii: Personal data (skipped with ``configure(pii=False)``).
        fold: Compare ``keywords`` with the lower-cased text.
        min_digits: The regex runs only if the text has at least this many digits.
    """

    label: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...] = ()
    check: Callable[[str], bool] | None = None
    pii: bool = False
    fold: bool = False
    min_digits: int = 0


def _s(label: str, regex: str, keywords: Iterable[str] = (), check: Callable[[str], bool] | None = None,
       pii: bool = False, fold: bool = False, digits: int = 0) -> Scanner:
    return Scanner(label, re.compile(regex), tuple(keywords), check, pii, fold, digits)


SCANNERS: Final = (
    _s("pem_private_key", r"(?s)-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----.*?"
       r"(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\Z)", ["PRIVATE KEY"]),
    _s("putty_private_key", r"(?s)PuTTY-User-Key-File-\d.*?(?:Private-MAC: [0-9a-f]+|\Z)", ["PuTTY"]),
    _s("aws_access_key", r"(?<![A-Z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
       ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"]),
    _s("aws_secret_key", r"(?i)aws.{0,24}?(?:secret|key|token).{0,24}?[\"'=:\s]+(?P<s>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
       ["aws"], fold=True),
    _s("github_token", r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}",
       ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
    _s("gitlab_token", r"\bgl(?:pat|dt|rt|ptt|ft|imt|cbt|soat|oas|wt)-[A-Za-z0-9_\-]{20,}", ["glpat-", "gldt-", "glrt-", "glptt-", "glft-", "glimt-", "glcbt-", "glsoat-", "gloas-", "glwt-"]),
    _s("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}|hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_+-]+",
       ["xox", "hooks.slack.com"]),
    _s("stripe_key", r"\b(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{16,}|\bwhsec_[A-Za-z0-9]{24,}",
       ["k_live_", "k_test_", "k_prod_", "whsec_"]),
    _s("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}|\bGOCSPX-[A-Za-z0-9_\-]{20,}|\bya29\.[0-9A-Za-z_\-]{20,}",
       ["AIza", "GOCSPX-", "ya29."]),
    _s("anthropic_key", r"\bsk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_\-]{20,}", ["sk-ant-"]),
    _s("openai_key", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}", ["sk-"]),
    _s("twilio_key", r"\b(?:SK|AC)[0-9a-f]{32}\b", ["SK", "AC"]),
    _s("sendgrid_key", r"\bSG\.[A-Za-z0-9_\-]{16,32}\.[A-Za-z0-9_\-]{16,64}", ["SG."]),
    _s("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b", ["npm_"]),
    _s("pypi_token", r"\bpypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{20,}", ["pypi-"]),
    _s("vault_token", r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,}", ["hvs.", "hvb.", "hvr."]),
    _s("digitalocean_token", r"\bdo[opr]_v1_[a-f0-9]{64}\b", ["_v1_"]),
    _s("shopify_token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b", ["shp"]),
    _s("huggingface_token", r"\bhf_[A-Za-z0-9]{34,}\b", ["hf_"]),
    _s("mailgun_key", r"\bkey-[0-9a-f]{32}\b", ["key-"]),
    _s("mailchimp_key", r"\b[0-9a-f]{32}-us\d{1,2}\b", ["-us"]),
    _s("square_token", r"\bsq0(?:atp|csp)-[0-9A-Za-z_\-]{22,43}|\bEAAA[A-Za-z0-9_\-]{60}", ["sq0", "EAAA"]),
    _s("telegram_token", r"\b\d{8,10}:AA[0-9A-Za-z_\-]{33}\b", [":AA"], digits=8),
    _s("databricks_token", r"\bdapi[a-f0-9]{32}\b", ["dapi"]),
    _s("newrelic_key", r"\bNRAK-[A-Z0-9]{27}\b", ["NRAK-"]),
    _s("azure_storage_key", r"AccountKey=(?P<s>[A-Za-z0-9+/=]{40,})", ["AccountKey="]),
    _s("jwt", r"\beyJ[A-Za-z0-9_-]{10,}\.?[A-Za-z0-9_-]*\.?[A-Za-z0-9_\-+/=]*", ["eyJ"]),
    _s("auth_credentials", r"(?i)\b(?:bearer|basic)\s+(?P<s>[A-Za-z0-9\-._~+/]{8,}=*)", ["bearer", "basic"], fold=True),
    _s("url_credentials", r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s\"']+:(?P<s>[^@/?#\s\"']+)@", ["://"]),
    _s("url_credentials", r"[a-zA-Z][a-zA-Z0-9+.\-]*://(?P<s>[A-Za-z0-9_\-]{16,})@", ["://"]),
    _s("card_number", r"(?<![\d-])(?<!\d[.,])(?P<s>\d{13,19}|\d{4}(?P<a>[ -])\d{4}(?P=a)\d{4}(?P=a)\d{1,7}|\d{4}(?P<b>[ -])\d{6}(?P=b)\d{4,5})(?![\d-]|[.,]\d)",
       (), _card, digits=13),
    _s("us_ssn", r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])", ["-"], digits=9),
    _s("iban", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", (), _iban, digits=8),
    _s("email", r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", ["@"], _personal_email, pii=True),
    _s("ip_address", r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])", ["."], _public_ip, pii=True, digits=4),
)
"""The default value scanners, most specific first (an earlier match wins an overlap)."""

# ``name = value``, ``name: value``, ``"name": "value"``, ``name=value&`` inside text.
SEPARATOR_RE: Final = re.compile(r"[:=]")
PAIR_END: Final = frozenset(" \t\r\n&;,<>{}[]()\"'\\")
_ENTROPY_WORD: Final = re.compile(r"[A-Za-z0-9+/=_\-]{20,}")
_HEX_WORD: Final = re.compile(r"[0-9a-fA-F\-]+")
_DIGIT: Final = re.compile(r"\d")
WORDS_RE: Final = re.compile(r"[A-Za-z]+(?:[ _-][A-Za-z]+)*")
SCHEME_WORDS: Final = re.compile(r"(?i)\b(?:bearer|basic|token|digest|negotiate)\b")
PLACEHOLDER: Final = re.compile(r"\?|%s|%\([A-Za-z_]\w*\)s|:[A-Za-z_]\w*|\$\d+|None|null|true|false")
NOT_IN_CODE: Final = frozenset({"card_number", "us_ssn", "iban", "email", "ip_address", "auth_credentials"})
VALUE: Final = "value"
DISPLAY: Final = "display"
SQL: Final = "sql"
CODE: Final = "code"
_ALPHA: Final = re.compile(r"[A-Za-z]")
_PATH_SEGMENT: Final = re.compile(r"(?:^|/)[a-z]{3,}(?=/|$)")


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` (0.0 for an empty string)."""
    n = len(text)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def normalise(name: str) -> str:
    """A name as the rules see it: lower case without ``_``, ``-``, ``.`` and spaces."""
    return name.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")



def entropy_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, "high_entropy")`` of the high-entropy words of ``text``."""
    found = []
    for m in _ENTROPY_WORD.finditer(text):
        word = m.group()
        if _HEX_WORD.fullmatch(word) or not _DIGIT.search(word) or not _ALPHA.search(word):
            continue
        if "/" in word and len(_PATH_SEGMENT.findall(word)) >= 2:
            continue
        if shannon_entropy(word) >= entropy_threshold(len(word)):
            found.append((m.start(), m.end(), "high_entropy"))
    return found


_TOKEN_BYTES: Final = b"~redacted~"


def _wildcard(recorded: str) -> re.Pattern[str]:
    parts = TOKEN_RE.split(recorded)
    return re.compile("(?s:.+?)".join(re.escape(p) for p in parts))


def redacted_match(recorded: Any, asked: Any) -> bool:
    """True when ``asked`` equals ``recorded`` except where ``recorded`` holds tokens.

    Used by replay to match a request the replayed program sends against a recorded one
    whose secrets were redacted: each token matches any non-empty text. Both are codec
    nodes (nested lists, str, bytes, numbers).
    """
    tr = type(recorded)
    if tr is str:
        return type(asked) is str and (recorded == asked or (
            "~redacted~" in recorded and _wildcard(recorded).fullmatch(asked) is not None))
    if tr is bytes or tr is bytearray:
        if type(asked) not in (bytes, bytearray):
            return False
        if recorded == asked:
            return True
        return _TOKEN_BYTES in recorded and _wildcard(bytes(recorded).decode("latin-1")).fullmatch(
            bytes(asked).decode("latin-1")) is not None
    if tr is list or tr is tuple:
        return (type(asked) in (list, tuple) and len(asked) == len(recorded)
                and all(redacted_match(r, a) for r, a in zip(recorded, asked, strict=True)))
    if tr is dict:
        return (type(asked) is dict and recorded.keys() == asked.keys()
                and all(redacted_match(v, asked[k]) for k, v in recorded.items()))
    return bool(recorded == asked)
