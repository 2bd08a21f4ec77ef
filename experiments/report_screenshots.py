"""Screenshots of a fit's report.html, taken from the real page in a headless Chromium (the
same driver as the report's browser test, tests/report/browser.py).

    python experiments/report_screenshots.py OUT/report.html PREFIX [--top] [--section ID …]

``--top`` writes ``PREFIX_top.png`` (the head of the page: title, warnings, navigation and the
first pictures); each ``--section`` writes ``PREFIX_ID.png`` (that whole section). Fails when a
picture of the page is broken or the page logs an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.report.browser import broken_images, opened  # noqa: E402

WIDTH = 1100
TOP_HEIGHT = 1500


def screenshots(report: Path, prefix: Path, top: bool, section_ids: list[str]) -> list[Path]:
    """Write the screenshots; return their paths."""
    written = []
    with opened(report, width=WIDTH, height=TOP_HEIGHT) as page:
        broken = broken_images(page)
        if broken or page.errors:
            raise SystemExit(f"{report}: broken pictures {broken} or page errors {page.errors}")
        if top:
            path = prefix.with_name(prefix.name + "_top.png")
            page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": WIDTH, "height": TOP_HEIGHT})
            written.append(path)
        for sid in section_ids:
            path = prefix.with_name(f"{prefix.name}_{sid}.png")
            page.locator(f"section#{sid}").screenshot(path=str(path))
            written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path)
    ap.add_argument("prefix", type=Path, help="output path prefix of the PNG files")
    ap.add_argument("--top", action="store_true", help="the head of the page")
    ap.add_argument("--section", action="append", default=[], help="id of a section to capture (repeatable)")
    args = ap.parse_args()
    for path in screenshots(args.report, args.prefix, args.top, args.section):
        print(path)


if __name__ == "__main__":
    main()
