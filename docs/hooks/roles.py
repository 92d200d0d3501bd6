"""MkDocs hook: Sphinx cross-reference roles in docstrings (``:mod:`x```, ``:func:`x```, ...) are
shown as the code they name, not as literal role text.

The API pages render numpy-style docstrings through mkdocstrings, which does not know Sphinx roles;
a role arrives in the page as ``:func:<code>name</code>``. The hook drops the role prefix.
"""

import re

_ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|obj|exc|const):(?=<code>)")


def on_page_content(html, page, config, files):
    """Drop role prefixes before inline code in a rendered page."""
    return _ROLE.sub("", html)
