"""A real library as application code for ``bench_trace.py``: Pygments (from PyPI).

Highlights a Python source file as HTML (the work of ``pygmentize -l python -f html FILE``,
which cannot run under replay as is: it writes to ``sys.stdout.buffer``) and prints the size
of the result. Traced with ``include=["*/pygments/*"]``.

Usage: ``python highlight.py FILE [LINES]`` (LINES: highlight only the first LINES lines).
"""

import sys

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


def main(path: str, lines: int | None) -> None:
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    if lines is not None:
        source = "".join(source.splitlines(keepends=True)[:lines])
    html = highlight(source, PythonLexer(), HtmlFormatter())
    print(len(source), len(html))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
