"""Execute the notebooks at full size and write readable copies with their outputs: docs/notebooks/*.md + PNGs.

    python notebooks/render.py [NAME.ipynb ...]      (``make notebooks``)

The notebooks in git keep no outputs; these rendered copies are what the README links to.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "notebooks"


def execute(path: Path, timeout: int = 3600) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel with the notebooks folder as the working directory."""
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def to_markdown(nb: nbformat.NotebookNode, stem: str, out_dir: Path) -> str:
    """Markdown cells as they are, code in python fences, text output in plain fences, figures as PNG files."""
    parts, n_fig = [], 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source)
            continue
        parts.append(f"```python\n{cell.source}\n```")
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(f"```\n{out.text.rstrip()}\n```")
            elif out.output_type in ("display_data", "execute_result"):
                data = out.get("data", {})
                if "image/png" in data:
                    n_fig += 1
                    name = f"{stem}_files/figure_{n_fig:02d}.png"
                    (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
                    (out_dir / name).write_bytes(base64.b64decode(data["image/png"]))
                    parts.append(f"![figure {n_fig}]({name})")
                elif "text/markdown" in data:
                    parts.append(data["text/markdown"])
                elif "text/plain" in data:
                    parts.append(f"```\n{data['text/plain'].rstrip()}\n```")
    return "\n\n".join(parts) + "\n"


def main(names: list[str]) -> int:
    DOCS.mkdir(parents=True, exist_ok=True)
    for path in [HERE / n for n in names] or sorted(HERE.glob("[0-9][0-9]_*.ipynb")):
        t = time.perf_counter()
        nb = execute(path)
        seconds = time.perf_counter() - t
        md = to_markdown(nb, path.stem, DOCS)
        header = (f"<!-- rendered by `make notebooks` from notebooks/{path.name}: executed at full size in "
                  f"{seconds:.0f} s -->\n\n")
        (DOCS / f"{path.stem}.md").write_text(header + md)
        print(f"{path.name}: {seconds:.0f} s -> docs/notebooks/{path.stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
