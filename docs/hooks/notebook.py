"""MkDocs hook: the example notebook (``examples/notebook.ipynb``) as a page of the site.

The page is generated at build time from the notebook itself (Markdown cells as they are, code
cells as Python blocks), so it never goes out of step with the notebook; the notebook is stored
without outputs and the test suite executes it (``tests/test_notebook.py``).
"""

import json
from pathlib import Path

from mkdocs.structure.files import File

#: The notebook, relative to the repository root, and the page it becomes.
NOTEBOOK = Path("examples") / "notebook.ipynb"
PAGE = "guides/notebook-example.md"


def notebook_markdown(path: Path) -> str:
    """The notebook's cells as one Markdown page."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    parts = [
        "<!-- generated from examples/notebook.ipynb by docs/hooks/notebook.py -->",
        "*This page is the notebook `examples/notebook.ipynb`; open it in Jupyter to run it.*",
    ]
    for cell in cells:
        text = "".join(cell["source"]).rstrip()
        parts.append(text if cell["cell_type"] == "markdown" else f"```python\n{text}\n```")
    return "\n\n".join(parts) + "\n"


def on_files(files, config):
    """Add the generated page to the site's files."""
    root = Path(config["config_file_path"]).parent
    content = notebook_markdown(root / NOTEBOOK)
    files.append(File.generated(config, PAGE, content=content))
    return files
