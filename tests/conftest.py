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


def pytest_configure(config):
    """Under ``CURRICULUM_CLOCK_SHIFT_DAYS`` (tools/clockshift), the calendar must really be
    shifted: a shift that silently did not happen would make CI's year-ahead run prove nothing."""
    import os

    days = os.environ.get("CURRICULUM_CLOCK_SHIFT_DAYS")
    if not days:
        return
    import time

    try:
        import time_machine
    except ImportError:
        pytest.exit("CURRICULUM_CLOCK_SHIFT_DAYS is set but time-machine is not installed. Fix: make setup", 2)
    hatch = time_machine.escape_hatch
    shifted = (time.time() - hatch.time.time()) / 86400 if hatch.is_travelling() else 0.0
    if abs(shifted - float(days)) > 1:
        why = os.environ.get("CURRICULUM_CLOCK_SHIFT_ERROR", "tools/clockshift is not on PYTHONPATH")
        pytest.exit(f"CURRICULUM_CLOCK_SHIFT_DAYS={days} but the clock is shifted by {shifted:.2f} days ({why}). "
                    f"Fix: CURRICULUM_CLOCK_SHIFT_DAYS={days} PYTHONPATH=tools/clockshift make test", 2)
    print(f"clock shifted by {shifted:.1f} days: today is {__import__('datetime').date.today()} here")


# The tests that execute whole notebooks or start servers, first: under `make unit`'s parallel
# workers (pytest-xdist hands out tests in this order) they then overlap with each other and with
# the many short tests, instead of one of them running alone at the end.
SLOW_FIRST = ("test_unlabelled_images.py", "test_student.py", "test_browser.py", "test_distributed.py",
              "test_decoding_cache.py", "test_serve.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the order within a file is kept
