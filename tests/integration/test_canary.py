"""The redaction canary corpus: unique fake secrets of 40+ kinds, planted everywhere a real
program can hold them, recorded with ``replay.capture`` in a fresh process (real HTTP to a
loopback server, a real sqlite file, real environment variables, a real config file).

No byte of any canary may be in any written file: the raw file, every decompressed frame,
the header, the file name, or what the recording process logged. The snapshot must still
replay to the recorded outcome (requests that carried secrets match their tokens), and
``replay redact`` must apply extra rules to it and keep it replayable.
"""

from __future__ import annotations

import base64
import json
import random
import sqlite3
import string
import sys
from pathlib import Path

import pytest
import zstandard

from replay.cli import main
from replay.snapshot.reader import SnapshotFile
from replay.verify import reproduce
from tests.conftest import App, run_recording

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "channels"))
from http_server import LoopbackServer  # noqa: E402

_rng = random.Random()  # fresh canaries each run: nothing here can be memorised by a rule


def _r(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _hex(n: int) -> str:
    return _r(n, "0123456789abcdef")


def _luhn_card() -> str:
    digits = [4] + [_rng.randrange(10) for _ in range(14)]
    total = sum(d if i % 2 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def _iban() -> str:
    bban = "WEST" + "".join(str(_rng.randrange(10)) for _ in range(14))
    n = int("".join(str(int(c, 36)) for c in bban + "GB00"))
    return f"GB{98 - n % 97:02d}{bban}"


def _high_entropy() -> str:
    """A random token the entropy rule is specified to catch (docs/redaction.md): about 2%
    of random 36-character tokens fall under the bound and are drawn again."""
    from replay.capture.redact_rules import entropy_spans

    while True:
        token = _r(36)
        if entropy_spans(token):
            return token


def make_canaries() -> dict[str, str]:
    """Canary kind -> the secret text (each with a random part no rule can know)."""
    return {
        "aws_access_key": "AKIA" + _r(16, string.ascii_uppercase + string.digits),
        "aws_secret_key": _r(40, string.ascii_letters + string.digits + "/+"),
        "github_token": "ghp_" + _r(36),
        "github_pat": "github_pat_" + _r(22) + "_" + _r(59),
        "gitlab_token": "glpat-" + _r(20),
        "slack_token": f"xoxb-{_r(10, string.digits)}-{_r(12, string.digits)}-{_r(24)}",
        "slack_webhook": f"https://hooks.slack.com/services/T{_r(8)}/B{_r(8)}/{_r(24)}",
        "stripe_secret": "sk_live_" + _r(24),
        "stripe_restricted": "rk_live_" + _r(24),
        "stripe_webhook": "whsec_" + _r(32),
        "google_api_key": "AIza" + _r(35),
        "openai_key": "sk-proj-" + _r(48),
        "anthropic_key": "sk-ant-api03-" + _r(80),
        "twilio_key": "SK" + _hex(32),
        "sendgrid_key": f"SG.{_r(22)}.{_r(43)}",
        "npm_token": "npm_" + _r(36),
        "pypi_token": "pypi-AgEIcHlwaS5vcmc" + _r(60),
        "vault_token": "hvs." + _r(90),
        "digitalocean_token": "dop_v1_" + _hex(64),
        "shopify_token": "shpat_" + _hex(32),
        "huggingface_token": "hf_" + _r(34, string.ascii_letters),
        "mailgun_key": "key-" + _hex(32),
        "mailchimp_key": _hex(32) + "-us14",
        "square_token": "sq0atp-" + _r(22),
        "telegram_token": f"{_r(9, string.digits)}:AA{_r(33)}",
        "databricks_token": "dapi" + _hex(32),
        "newrelic_key": "NRAK-" + _r(27, string.ascii_uppercase + string.digits),
        "azure_storage_key": _r(86) + "==",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI" + _r(20) + "In0." + _r(43),
        "pem_body": _r(64),
        "bearer_token": _r(40),
        "basic_password": "pw-" + _r(18),
        "url_password": "Pw" + _r(18),
        "card_number": _luhn_card(),
        "us_ssn": f"{_rng.randrange(100, 665)}-{_rng.randrange(10, 99)}-{_rng.randrange(1000, 9999)}",
        "iban": _iban(),
        "email": f"canary.{_r(12, string.ascii_lowercase)}@example-{_r(6, string.ascii_lowercase)}.org",
        "ip_address": f"52.{_rng.randrange(1, 255)}.{_rng.randrange(1, 255)}.{_rng.randrange(1, 255)}",
        "high_entropy": _high_entropy(),
        "password_arg": "Hx!" + _r(14),
        "session_cookie": _r(32),
        "csrf_token": _r(32),
        "db_password": "db:" + _r(16),
        "db_api_token": "t0k-" + _r(20),
        "slots_token": "st-" + _r(20),
        "object_secret": "obj-" + _r(20),
        "json_password": "jp-" + _r(20),
        "local_secret": "ls-" + _r(20),
        "exception_only": "sk_live_" + _r(24),
    }


APP = '''
import dataclasses, json, os, sqlite3, urllib.request
import replay


@dataclasses.dataclass
class Profile:
    owner: str
    api_key: str


class Slotted:
    __slots__ = ("label", "token")

    def __init__(self, label, token):
        self.label = label
        self.token = token


@replay.capture{capture_args}
def handle(request, password, profile, slotted):
    conf = json.load(open(os.environ["CONF"]))
    url = os.environ["URL"]
    aws_key_id = os.environ["AWS_ACCESS_KEY_ID"]
    harmless = os.environ["PLAIN_SETTING"]
    db = sqlite3.connect(os.environ["DB"])
    rows = db.execute("SELECT name, password, api_token, email, iban FROM users").fetchall()
    db.execute("INSERT INTO users (name, password) VALUES (?, ?)", ("carol", password))
    headers = dict(request["headers"])
    headers["Cookie"] = "; ".join(f"{{k}}={{v}}" for k, v in request["cookies"].items())
    headers["X-Api-Key"] = os.environ["SERVICE_TOKEN"]
    q = urllib.request.Request(url + "/json?api_key=" + conf["mailgun"] + "&" + request["query"], headers=headers)
    got = urllib.request.urlopen(q).read()
    body = json.dumps({{"password": conf["nested"]["password"], "card": request["card"], "ssn": request["ssn"],
                       "jwt": request["jwt"], "hf": conf["hf"]}}).encode()
    echoed = urllib.request.urlopen(urllib.request.Request(url + "/echo", data=body, method="POST")).read()
    private_key = "-----BEGIN RSA PRIVATE KEY-----\\n" + conf["pem_body"] + "\\n-----END RSA PRIVATE KEY-----"
    webhook = conf["webhook"]
    basic = "Basic " + conf["basic"]
    secret_note = request["local"]
    summary = [aws_key_id, harmless, len(rows), len(got), len(echoed), len(private_key), webhook[:0], basic[:0]]
    raise RuntimeError(f"payment failed for {{request['email']}} from {{request['ip']}} with {{conf['rk']}} "
                       f"and {{conf['exception_only']}}; summary {{summary}} {{secret_note[:0]}}")
'''

SCRIPT = '''
import json, os, sys
sys.path.insert(0, os.getcwd())
import shop
c = json.loads(os.environ["CANARIES_FOR_TEST"])
os.environ.pop("CANARIES_FOR_TEST")
request = {{
    "headers": {{"Authorization": "Bearer " + c["bearer_token"], "X-Google": c["google_api_key"]}},
    "cookies": {{"sessionid": c["session_cookie"], "csrftoken": c["csrf_token"]}},
    "query": "token=" + c["github_token"] + "&page=2",
    "card": c["card_number"], "ssn": c["us_ssn"], "jwt": c["jwt"], "email": c["email"], "ip": c["ip_address"],
    "local": c["local_secret"], "nested": [("password", c["db_password"]), {{"deep": [c["openai_key"]]}}],
    "blob": ("note " + c["anthropic_key"]).encode(), "tuple": (c["slack_token"], c["npm_token"]),
}}
try:
    shop.handle(request, c["password_arg"], shop.Profile("jane", c["object_secret"]), shop.Slotted("x", c["slots_token"]))
except RuntimeError:
    pass
'''


@pytest.fixture(scope="module")
def server() -> LoopbackServer:
    srv = LoopbackServer().start()
    yield srv
    srv.stop()


def _record(app: App, server: LoopbackServer, canaries: dict[str, str], capture_args: str = "") -> tuple[Path, str]:
    app.write("shop.py", APP.format(capture_args=capture_args))
    conf = {"mailgun": canaries["mailgun_key"], "hf": canaries["huggingface_token"],
            "nested": {"password": canaries["json_password"]}, "pem_body": canaries["pem_body"],
            "webhook": canaries["slack_webhook"], "rk": canaries["stripe_restricted"],
            "exception_only": canaries["exception_only"],
            "basic": base64.b64encode(f"svc:{canaries['basic_password']}".encode()).decode(),
            "others": {"sendgrid_api_key": canaries["sendgrid_key"], "pypi": canaries["pypi_token"],
                       "vault": canaries["vault_token"], "do": canaries["digitalocean_token"],
                       "shopify": canaries["shopify_token"], "mailchimp": canaries["mailchimp_key"],
                       "square": canaries["square_token"], "telegram": canaries["telegram_token"],
                       "databricks": canaries["databricks_token"], "newrelic": canaries["newrelic_key"],
                       "twilio": canaries["twilio_key"], "whsec": canaries["stripe_webhook"],
                       "gitlab": canaries["gitlab_token"], "github_pat": canaries["github_pat"],
                       "entropy": canaries["high_entropy"],
                       "azure": f"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={canaries['azure_storage_key']}",
                       "aws": f"aws_secret_access_key = {canaries['aws_secret_key']}"}}
    conf_path = app.root.parent / "conf.json"
    conf_path.write_text(json.dumps(conf))
    db = app.root.parent / "shop.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE IF NOT EXISTS users (name, password, api_token, email, iban)")
        con.execute("DELETE FROM users")
        con.execute("INSERT INTO users VALUES ('bob', ?, ?, ?, ?)",
                    (canaries["db_password"], canaries["db_api_token"], canaries["email"], canaries["iban"]))
    env = {"CONF": str(conf_path), "URL": f"http://127.0.0.1:{server.server_address[1]}", "DB": str(db),
           "AWS_ACCESS_KEY_ID": canaries["aws_access_key"], "PLAIN_SETTING": canaries["twilio_key"],
           "SERVICE_TOKEN": canaries["stripe_secret"], "DATABASE_URL": f"postgres://app:{canaries['url_password']}@db/x",
           "CANARIES_FOR_TEST": json.dumps(canaries)}
    before = set(app.snaps.glob("**/*.rsnap")) if app.snaps.exists() else set()
    proc = run_recording(app.root, SCRIPT.format(), env=env, snap_dir=app.snaps)
    new = sorted(set(app.snaps.glob("**/*.rsnap")) - before)
    assert len(new) == 1, proc.stderr
    return new[0], proc.stdout + proc.stderr


def _leaks(path: Path, canaries: dict[str, str]) -> list[str]:
    """Canary kinds found in the file name, the raw bytes or any decompressed frame."""
    blobs = [path.name.encode(), path.read_bytes()]
    dctx = zstandard.ZstdDecompressor()
    with SnapshotFile(path) as f:
        blobs.append(json.dumps(f.header, default=str).encode())
        for number in range(f.frame_count):
            blobs.append(dctx.decompress(f.raw_payload(number), max_output_size=64 << 20))
    found = []
    for kind, secret in canaries.items():
        needles = {secret.encode(), json.dumps(secret)[1:-1].encode()}
        if any(n in blob for n in needles for blob in blobs):
            found.append(kind)
    return found


def test_no_canary_reaches_the_snapshot_and_it_still_replays(app: App, server: LoopbackServer) -> None:
    canaries = make_canaries()
    assert len(canaries) >= 45
    snap, output = _record(app, server, canaries)
    assert _leaks(snap, canaries) == []
    assert not [k for k, s in canaries.items() if s in output]
    with SnapshotFile(snap) as f:
        manifest = f.header["redaction"]
        tape = list(f.iter_records(2))
    assert manifest["enabled"] and manifest["errors"] == 0 and sum(manifest["hits"].values()) >= 40
    # equal secrets, equal tokens: the bearer token sent on the wire is the one from the arguments
    sent = [r for r in tape if r[0] == "http"][0][2]
    auth = {h[1]: h[2] for h in sent[4][1:]}["Authorization"]
    assert auth.startswith("Bearer ~redacted~")
    result = reproduce(snap)
    assert result.verdict.name == "REPRODUCED", result.reason


def test_tokens_differ_across_processes(app: App, server: LoopbackServer) -> None:
    canaries = make_canaries()
    first, _ = _record(app, server, canaries)
    second, _ = _record(app, server, canaries)

    def auth(path: Path) -> str:
        with SnapshotFile(path) as f:
            http = [r for r in f.iter_records(2) if r[0] == "http"][0]
        return {h[1]: h[2] for h in http[2][4][1:]}["Authorization"]

    assert auth(first) != auth(second)  # a key per snapshot: tokens do not link across snapshots


def test_flight_recorder_trace_is_redacted(app: App, server: LoopbackServer) -> None:
    canaries = make_canaries()
    snap, _ = _record(app, server, canaries, capture_args="(trace=True)")
    with SnapshotFile(snap) as f:
        assert f.count(7) > 0, "the flight recorder trace was not embedded"
    assert _leaks(snap, canaries) == []


def test_replay_redact_applies_extra_rules_and_keeps_replaying(app: App, server: LoopbackServer, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    canaries = make_canaries()
    snap, _ = _record(app, server, canaries)
    out = tmp_path / "shared.rsnap"
    assert main(["redact", str(snap), "-o", str(out), "--name", "owner", "--pattern", r"payment (failed)",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["redaction"]["hits"]["owner"] >= 1 and report["redaction"]["hits"]["custom_1"] >= 1
    with SnapshotFile(out) as f:
        header = f.header
        entry = next(f.iter_records(1))
    assert "jane" not in json.dumps(entry["args"], default=str)
    assert "payment failed" not in header["exception_message"]
    assert [p.get("tool") for p in header["redaction"]["passes"]] == [None, "replay redact"]
    assert _leaks(out, canaries) == []
    assert reproduce(out).verdict.name == "REPRODUCED"
    # in place: -o equal to the input replaces it atomically, once complete
    assert main(["redact", str(out), "-o", str(out), "--pattern", "page=(2)"]) == 0
    assert reproduce(out).verdict.name == "REPRODUCED"
    assert main(["redact", str(out), "-o", str(tmp_path / "x.rsnap"), "--pattern", "(unclosed"]) == 2
