"""Execute notebooks top to bottom in place, so stored outputs are current.

Each notebook runs in a fresh ``python3`` kernel with its own folder as working directory;
outputs and widget state are stored. The file is replaced only after a successful run
(temp file + rename): a failing notebook is reported and left as it was.

    python scripts/execute_notebooks.py lectures/*.ipynb
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course import write_nb


class CellOutputClient(NotebookClient):
    """Keep what an Output widget (ipywidgets.interact) displays as ordinary cell outputs.

    nbclient normally files them inside the widget's saved state, but nbval -- which re-runs the
    notebook without a widget manager -- sees them as cell outputs; storing them the same way
    lets strict nbval compare widget cells like any other cell.
    """

    def register_output_hook(self, msg_id, hook):
        pass

    def remove_output_hook(self, msg_id, hook):
        pass

    def clear_output(self, outs, msg, cell_index):
        pass  # nbval ignores clear_output as well


def execute(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    t0 = time.perf_counter()
    client = CellOutputClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    elapsed = time.perf_counter() - t0
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    write_nb(path, nbformat.from_dict(nb))
    return elapsed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--timeout", type=int, default=300, help="per cell, seconds")
    args = ap.parse_args(argv)
    failed = []
    for path in args.notebooks:
        try:
            print(f"{path}: {execute(path, args.timeout):.1f} s", flush=True)
        except CellExecutionError as exc:
            failed.append(path)
            print(f"{path}: FAILED, left unchanged\n{exc}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
