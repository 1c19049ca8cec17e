"""Datasets: one registry, one lookup order (local layout -> cache -> download), one clear
error when nothing works. See :mod:`helpers.course.data.registry` (week 0).

    from helpers.course.data import load_dataset
    mnist = load_dataset("mnist")        # Loaded(name, origin, path, data)
    print(mnist.describe())
"""

from . import images, text  # noqa: F401,E402  (register mnist, fashion_mnist, multi30k)
from .registry import (  # noqa: F401
    ChecksumError,
    DataError,
    DataLayoutError,
    DatasetSpec,
    DataUnavailableError,
    Loaded,
    available,
    get_spec,
    load_dataset,
    load_or_standin,
    missing_files,
    register,
    verify_manifest,
    write_manifest,
)
