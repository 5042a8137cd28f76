"""Shared fixtures. Benchmark images come from ../shared/benchmarks when it exists;
tests that need them skip, visibly, when it does not (a user's clone has no shared/)."""

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO.parent / "shared" / "benchmarks"


def benchmark_dir(name: str, kind: str) -> Path:
    """Set5/Set14 HR or LRx4 folder, or a visible skip when the benchmark copy is absent."""
    path = BENCHMARKS / name / kind
    if not path.is_dir():
        pytest.skip(f"benchmark images not found at {path} (shared/ is not part of a plain clone)")
    return path


@pytest.fixture
def photo() -> np.ndarray:
    """A 96x128 RGB uint8 crop of scikit-image's astronaut: real texture, embedded in the wheel."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:196, 150:278])
