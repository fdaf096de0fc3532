"""Redaction: name rules, value scanners, tokens, remembered secrets, record walking."""

from __future__ import annotations

import gzip
import http.client
import io
import re

import pytest

from replay.capture import redact
from replay.capture.redact import Redactor, configure, policy_from_environment, secret_name
from replay.capture.redact_records import (
    NodeWalker,
    http_response,
    redact_snapshot,
    sql_parameter_names,
)
from replay.capture.redact_rules import TOKEN_RE, redacted_match, shannon_entropy
from replay.snapshot.codec import DISPLAY, Encoder, decode

# One fake secret per scanner (none of them is a real credential).
SHAPED = {
    "aws_access_key": "AKIAZ7QX2LMN4PRS8TUV",
    "aws_secret_key": 'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq7Xb9Kd3e"',
    "github_token": "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
    "gitlab_token": "glpat-" + "xY7zQ2wE4rT6yU8iO0pA",
    "slack_token": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack_webhook": "https://hooks.slack.com/services/T0000AAAA/B0000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX",
    "stripe_key": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "google_api_key": "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
    "anthropic_key": "sk-ant-api03-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0EdCbA",
    "openai_key": "sk-proj-" + "Q2w3E4r5T6y7U8i9O0pAsDfGhJkL",
    "twilio_key": "SK" + "0123456789abcdef0123456789abcdef",
    "sendgrid_key": "SG." + "abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
    "npm_token": "npm_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    "pypi_token": "pypi-AgEIcHlwaS5vcmc" + "CJGE4ZTZhN2E0LTk5ZjgtNGQ5Mi1hZjI1LWQ1",
    "vault_token": "hvs." + "CAESIJ1k2l3m4n5o6p7q8r9s0tUVWXYZ",
    "huggingface_token": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "pem_private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Zq\n-----END RSA PRIVATE KEY-----",
    "auth_credentials": "Authorization: Bearer Zm9vYmFyYmF6cXV4MTIz",
    "url_credentials": "postgres://app:S3cr3t-Pa55@db.internal:5432/app",
    "card_number": "4111 1111 1111 1111",
    "us_ssn": "123-45-6789",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "email": "jane.doe@mailbox-corp.net",
    "ip_address": "203.0.113.77" if False else "8.8.4.4",
    "telegram_token": "123456789:AA" + "Hk3j4k5l6m7n8o9p0q1r2s3t4u5v6w7x8y9",
    "high_entropy": "Zq8v1Lm3Np0Rt7Yw2Xc5Vb9Kd4Hg6Js",
}
# The part of each sample that must disappear.
SECRET_PART = {
    "aws_secret_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq7Xb9Kd3e",
    "auth_credentials": "Zm9vYmFyYmF6cXV4MTIz",
    "url_credentials": "S3cr3t-Pa55",
    "pem_private_key": "MIIEowIBAAKCAQEA7Zq",
}


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REPLAY_REDACT", "REPLAY_REDACT_NAMES", "REPLAY_REDACT_PATTERNS"):
        monkeypatch.delenv(var, raising=False)
    redact.reset()
    yield
    redact.reset()


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", ["password", "DB_PASSWORD", "x-api-key", "Authorization", "Set-Cookie", "sessionid",
                                  "client_secret", "stripeToken", "pin", "CVV", "ssn", "private.key", "email",
                                  "X-Forwarded-For", "aws_secret_access_key", "credit_card_number"])
def test_secret_names(name: str) -> None:
    assert secret_name(name) is not None


@pytest.mark.parametrize("name", ["author", "user", "name", "amount", "PWD", "pinned", "max_tokens", "keyboard",
                                  "description", "status", "path", "pineapple"])
def test_ordinary_names(name: str) -> None:
    assert secret_name(name) is None


def test_configure_names_allow_and_pii() -> None:
    configure(names=["customer_ref"], allow=["session"])
    assert secret_name("CustomerRef") == "customerref"
    assert secret_name("session") is None
    configure(pii=False)
    assert secret_name("email") is None
    with pytest.raises(ValueError, match="redaction pattern"):
        configure(patterns=["(unclosed"])


def test_environment_adds_rules_and_cannot_turn_redaction_off() -> None:
    before = redact.counters().get("off_refused", 0)
    policy = policy_from_environment(redact.Policy(), {"REPLAY_REDACT": "off", "REPLAY_REDACT_NAMES": "acct_no, ref",
                                                       "REPLAY_REDACT_PATTERNS": '["ORD-\\\\d{6}"]'})
    assert policy.enabled and policy.names == ("acct_no", "ref") and policy.patterns == ("ORD-\\d{6}",)
    assert redact.counters()["off_refused"] == before + 1
    assert policy_from_environment(redact.Policy(), {"REPLAY_REDACT": "strict"}).strict


# ------------------------------------------------------------------------------ scanners


@pytest.mark.parametrize("kind", sorted(SHAPED))
def test_scanners_find_each_kind(kind: str) -> None:
    sample = SHAPED[kind]
    text = f"before {sample} after"
    out = Redactor().text(text)
    assert SECRET_PART.get(kind, sample) not in out
    assert TOKEN_RE.search(out) and out.startswith("before ") and out.endswith(" after")


@pytest.mark.parametrize("text", [
    "550e8400-e29b-41d4-a716-446655440000",              # uuid
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",          # git sha
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # sha256
    "version 3.11.7 of python, build 2026.11.20",
    "The quick brown fox jumps over the lazy dog again and again",
    "/usr/lib/python3.11/site-packages/replay/capture/redact.py",
    "SELECT name, total FROM orders WHERE id = ? AND status = 'open'",
    "http://127.0.0.1:8080/api/v1/orders?page=2&sort=created_at",
    "order 4111 1111 1111 1112 was refused",              # fails the Luhn check
    "timestamp 1795308800378357616 ns",                    # 19 digits, no card prefix
    "        23 24 25 26 27 28 29",                        # a calendar line (Luhn-valid by chance)
    "ThisIsAVeryLongCamelCaseIdentifierWithoutDigits",
    "GET /api/v1/orders/12345/items",
    "mail support@example.com or ops@build.test",       # RFC 2606 documentation domains
])
def test_no_false_positives_on_ordinary_data(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.parametrize("text", [
    "system 0.3792823205794713 3313101195",  # a float's digits are not a card number
    "x 12.4111111111111111",
    "monotonic 36000000000008 ns",  # Luhn-valid, a Diners prefix, but 14 digits unseparated
    "epoch ms 4000000000006",       # Luhn-valid, a Visa prefix, but 13 digits unseparated
])
def test_digits_inside_numbers_are_not_cards(text: str) -> None:
    assert Redactor().text(text) == text


def test_flags_and_addresses_that_identify_no_one_stay_under_secret_names() -> None:
    r = Redactor()
    assert r.text("true", r.name_rule("Access-Control-Allow-Credentials")) == "true"
    assert r.text("127.0.0.1", r.name_rule("REMOTE_ADDR")) == "127.0.0.1"
    assert r.text("10.0.0.7, ::1", r.name_rule("X-Forwarded-For")) == "10.0.0.7, ::1"
    assert TOKEN_RE.fullmatch(r.text("8.8.4.4", r.name_rule("REMOTE_ADDR")))
    r.learning = True  # a loopback address under an address name is not hunted elsewhere
    r.text("127.0.0.1", r.name_rule("REMOTE_ADDR"))
    r.learning = False
    assert r.text("Host: 127.0.0.1:8080") == "Host: 127.0.0.1:8080"


def test_a_long_named_secret_made_of_words_is_hunted_elsewhere() -> None:
    r = Redactor()
    r.learning = True
    r.text("matrix-secret-value", r.name_rule("API_TOKEN"))
    r.text("blue-sky", r.name_rule("API_TOKEN"))  # short word-only values: too likely ordinary
    r.learning = False
    out = r.text("env matrix-secret-value blue-sky")
    assert "matrix-secret-value" not in out and "blue-sky" in out


def test_luhn_and_iban_checks() -> None:
    r = Redactor()
    assert "5500" not in r.text("card 5500-0000-0000-0004 ok")
    assert r.text("card 5500-0000-0000-0005 ok") == "card 5500-0000-0000-0005 ok"
    assert r.text("iban GB82 WEST 1234 5698 7654 33") == "iban GB82 WEST 1234 5698 7654 33"


def test_entropy_threshold_and_hex_exemption() -> None:
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0
    r = Redactor()
    assert "high_entropy" in r.text("k=Zq8v1Lm3Np0Rt7Yw2Xc5Vb9Kd4Hg6Js")
    assert "high_entropy" in r.text("id q7Xk2mPz9LwR4tYb8NcV")  # 20 characters: the length-aware bound
    assert r.text("0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"
    configure(entropy=False)
    assert Redactor().text("x Zq8v1Lm3Np0Rt7Yw2Xc5Vb9Kd4Hg6Js") == "x Zq8v1Lm3Np0Rt7Yw2Xc5Vb9Kd4Hg6Js"


def test_name_value_pairs_inside_text() -> None:
    r = Redactor()
    out = r.text('{"password": "a b c", "user": "bob"} and api_key=K9x&page=2; Cookie: sessionid=abc123')
    assert "a b c" not in out and "K9x" not in out and "abc123" not in out
    assert '"user": "bob"' in out and "page=2" in out
    assert r.text("UPDATE users SET password = ? WHERE id = ?", mode=redact.SQL) == \
        "UPDATE users SET password = ? WHERE id = ?"


def test_custom_patterns_run_on_short_values_too() -> None:
    configure(patterns=[r"ORD-(\d{6})"])
    out = Redactor().text("ORD-123456")
    assert out.startswith("ORD-~redacted~custom_1~")


# ------------------------------------------------------------------------------ tokens


def test_tokens_are_keyed_equal_within_a_redactor_and_differ_across_keys() -> None:
    a = Redactor()
    t1, t2 = a.text("x AKIAZ7QX2LMN4PRS8TUV"), a.text("y AKIAZ7QX2LMN4PRS8TUV")
    assert t1[2:] == t2[2:]
    b = Redactor(key=b"another key")
    assert b.text("x AKIAZ7QX2LMN4PRS8TUV") != t1
    assert re.fullmatch(r"x ~redacted~aws_access_key~[0-9a-f]{8}~", t1)


def test_bytes_stay_bytes_with_the_same_token_as_str() -> None:
    r = Redactor()
    s = r.text("k sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    b = r.data(b"k sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    assert type(b) is bytes and b.decode() == s
    assert r.data(bytearray(b"plain bytes here")) == b"plain bytes here"


def test_name_bound_values_are_remembered_everywhere() -> None:
    r = Redactor()
    whole = r.text("hunter22!", "password")
    assert TOKEN_RE.fullmatch(whole)
    assert r.text("login failed for hunter22! today") == f"login failed for {whole} today"
    assert r.data(b"pw=hunter22!") == f"pw={whole}".encode()
    assert TOKEN_RE.fullmatch(r.text("abc", "pin"))  # short: replaced where named ...
    assert r.text("abc def") == "abc def"  # ... but not hunted inside other text


def test_scheme_is_kept_and_credential_matches_the_remembered_secret() -> None:
    r = Redactor()
    env_token = r.text("Zx81Qw72Er63Ty54", r.name_rule("API_TOKEN"))
    assert r.text("Bearer Zx81Qw72Er63Ty54", r.name_rule("Authorization")) == f"Bearer {env_token}"
    assert TOKEN_RE.fullmatch(Redactor().text("x", "Weird Label!"))


def test_numeric_secrets_keep_digits() -> None:
    r = Redactor()
    out = r.integer(4111111111111111, "cardnumber")
    assert out != 4111111111111111 and len(str(out)) == 16
    assert r.integer(4111111111111111, "cardnumber") == out


def test_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Redactor()

    def boom(*_a: object) -> str:
        raise RuntimeError("scanner bug")

    monkeypatch.setattr(r, "_scan", boom)
    out = r.text("some value with a secret maybe")
    assert TOKEN_RE.fullmatch(out) and "redaction_error" in out and r.errors == 1
    assert TOKEN_RE.fullmatch(r.data(b"some bytes value here").decode())


def test_strict_mode_replaces_display_values_only() -> None:
    configure(strict=True)
    r = Redactor()
    assert TOKEN_RE.fullmatch(r.text("plain local", mode=redact.DISPLAY))
    assert r.text("plain local") == "plain local"


# ------------------------------------------------------------------------------ records


class Account:
    def __init__(self) -> None:
        self.owner = "jane"
        self.api_key = "k-1234567890abcdef"
        self.history = [{"token": "tok-aaaaaaaa", "amount": 5}]


def test_node_walker_names_at_every_depth_keep_shape() -> None:
    shared = {"secret": "s3cr3t-value-1"}
    value = {"acct": Account(), "pair": ("password", "p4ss-w0rd-x"), "a": shared, "b": shared,
             "exc": ValueError("bad key k-1234567890abcdef"), "blob": b"Bearer Zm9vYmFyYmF6cXV4MTIz"}
    node = Encoder().encode(value)
    w = NodeWalker(Redactor())
    w.r.learning = True
    w.node(node)
    w.r.learning = False
    out = w.node(node)
    text = repr(out)
    for secret in ("k-1234567890abcdef", "tok-aaaaaaaa", "p4ss-w0rd-x", "s3cr3t-value-1", "Zm9vYmFyYmF6cXV4MTIz"):
        assert secret not in text
    back = decode(out)  # still a valid node tree: ids and back-references intact
    assert back["a"] is back["b"] and back["acct"]["owner"] if isinstance(back["acct"], dict) else True
    assert "jane" in text and "'amount', 5" in text


def test_display_cut_string_hides_a_secret_cut_in_half() -> None:
    w = NodeWalker(Redactor())
    w.r.remember("Qm9vYmFyYmF6cXV4MTIzNDU2", "token")
    node = Encoder(DISPLAY).encode("x" * 190 + "Qm9vYmFyYmF6cXV4MTIzNDU2")
    assert node[0] == "S"
    out = w.node(node)
    assert "Qm9vYmFy" not in repr(out)


def test_sql_parameter_names() -> None:
    assert sql_parameter_names("INSERT INTO u (name, password) VALUES (?, ?)") == ["name", "password"]
    assert sql_parameter_names("UPDATE u SET token = %s WHERE u.id = %s") == ["token", "id"]
    assert sql_parameter_names("SELECT * FROM u WHERE a IN (?) AND f(?) > 1") == ["a", None]


def _parse(raw: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    class Sock:
        def makefile(self, *_a: object, **_k: object) -> io.BytesIO:
            return io.BytesIO(raw)

    resp = http.client.HTTPResponse(Sock())  # type: ignore[arg-type]
    resp.begin()
    return resp, resp.read()


def test_http_response_is_reframed_when_redacted() -> None:
    body = gzip.compress(b'{"access_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlMTIzNDU2"}')
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    raw = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
           b"Set-Cookie: sessionid=abc123xyz; Path=/\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    out = http_response(NodeWalker(Redactor()), raw)
    resp, got = _parse(out)
    plain = gzip.decompress(got)
    assert b"eyJhbGci" not in plain and b"access_token" in plain
    assert "abc123xyz" not in resp.getheader("Set-Cookie") and resp.getheader("Transfer-Encoding") is None
    unchanged = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert http_response(NodeWalker(Redactor()), unchanged) is unchanged


def test_redacted_match() -> None:
    rec = ["t", "POST", "http://h:80/x?key=~redacted~stripe_key~0a1b2c3d~", b'{"pw": "~redacted~pw~01234567~"}']
    assert redacted_match(rec, ["t", "POST", "http://h:80/x?key=anything", b'{"pw": "hunter2"}'])
    assert not redacted_match(rec, ["t", "POST", "http://h:80/y?key=anything", b'{"pw": "hunter2"}'])
    assert not redacted_match(rec, ["t", "POST", "http://h:80/x?key=", b'{"pw": "x"}'])  # a token is never empty


def test_redact_snapshot_two_passes_and_manifest() -> None:
    entry = {"module": "m", "qualname": "f", "args": ["l", "see Zk81Qw72Er63Ty54ab here"], "kwargs": ["d"],
             "arg_names": ["note"]}
    tape = [["env", "environ.get", ["t", "SERVICE_TOKEN"], "Zk81Qw72Er63Ty54ab", None],
            ["random", "os.urandom", ["t", 8], b"Zk81Qw72", None]]
    outcome = {"kind": "exception", "type": "builtins:ValueError", "message": "token Zk81Qw72Er63Ty54ab refused",
               "value": ["exc", "builtins:ValueError", ["token Zk81Qw72Er63Ty54ab refused"], "x", []], "traceback": []}
    red = redact_snapshot(entry=entry, tape=tape, outcome=outcome, environment={"environ": {}}, code=[])
    assert "Zk81Qw72Er63Ty54ab" not in repr((red.entry, red.tape, red.outcome))
    token = red.tape[0][3]
    assert token in red.entry["args"][1] and token in red.outcome["message"]
    assert red.tape[1][3] == b"Zk81Qw72"  # random bytes are never touched
    assert red.manifest["enabled"] and red.manifest["hits"]["token"] >= 3
    assert "Zk81" not in repr(red.manifest)
