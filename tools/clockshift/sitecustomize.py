"""Every Python process started with this folder on PYTHONPATH sees a calendar shifted by
``CURRICULUM_CLOCK_SHIFT_DAYS`` days (CI: ``make test`` again a year ahead, issue #20).

    CURRICULUM_CLOCK_SHIFT_DAYS=365 PYTHONPATH=tools/clockshift make test

Only the calendar moves (``time.time``, ``datetime.now``, ``date.today``, ``time.localtime``
...; with ``time-machine``, and the clock keeps ticking); ``time.monotonic``, sleeps and
timeouts are untouched. Notebook kernels and other Python subprocesses inherit the variables,
so they are shifted too. Why not Debian's ``faketime``: libfaketime 0.9.10 breaks Python 3.11
either way (its fake monotonic clock hangs ``threading.Event.wait``; without it ``time.sleep``
fails with EINVAL). ``tests/conftest.py`` stops the test run if the shift did not take.
"""

import os

_days = os.environ.get("CURRICULUM_CLOCK_SHIFT_DAYS")
if _days:
    try:
        import datetime as _dt

        import time_machine as _tm

        _tm.travel(_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=float(_days)), tick=True).start()
    except Exception as _exc:  # noqa: BLE001 - a sitecustomize must not stop Python; conftest reports it
        os.environ["CURRICULUM_CLOCK_SHIFT_ERROR"] = f"{type(_exc).__name__}: {_exc}"
