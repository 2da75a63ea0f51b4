"""Radius rules (Berahas et al. 2022)."""

import numpy as np
import pytest

from dfo.radius import default_sigma, sampling_radius


def test_radius_rules():
    eps, L, M, n = 1e-6, 4.0, 2.0, 10
    assert sampling_radius("ffd", eps, L=L) == pytest.approx(2 * np.sqrt(eps / L))
    assert sampling_radius("interpolation", eps, L=L) == pytest.approx(2 * np.sqrt(eps / L))
    assert sampling_radius("cfd", eps, M=M) == pytest.approx((3 * eps / M) ** (1 / 3))
    assert sampling_radius("gaussian", eps, L=L) == pytest.approx(np.sqrt(eps / L))
    assert sampling_radius("sphere", eps, L=L, n=n) == pytest.approx(np.sqrt(n * eps / L))
    with pytest.raises(ValueError, match="needs L"):
        sampling_radius("ffd", eps)
    with pytest.raises(ValueError, match="eps_f"):
        sampling_radius("ffd", -1.0, L=1.0)
    assert default_sigma("ffd", 5) == pytest.approx(2 * np.sqrt(1e-15))
