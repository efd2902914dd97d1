"""The README's configuration table names every setting the API and the worker read."""

from pathlib import Path

from app.config import Settings
from worker.config import WorkerSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TEST_ONLY = {"testing", "fault_seed", "fault_epoch", "fault_action"}  # fault injection, honoured only in tests


def test_every_setting_is_documented():
    names = (set(Settings.model_fields) | set(WorkerSettings.model_fields)) - TEST_ONLY
    missing = sorted(f"TAAS_{n.upper()}" for n in names if f"`TAAS_{n.upper()}`" not in README)
    assert not missing, f"README's Configuration lacks {missing}"
