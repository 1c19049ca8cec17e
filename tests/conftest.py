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


@pytest.fixture
def local(clean_env, monkeypatch):
    """Profile 'local', data dir and cache in a tmp folder; returns the data dir."""
    monkeypatch.setenv("CURRICULUM_PROFILE", "local")
    data = clean_env / "data"
    data.mkdir()
    monkeypatch.setenv("CURRICULUM_DATA_DIR", str(data))
    return data
