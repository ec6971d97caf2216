"""The start page (``GET /``) in a real browser: headless Chromium driven by Selenium, on a real appliance.

Needs Debian's ``chromium`` and ``chromium-driver`` (skipped with the reason when they are missing). The digits
samples are checked against the digit their file is named after; iris against a direct request of the same body.
A screenshot after trying digits goes to pytest's tmp_path, and to $APPLIANCE_SCREENSHOT_DIR when it is set.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest
import requests

from ..conftest import MODELS

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402  # after the skip: selenium is a test extra
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="needs Chromium and its driver: apt-get install chromium chromium-driver"
)
DIGIT_SAMPLES = sorted((MODELS / "digits" / "samples").glob("*.png"))
ANSWER_TIMEOUT = 30  # seconds for a "try it" answer to show


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def signature_block(browser, model: str, signature: str):
    section = browser.find_element(By.ID, f"model-{model}")
    for block in section.find_elements(By.CSS_SELECTOR, ".signature"):
        if block.find_element(By.TAG_NAME, "form").get_attribute("data-signature") == signature:
            return block
    raise AssertionError(f"{model} shows no signature {signature}")


def answer_of(browser, block) -> tuple[str, str]:
    """The top line and the status the block's form shows once its answer came."""
    WebDriverWait(browser, ANSWER_TIMEOUT).until(lambda _: block.find_elements(By.CSS_SELECTOR, ".answer .raw"))
    return block.find_element(By.CSS_SELECTOR, ".top").text, block.find_element(By.CSS_SELECTOR, ".status").text


def save_screenshot(browser, tmp_path: Path) -> list[Path]:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, height)
    paths = [tmp_path / "start-page.png"]
    if os.environ.get("APPLIANCE_SCREENSHOT_DIR"):
        folder = Path(os.environ["APPLIANCE_SCREENSHOT_DIR"])
        folder.mkdir(parents=True, exist_ok=True)
        paths.append(folder / "start-page.png")
    for path in paths:
        assert browser.save_screenshot(str(path)), path
    return paths


def test_the_start_page_teaches_each_model_and_tries_it(bundled_server, browser, tmp_path):
    browser.get(bundled_server.url + "/")
    metadata = {
        name: requests.get(f"{bundled_server.url}/v1/models/{name}/metadata", timeout=30).json()
        for name in ("digits", "iris")
    }
    for name, document in metadata.items():
        section = browser.find_element(By.ID, f"model-{name}")
        signatures = document["metadata"]["signature_def"]["signature_def"]
        for signature, definition in signatures.items():
            if signature.startswith("__"):
                continue
            text = signature_block(browser, name, signature).text
            for alias, tensor in {**definition["inputs"], **definition["outputs"]}.items():
                assert alias in text and tensor["dtype"] in text, (name, signature, alias)
        assert "AVAILABLE (chosen)" in section.text

    # A curl line, as a user copies it from the page, answers 200.
    line = signature_block(browser, "iris", "serving_default").find_element(By.CSS_SELECTOR, "pre.curl").text
    command = shlex.split(line)
    assert command[:2] == ["curl", "-s"] and command[3] == "-d"
    response = requests.post(command[2], data=command[4], timeout=30)
    assert response.status_code == 200, response.text

    # Digits: each sample image, uploaded through the file input, is read as the digit it shows.
    assert DIGIT_SAMPLES, "models/digits/samples holds PNGs"
    image = signature_block(browser, "digits", "image")
    for sample in DIGIT_SAMPLES:
        browser.execute_script("arguments[0].querySelector('.answer').replaceChildren()", image)
        image.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(sample))
        top, status = answer_of(browser, image)
        assert status.startswith("200"), status
        assert top.startswith(f"class {sample.stem} (p="), (sample.name, top)
    shots = save_screenshot(browser, tmp_path)
    assert all(path.stat().st_size > 0 for path in shots)

    # Iris: the prefilled body, sent as it is, answers as the same body sent directly does.
    iris = signature_block(browser, "iris", "serving_default")
    body = iris.find_element(By.TAG_NAME, "textarea").get_property("value")
    iris.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    top, status = answer_of(browser, iris)
    assert status.startswith("200"), status
    direct = requests.post(f"{bundled_server.url}/v1/models/iris:predict", data=body, timeout=30).json()
    expected = [f"class {p['class']} (p={max(p['probabilities']):.2f})" for p in direct["predictions"]]
    assert top == " · ".join(expected)
