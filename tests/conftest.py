import pytest


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No curriculum variables from the caller's shell; data, cache and runs in tmp folders."""
    for var in ("CURRICULUM_PROFILE", "CURRICULUM_DATA_DIR", "CURRICULUM_CACHE_DIR",
                "CURRICULUM_RUNS_DIR", "CURRICULUM_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CURRICULUM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CURRICULUM_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path
