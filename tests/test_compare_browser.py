"""``report.html`` of ``streamlearn compare`` in a real browser: headless Chromium opens the
file from disk (no server), every plot decodes, and the console shows no errors.

Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs them),
driven by selenium pointed at the system binaries: nothing here can download a
browser build. Without them the tests skip and say so, except under CI (``CI`` set),
where a missing browser is a failure.
"""

import os
import shutil

import pytest

from streamlearn.engine.compare import compare
from tests.conftest import write_jsonl
from tests.test_compare import _config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        why = f"no chromium installed ({', '.join(missing)} missing; apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {why}: .ci/run installs them")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def page_problems(driver, path) -> tuple[int, list[str]]:
    """Open ``path`` from disk; the number of images and what is wrong: an image that did
    not decode (natural size 0) or a console error."""
    driver.get_log("browser")  # forget what earlier pages logged
    driver.get(path.resolve().as_uri())
    images = driver.execute_script(
        "return Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    problems = [f"image {alt!r} did not load ({w}x{h})" for alt, complete, w, h in images if not (complete and w > 0 and h > 0)]
    problems += [f"console {e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return len(images), problems


def test_compare_report_opens_from_disk_with_every_plot_and_no_console_error(browser, phishing_jsonl, tmp_path):
    stream = write_jsonl(tmp_path / "stream.jsonl", phishing_jsonl.read_text().splitlines()[:300])
    configs = [_config(tmp_path, "logreg"), _config(tmp_path, "gnb", "naive_bayes.GaussianNB")]
    report = compare(configs, stream, tmp_path / "report", log_level="warning")
    assert report["failed"] == []
    images, problems = page_problems(browser, tmp_path / "report" / "report.html")
    assert images == 3  # the overlay and each learner's own plot
    assert problems == []
    assert browser.find_element("tag name", "h1").text == "Comparison on stream.jsonl"
    rows = browser.find_elements("css selector", "tbody tr")
    assert [r.find_element("tag name", "td").text for r in rows] == ["logreg", "gnb"]


def test_the_browser_check_sees_a_broken_plot_and_a_console_error(browser, tmp_path):
    # The check above can fail: a PNG that does not decode and a script error are both caught.
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img alt="broken" src="data:image/png;base64,iVBORw0KGgoAAAAA">'
        "<script>undefinedFunction()</script></body></html>"
    )
    images, problems = page_problems(browser, page)
    assert images == 1
    assert problems[0] == "image 'broken' did not load (0x0)"
    assert len(problems) == 2 and "undefinedFunction is not defined" in problems[1]
