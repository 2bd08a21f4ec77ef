"""The page: self-contained, escaped, warnings first."""

from __future__ import annotations

import base64
import re

from inrsr.report.page import Section, image_tag, page, table


def test_images_are_embedded_and_text_is_escaped():
    png = b"\x89PNG\r\n\x1a\nfake"
    tag = image_tag(png, 'a "quoted" <alt>')
    src = re.search(r'src="data:image/png;base64,([^"]+)"', tag).group(1)
    assert base64.b64decode(src) == png
    assert "&quot;quoted&quot; &lt;alt&gt;" in tag
    html = table(["file", "PSNR"], [["<script>x</script>.nii.gz", 43.987654], ["b", 3]])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<td class="num">43.99</td>' in html and '<td class="num">3</td>' in html


def test_page_puts_warnings_first_and_links_every_section():
    sections = [Section("volumes", "Inputs and outputs", "<p>a</p>"), Section("run", "Run", "<p>b</p>")]
    html = page("inrsr report: x", "meta", ["t1.nii.gz: only 3 slices"], sections)
    assert html.index('id="warnings"') < html.index("<nav>") < html.index('id="volumes"') < html.index('id="run"')
    assert "<li>t1.nii.gz: only 3 slices</li>" in html
    assert '<a href="#volumes">' in html and '<a href="#run">' in html
    assert "http" not in html and "<script" not in html
    assert "No warnings were raised" in page("t", "m", [], sections)
