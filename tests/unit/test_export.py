"""``replay export``: ticket summaries in Markdown, JSON and HTML, bounded and neutralised."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from replay.cli import main
from replay.export import Bounds, export, render_json, summarize
from replay.snapshot import open_snapshot

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "sample_snapshots" / "snapshots").glob("*/*.rsnap"))
JAN31 = next(p for p in SAMPLES if p.parent.name == "jan31-monthly")
FEB15 = next(p for p in SAMPLES if p.parent.name == "feb15-monthly")

# What a hostile or unlucky value may carry to a terminal, a tracker or a browser.
HOSTILE_CHARS = ("\x1b", "\r", "\x07", "\u202e", "\x00", "\x9b")


class WellFormed(HTMLParser):
    """Checks that every element is closed in order; collects the text and the tag names."""

    VOID = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(page: str) -> WellFormed:
    parser = WellFormed()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == [], (parser.errors, parser.stack)
    return parser


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def outside_code(markdown: str) -> str:
    """The Markdown with fenced blocks and code spans removed: what a tracker would interpret."""
    text = re.sub(r"^(`{3,}).*?^\1\s*$", "", markdown, flags=re.M | re.S)
    return re.sub(r"(`+).*?\1", "", text)


@pytest.mark.parametrize("snapshot", SAMPLES, ids=lambda p: p.parent.name)
def test_every_format_on_the_sample_corpus(snapshot: Path) -> None:
    with open_snapshot(snapshot) as snap:
        md, js, page = (export(snap, fmt, path=str(snapshot)) for fmt in ("md", "json", "html"))
    data = json.loads(js)
    assert data["entry"]["point"] == "subscriptions.service:renew"
    assert data["commands"]["verify"] == f"replay verify {snapshot} --code ./your-fix"
    assert data["environment"]["python"] == "CPython 3.11.7"
    failed = data["outcome"]["kind"] == "exception"
    assert failed == (snapshot.parent.name in ("jan31-monthly", "mar31-monthly", "aug31-quarterly"))
    for text in (md, page):
        assert f"replay run {snapshot}" in text and f"replay tui {snapshot}" in text
        assert "renew(RenewalRequest(customer_id=" in text.replace("&#x27;", "'")
    parsed = parse_html(page)
    assert "script" not in parsed.tags
    if failed:
        assert data["outcome"]["type"] == "ValueError"
        innermost = data["traceback"][-1]
        assert innermost["failing"] and innermost["function"] == "add_months"
        assert ["day", re.sub(r".*\((\d+), (\d+), (\d+)\).*", r"datetime.date(\1, \2, \3)", innermost["locals"][0][1])] \
            == innermost["locals"][0]
        assert 'File "subscriptions/calendar_utils.py", line 12, in add_months' in md
        assert "day is out of range for month" in "".join(parsed.text)
    else:
        assert data["outcome"]["value"].startswith("Invoice(number='INV-")
        assert data["tape"]["channels"] == {"clock": 1, "env": 2, "random": 2}
        assert "### Outcome" in md and "Traceback" not in md


def test_markdown_of_a_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(JAN31)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("## replay snapshot: `ValueError: day is out of range for month in subscriptions.service:renew`")
    for line in ("      day = datetime.date(2026, 1, 31)", "      months = 1",
                 "#0 clock datetime.now() -> 1769847164759146763 ns (2026-01-31 08:12:44.759146 UTC)",
                 "- raised in: `subscriptions/calendar_utils.py :: add_months`", "- time zone: `Europe/Amsterdam`"):
        assert line in md.splitlines()


HOSTILE_APP = '''
import os

import replay

EVIL = "\\x1b[31mred\\x1b[0m \\x1b]0;pwned\\x07 \\r over \\u202egnp.exe <script>alert(1)</script> ``` | \\x00 \\x9b"


@replay.capture
def handle(label, rows):
    note = EVIL + os.environ.get("EVIL_ENV", "")
    big = "x" * 100_000
    many = list(range(10_000))
    extra = {f"k{i}": i for i in range(50)}
@@LOCALS@@
    raise RuntimeError("bad " + label)
'''.replace("@@LOCALS@@", "\n".join(f"    v{i} = {i}" for i in range(25)))


@pytest.fixture
def hostile(app: Any) -> Path:
    app.write("hostile.py", HOSTILE_APP)
    return app.record(
        "import hostile\n"
        "try:\n"
        "    hostile.handle(hostile.EVIL, [hostile.EVIL * 3, 'y' * 50_000, list(range(5_000))])\n"
        "except RuntimeError:\n"
        "    pass\n",
        env={"EVIL_ENV": "\x1b[2J\u202e"},
    )


def test_hostile_values_are_neutralised_in_every_format(hostile: Path) -> None:
    with open_snapshot(hostile) as snap:
        assert "\x1b[31m" in snap.outcome["message"]  # the raw file holds them: the export must not
        outputs = {fmt: export(snap, fmt) for fmt in ("md", "json", "html")}
    for fmt, text in outputs.items():
        assert not [c for c in HOSTILE_CHARS if c in text], fmt
        assert "\\x1b[31mred" in text and "\\u202egnp.exe" in text, fmt
    data = json.loads(outputs["json"])
    assert all(s.isprintable() for s in strings(data))  # what a tool reads back is safe too
    page = parse_html(outputs["html"])
    assert "script" not in page.tags and "<script>alert(1)</script>" in "".join(page.text)
    assert "<script>" not in outputs["html"]
    md = outputs["md"]
    assert "<script" not in outside_code(md)  # only inside code spans and fenced blocks
    assert "\\x1b[2J" in md  # the hostile environment value read on the tape


def test_summaries_stay_small_and_say_what_was_cut(hostile: Path) -> None:
    with open_snapshot(hostile) as snap:
        md = export(snap, "md")
        data = summarize(snap)
        tiny = summarize(snap, bounds=Bounds(value_chars=40, locals_per_frame=3, interactions=1))
    assert len(md.encode()) < 8_000, len(md.encode())
    assert "long values are cut, ending in …" in data["notes"]
    assert any("at most 20 locals per frame" in n for n in data["notes"])
    assert re.search(r"\(\d{6} chars\)", md)  # the true length of the 100,000-character local
    assert all(len(v) <= 40 for _, v in tiny["traceback"][-1]["locals"])
    assert len(tiny["traceback"][-1]["locals"]) == 3
    assert len(render_json(tiny)) < len(render_json(data))


def test_cli_writes_a_file_and_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ticket.html"
    assert main(["export", str(FEB15), "--format", "html", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    parse_html(out.read_text(encoding="utf-8"))
    assert [p.name for p in tmp_path.iterdir()] == ["ticket.html"]  # no temporary file left
    assert main(["export", str(FEB15), "--format", "pdf"]) == 2
    assert main(["export", str(tmp_path / "missing.rsnap")]) == 3
    not_a_snapshot = tmp_path / "x.rsnap"
    not_a_snapshot.write_bytes(b"hello")
    assert main(["export", str(not_a_snapshot)]) == 3
