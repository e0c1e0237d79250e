"""Screenshots of a run's report in a real browser (Debian's chromium, driven by Playwright), at a desktop's
1280 px and a phone's 390 px: what docs/report-1280.png and docs/report-390.png show.

    python tools/report_screenshots.py runs/resnet20-digits [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished run's folder (it holds report.html)")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args(argv)
    page_file = (args.run / "report.html").resolve()
    if not page_file.exists():
        sys.exit(f"{page_file} does not exist: run `resnet-edge run` (or `resnet-edge report {args.run}`) first")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("no chromium here: apt install chromium")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for width in (1280, 390):
            page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            shot = args.out / f"report-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"{shot}: {page.evaluate('document.documentElement.scrollHeight')} px tall")
            page.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
