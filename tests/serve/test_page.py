"""The web page in a real headless Chromium (Debian's package, driven by Selenium and chromedriver)."""

import shutil
import subprocess

import pytest
from nilearn.datasets import load_sample_motor_activation_image

from niclip_ray import Decoder

from .conftest import TOKEN

pytestmark = pytest.mark.timeout(900)


def system_chromium() -> tuple[str, str]:
    """Paths of chromium and chromedriver, installed from Debian's packages when missing."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and there is no apt-get to install it")
    try:
        subprocess.run(["apt-get", "install", "-y", "chromium", "chromium-driver"], check=True, timeout=600,
                       capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, PermissionError) as exc:
        pytest.skip(f"Chromium is not installed and 'apt-get install chromium chromium-driver' failed: {exc}")
    return shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = system_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_shows_the_brain_and_the_ranked_tables(service, toy, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = service
    bundle, atlas = toy
    browser.execute_cdp_cmd("Network.enable", {})  # the token on every request, the page's fetch included
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}})
    browser.get(f"{url}/")
    assert "stand-in" in browser.find_element(By.CLASS_NAME, "caveat").text
    browser.find_element(By.ID, "file").send_keys(load_sample_motor_activation_image())
    WebDriverWait(browser, 180).until(ec.presence_of_element_located((By.CSS_SELECTOR, "tr.row-task")))
    expected = Decoder.from_bundle(bundle, atlas_dir=atlas, topk=10).transform(load_sample_motor_activation_image())
    top_task = expected[expected["level"] == "task"].iloc[0]
    first = browser.find_elements(By.CSS_SELECTOR, "tr.row-task")[0].find_elements(By.TAG_NAME, "td")
    assert first[0].text == "1" and first[1].text == top_task["term"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.row-concept")) == 10
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.row-task div.bar.post")) == 10  # posterior beside prior
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr.row-task div.bar.prior")) == 10
    flags = [row.find_elements(By.TAG_NAME, "td")[-1].text for row in browser.find_elements(By.CSS_SELECTOR, "tr.row-task")]
    task_rows = expected[expected["level"] == "task"]
    assert flags == ["against map" if bf < 1 else "" for bf in task_rows["bayes_factor"]]
    assert "tasks by posterior" in browser.find_element(By.ID, "table-task").text
    assert "noisy-ORs" in browser.find_element(By.ID, "notes").text
    assert browser.find_elements(By.CSS_SELECTOR, "tr.row-domain")
    brain = browser.find_element(By.ID, "brain")
    assert brain.is_displayed() and brain.get_attribute("src").startswith("data:image/png;base64,")
    assert browser.execute_script("return arguments[0].naturalWidth", brain) > 100
    assert "resampled" in browser.find_element(By.ID, "status").text
