"""Plain entry points into real PyPI libraries with known, fixed bugs.

Each function calls one public API of a third-party library. With the buggy
release on ``sys.path`` the call raises; with the fixed release it returns.
The library is imported inside the function, so the import itself happens
during the captured (and replayed) call, from whichever release is first on
``sys.path``.

These functions are deliberately undecorated: the integration test wraps them
with ``replay.capture(...)`` itself. See README.md beside this file for the
evidence behind each bug.
"""


def format_sql(sql):
    """sqlparse 0.6.0 -> 0.6.1: IndexError in format(reindent=True) on "( as )"."""
    import sqlparse

    return sqlparse.format(sql, reindent=True)


def render_markdown(text):
    """Markdown 3.8 -> 3.8.1 (issue #1534): AssertionError on "<![" in raw HTML."""
    import markdown

    return markdown.markdown(text)


def version_equals(version, other):
    """semver 3.0.4 -> 3.1.0 (PR #479): Version == {} raised TypeError."""
    import semver

    return semver.Version.parse(version) == other
