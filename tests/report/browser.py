"""A real headless Chromium (Debian's package) driven by Playwright: opens a page, lists the
pictures that did not load, and takes screenshots. Used by the report's tests and by
``experiments/report_screenshots.py``."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = os.environ.get("INRSR_CHROMIUM", "/usr/bin/chromium")
# Flags that keep Chromium off the network and away from the user's profile.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
BROKEN = "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt)"


@contextmanager
def opened(path: str | os.PathLike, width: int = 1100, height: int = 900) -> Iterator[object]:
    """A Playwright page showing the local file ``path``, fully loaded; its console errors are
    collected in ``page.errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url[:80]}"))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield page
        finally:
            browser.close()


def broken_images(page: object) -> list[str]:
    """The alt texts of the page's pictures that the browser could not show."""
    return page.evaluate(BROKEN)
