"""Float32 numbers written as the decimals they hold, not the float64 noise of their widening."""
from __future__ import annotations

import numpy as np

__all__ = ["float32_decimals"]


def float32_decimals(x) -> np.ndarray:
    """Float32 numbers as the float64 of their shortest decimal form (94.80000305 -> 94.8).

    The raw truth is stored as float32; widening it as is would print float32 noise in a CSV
    (``94.800003``). The shortest decimal that reads back as the same float32 loses nothing the
    float32 held (about 1 s per million values). NaN stays NaN. Finite values only, a million
    at a time (the text form takes 64 bytes a value).
    """
    x32 = np.asarray(x, np.float32).reshape(-1)
    out = x32.astype(np.float64)
    finite = np.flatnonzero(np.isfinite(x32))
    for a in range(0, len(finite), 1 << 20):
        idx = finite[a:a + (1 << 20)]
        out[idx] = x32[idx].astype(str).astype(np.float64)
    return out.reshape(np.shape(x))
