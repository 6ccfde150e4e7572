"""Copy screenshots of the last browser run (build/browser/screenshots/) to the README's folder.

    python tests/browser/readme_screenshots.py NAME...   # what `make screenshots` runs

Scaled to 1000 px wide and palette-compressed: the README needs to show the page, not every pixel.
"""

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "build" / "browser" / "screenshots"
DEST = HERE / "screenshots"
WIDTH = 1000


def main(names) -> int:
    DEST.mkdir(exist_ok=True)
    missing = [n for n in names if not (SOURCE / f"{n}.png").exists()]
    if missing:
        print(f"no screenshot {missing} in {SOURCE}: run `make test-browser` first", file=sys.stderr)
        return 1
    for name in names:
        img = Image.open(SOURCE / f"{name}.png").convert("RGB")
        if img.width > WIDTH:
            img = img.resize((WIDTH, round(img.height * WIDTH / img.width)), Image.LANCZOS)
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        out = DEST / f"{name}.png"
        img.save(out, optimize=True)
        print(f"{out.relative_to(HERE.parent.parent)}: {out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
