"""The report's tables sort on a header click, in a real headless Chromium (skipped without one)."""

import shutil

import pandas as pd
import pytest

from niclip_ray.report import write_report

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the test extra) is not installed")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_header_click_sorts_numbers_text_and_missing_last(tmp_path, browser):
    from selenium.webdriver.common.by import By

    table = pd.DataFrame({"term": ["beta", "Alpha", "gamma", "delta"], "value": [10.0, 1.5, float("nan"), 1.25],
                          "p": [0.02, 0.0004, 0.5, 0.003]})
    metrics = pd.DataFrame({"backend": ["niclip"], "level": ["task"], "k": [4], "mean_hit_at_k": [0.5]})
    path = write_report(tmp_path, maps={}, predictions=pd.DataFrame(columns=["map_id", "level", "rank", "term"]),
                        metrics=metrics, curves=None, methods="", tables={"Terms": table})
    browser.get(path.as_uri())
    shown = browser.find_elements(By.CSS_SELECTOR, "table.sortable")[-1]
    headers = shown.find_elements(By.TAG_NAME, "th")

    def column(at):
        return [row.find_elements(By.TAG_NAME, "td")[at].text for row in shown.find_elements(By.CSS_SELECTOR, "tbody tr")]

    headers[1].click()  # numerically (1.25 before 1.5, 10 last, unlike text), '-' last
    assert column(1) == ["1.25", "1.5", "10", "-"] and headers[1].get_attribute("aria-sort") == "ascending"
    headers[1].click()
    assert column(1) == ["10", "1.5", "1.25", "-"] and headers[1].get_attribute("aria-sort") == "descending"
    headers[2].click()  # by the p-value, not by its text
    assert column(2) == ["< 0.001", "0.003", "0.020", "0.500"]
    headers[0].click()  # alphabetically, whatever the case; the other header forgets its order
    assert column(0) == ["Alpha", "beta", "delta", "gamma"] and headers[1].get_attribute("aria-sort") is None
    headers[0].click()
    assert column(0) == ["gamma", "delta", "beta", "Alpha"]


def test_a_focused_header_sorts_on_enter_and_space(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    table = pd.DataFrame({"term": ["beta", "alpha", "gamma"], "value": [2.0, 3.0, 1.0]})
    metrics = pd.DataFrame({"backend": ["niclip"], "level": ["task"], "k": [4], "mean_hit_at_k": [0.5]})
    path = write_report(tmp_path, maps={}, predictions=pd.DataFrame(columns=["map_id", "level", "rank", "term"]),
                        metrics=metrics, curves=None, methods="", tables={"Terms": table})
    browser.get(path.as_uri())
    shown = browser.find_elements(By.CSS_SELECTOR, "table.sortable")[-1]
    header = shown.find_elements(By.TAG_NAME, "th")[1]
    rows = lambda: [r.find_elements(By.TAG_NAME, "td")[0].text for r in shown.find_elements(By.CSS_SELECTOR, "tbody tr")]  # noqa: E731
    header.send_keys(Keys.ENTER)
    assert rows() == ["gamma", "beta", "alpha"] and header.get_attribute("aria-sort") == "ascending"
    header.send_keys(Keys.SPACE)
    assert rows() == ["alpha", "beta", "gamma"] and header.get_attribute("aria-sort") == "descending"
