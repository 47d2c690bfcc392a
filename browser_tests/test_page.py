"""The page of ``python predict.py --serve`` in a real browser: ``make test-browser`` (not part of ``make test``).

Trains a tiny run of its own on a generated demo (200 tweets, a random VGG16 at 64 px, a few epochs), serves it
with docs/predict.md's command, and drives headless Chromium (Debian's ``chromium`` and ``chromium-driver``) with
Selenium as a person would: open the page, submit without a text (the page says what is missing), then choose a
demo image, type its text, submit, and find each model's probabilities and the explanation picture on the page.
The screenshot of that page goes to ``$EMOREC_SCREENSHOT`` (``make test-browser``: docs/predict_page.png, the
picture in docs/predict.md), else into the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["happy", "sad", "hate", "anger"]
MODELS = ["TER", "IER", "Intermediate_fusion", "Late_fusion"]


def run(folder: Path, *args: str) -> None:
    result = subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A folder laid out like a clone with a tiny demo run trained in it."""
    folder = tmp_path_factory.mktemp("browser")
    for path in REPO.iterdir():
        if path.suffix == ".py" or path.name == "emorec":
            (folder / path.name).symlink_to(path)
    run(folder, "-m", "emorec.demo", "--out", "demo", "--n", "200", "--corpus-size", "3000")
    data = ["--manifest", "demo/image_labels.csv", "--image-root", "demo", "--seed", "0"]
    run(folder, "TER.py", *data, "--glove", "demo/glove.demo.200d.txt", "--epoch", "8")
    run(folder, "IER.py", *data, "--image-weights", "none", "--image-size", "64", "--epoch", "8")
    run(folder, "Intermediate_fusion.py", *data, "--epoch", "4")
    run(folder, "Late_fusion.py")
    return folder


@pytest.fixture
def page(trained_run):
    """docs/predict.md's `python predict.py --serve` on a free port, in the trained folder: its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "predict.py", "--serve", "--port", str(port)],
        cwd=trained_run,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            time.sleep(0.5)
    try:
        assert server.poll() is None, server.stderr.read()[-4000:]
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1150,1750"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(180)
    yield driver
    driver.quit()


def waiting(browser, by, value, seconds: int = 120):
    """The element found by (``by``, ``value``) once the page that holds it has loaded."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds).until(expected_conditions.presence_of_element_located((by, value)))


def test_a_person_submits_a_demo_tweet_and_sees_the_probabilities(trained_run, page, browser, tmp_path):
    from selenium.webdriver.common.by import By

    manifest = pd.read_csv(trained_run / "demo/image_labels.csv", dtype=str, keep_default_na=False)
    tweet = manifest.iloc[0]
    image = str(trained_run / "demo" / tweet["image"])

    browser.get(page)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Emotion of a tweet"
    browser.find_element(By.ID, "image").send_keys(image)
    browser.find_element(By.ID, "submit").click()  # no text: the page says so and keeps the form
    assert "type the tweet's text" in waiting(browser, By.ID, "error").text

    browser.find_element(By.ID, "image").send_keys(image)  # a new page: the file is chosen again
    browser.find_element(By.ID, "text").send_keys(tweet["text"])
    browser.find_element(By.ID, "submit").click()
    table = waiting(browser, By.ID, "probabilities")
    header = [cell.text for cell in table.find_elements(By.TAG_NAME, "th")]
    assert header == ["model", *CLASSES]
    for model in MODELS:
        cells = table.find_element(By.CSS_SELECTOR, f"tr[data-model={model}]").find_elements(By.TAG_NAME, "td")
        probabilities = [float(cell.text) for cell in cells[1:]]
        assert len(probabilities) == 4 and sum(probabilities) == pytest.approx(1, abs=0.01), (model, probabilities)
    prediction = browser.find_element(By.ID, "prediction").text.removeprefix("Prediction: ")
    assert prediction in CLASSES
    picture = browser.find_element(By.ID, "explanation")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", picture) > 500
    assert not browser.find_elements(By.ID, "error")

    screenshot = Path(os.environ.get("EMOREC_SCREENSHOT") or tmp_path / "predict_page.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1150, min(max(height + 40, 800), 2400))
    assert browser.save_screenshot(str(screenshot))
    print(f"the page: prediction {prediction}; screenshot {screenshot}")
