"""The dashboard end to end in chromium: sign in, upload, dry run, submit, watch the live charts, read the
confusion matrix, point an alias, download the weights. Waits are conditions with deadlines, never sleeps."""

import re

from playwright.sync_api import expect

from tests.factories import dataset_members, write_zip

MB = 1_000_000


def sign_in(page, served, key: str | None = None) -> None:  # noqa: ANN001
    page.goto(served.url + "/")
    page.fill("#api-key", key or served.key)
    page.click("#sign-in")


def test_from_upload_to_download_in_the_browser(page, served, tmp_path):  # noqa: ANN001
    sign_in(page, served)
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator("#datasets-list")).not_to_contain_text("Loading")

    # Upload through the form (XHR with a progress bar); the list follows processing -> ready by itself.
    archive = write_zip(tmp_path / "colours.zip", dataset_members(classes=2, per_class=10, size=16))
    page.set_input_files("#upload-file", str(archive))
    page.fill("#upload-name", "colours <b>not bold</b>")  # shown as text, never parsed as HTML
    page.click("#upload-submit")
    expect(page.locator("#upload-result .notice-ok")).to_contain_text("Uploaded ds_")
    expect(page.locator("#upload-progress [role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    row = page.locator("#datasets-list tr[data-status]").first
    expect(row).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(row).to_contain_text("colours <b>not bold</b>")
    assert page.locator("#datasets-list b").count() == 0
    expect(row).to_contain_text("train")

    # The submit form, from the dataset's Train button; a dry run shows the plan first.
    row.get_by_role("link", name="Train").click()
    expect(page).to_have_url(re.compile(r"#/new\?dataset=ds_"))
    expect(page.locator("#arch option[value=resnet18]")).to_have_count(1)
    page.select_option("#arch", "resnet18")
    page.select_option("#weights", "none")
    expect(page.locator("#until")).to_be_hidden()
    page.select_option("#policy", "until")
    expect(page.locator("#until")).to_be_visible()
    page.select_option("#until", "layer1")
    page.fill("#epochs", "3")
    page.fill("#batch-size", "8")
    page.fill("#image-size", "32")
    page.fill("#learning-rate", "0.01")
    page.click("#dry-run")
    plan = page.locator("#plan")
    expect(plan).to_be_visible()
    expect(plan.locator("tr.row-frozen")).to_have_count(2)  # stem and layer1 stay frozen
    expect(plan).to_contain_text("layer2")
    assert int(page.inner_text("#plan-trainable").replace(",", "")) > 1_000_000

    # An invalid spec shows the API's error next to the form, field by field.
    page.fill("#image-size", "8")
    page.evaluate("document.getElementById('image-size').removeAttribute('min')")  # past the browser's own check
    page.click("#dry-run")
    expect(page.locator("#job-form-error .error-box")).to_contain_text("validation_error")
    expect(page.locator("#job-form-error li")).to_contain_text("image_size")
    page.fill("#image-size", "32")

    page.click("#submit-job")
    expect(page).to_have_url(re.compile(r"#/jobs/job_[0-9a-z]+$"))
    job_id = page.url.rsplit("/", 1)[1]

    # The charts fill from the live event stream while the job runs.
    expect(page.locator("#loss-chart")).to_have_attribute("data-points", re.compile(r"^[1-9]"), timeout=120_000)
    expect(page.locator("#loss-chart canvas")).to_have_count(1)
    expect(page.locator("#job-status")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    expect(page.locator("#accuracy-chart")).to_have_attribute("data-points", "3", timeout=30_000)
    expect(page.locator("#events-list tr[data-type=metrics]")).to_have_count(3)
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended", timeout=30_000)

    # The model's evaluation: a coloured confusion matrix (2 classes) and per-class scores.
    matrix = page.locator("#confusion-matrix")
    expect(matrix).to_be_visible()
    expect(matrix.locator("tbody tr")).to_have_count(2)
    expect(page.locator("#per-class")).to_contain_text("green")

    # The model page: an alias pointed at it, and the weights downloaded with the key.
    page.click("#open-model")
    expect(page).to_have_url(re.compile(r"#/models/model_"))
    expect(page.locator("#aliases-list")).to_contain_text("No alias")
    page.fill("#alias-name", "browser-test")
    page.click("#alias-form button[type=submit]")
    expect(page.locator('#aliases-list [data-alias="browser-test"]')).to_be_visible()
    with page.expect_download(timeout=60_000) as info:
        page.click("#download-safetensors")
    download = info.value
    assert download.suggested_filename.endswith(".safetensors")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.stat().st_size > MB
    assert job_id.startswith("job_")
    assert not page.js_errors, page.js_errors


def test_a_wrong_key_shows_the_apis_error(page, served):  # noqa: ANN001
    sign_in(page, served, key="taas_nope_nope")
    error = page.locator("#sign-in-error .error-box")
    expect(error).to_contain_text("invalid_api_key")
    expect(page.locator("#nav")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('taas.apiKey')") is None
    # The right key then gets in, and signing out forgets it.
    page.fill("#api-key", served.key)
    page.click("#sign-in")
    expect(page.locator("#nav")).to_be_visible()
    page.click("#sign-out")
    expect(page.locator("#api-key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('taas.apiKey')") is None
    assert not page.js_errors, page.js_errors
