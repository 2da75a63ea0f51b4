"""The step rules of dfo.torch.methods (mezo-orth, mezo-ls, fzoo, fzoo-ls; mezo-interp: test_torch_interp.py) and every
registry method on a tiny LM."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch import nn  # noqa: E402

from dfo.torch import ZO_METHODS as METHODS, ZerothOrder  # noqa: E402
from dfo.torch.directions import CHUNK, Generators  # noqa: E402
from dfo.torch.methods import get as get_entry  # noqa: E402

RULES = [m for m in METHODS if get_entry(m).new_rule]
pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: per method: lr that trains the tiny LM below in 60 steps (the line-search methods adapt theirs from it)
TINY_LR = {"mezo": 3e-3, "subzero": 3e-3, "lozo": 3e-3, "lozo-m": 3e-3, "mezo-orth": 3e-3, "mezo-ls": 3e-3,
           "fzoo": 1e-2, "fzoo-ls": 1e-2, "mezo-interp": 3e-3}


def _tiny_llama(seed=0):
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(seed))
    return model, lambda: model(input_ids=ids, labels=ids).loss


def test_every_registry_method_has_a_tiny_lm_setting():
    assert set(TINY_LR) == set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_every_registry_method_lowers_the_loss_of_a_tiny_causal_lm(method):
    model, closure = _tiny_llama()
    with torch.no_grad():
        before = float(closure())
    opt = ZerothOrder(model.parameters(), method=method, lr=TINY_LR[method], model=model, seed=0, eps=1e-3)
    for _ in range(60):
        opt.step(closure)
    opt.flush()
    with torch.no_grad():
        after = float(closure())
    # random init: loss ~ ln 64 = 4.16; measured decreases 0.05-0.5 (fixed seeds)
    assert after < before - 0.03, (method, before, after)
    assert opt.forward_passes >= 60


def _regenerate(gens, params, seeds_of):
    """The k directions z_i as flat float64 vectors (test only: materialised)."""
    k = len(seeds_of(0))
    cols = []
    for i in range(k):
        parts = []
        for j, p in enumerate(params):
            z = torch.zeros_like(p)
            gens.add_gaussian([(z, seeds_of(j)[i], 1.0)])
            parts.append(z.reshape(-1).double())
        cols.append(torch.cat(parts))
    return torch.stack(cols, 1)  # d x k


@pytest.mark.parametrize("k", [1, 3, 6])
def test_orthogonal_directions_are_orthonormal_and_are_what_is_applied(k):
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(CHUNK + 1000)), nn.Parameter(torch.randn(7, 5))]  # > 1 chunk, 2 tensors
    seen = []

    def closure():
        seen.append(torch.cat([p.detach().reshape(-1).double() for p in params]))
        return sum((p ** 2).sum() for p in params)

    theta = torch.cat([p.detach().reshape(-1).double() for p in params])
    opt = ZerothOrder(params, method="mezo-orth", n_directions=k, lr=0.0, eps=1e-3, seed=3)
    opt.step(closure)
    comb = np.array(opt.last_step.combination)
    z = _regenerate(Generators(), params, lambda j: [opt._dense_seed(opt._slots[j], i) for i in range(k)])
    d = z.shape[0]
    q = z @ torch.from_numpy(comb) / math.sqrt(d)  # unit directions q_j
    assert torch.allclose(q.T @ q, torch.eye(k, dtype=torch.float64), atol=1e-6, rtol=0)
    for j in range(k):  # the closure saw theta + eps sqrt(d) q_j, then theta - eps sqrt(d) q_j
        for sign, x in ((1, seen[2 * j]), (-1, seen[2 * j + 1])):
            assert torch.allclose((x - theta) / (sign * 1e-3), math.sqrt(d) * q[:, j], rtol=0, atol=2e-3)
    after = torch.cat([p.detach().reshape(-1).double() for p in params])
    assert torch.allclose(after, theta, rtol=0, atol=1e-5)  # lr 0: restored (float32 round trips)


def _peak_rss_delta(fn):
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")

    def read(key):
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key))

    base = read("VmRSS:")
    fn()
    return read("VmHWM:") - base


@pytest.mark.parametrize("method", ["mezo-orth", "mezo-ls", "fzoo"])
def test_step_rules_never_hold_a_direction_whole(method):
    """Peak RSS during a step stays far below one more copy of the parameter (32 MB): directions are
    regenerated chunk by chunk (chunks of 1 MB, k at a time for the Gram matrix), never stored whole."""
    try:
        open("/proc/self/clear_refs", "w").close()
    except OSError:
        pytest.skip("no /proc/self/clear_refs: peak RSS cannot be reset here")
    p = nn.Parameter(torch.zeros(8 * 2**20))
    size = p.numel() * 4
    opt = ZerothOrder([p], method=method, n_directions=4, lr=1e-3, seed=0, noise_cache_bytes=0)
    closure = lambda: p.sum()  # noqa: E731  (no temporary of the parameter's size)
    opt.step(closure)  # warm-up: thread pools, scratch buffers
    delta = _peak_rss_delta(lambda: opt.step(closure))
    assert delta < 0.25 * size, f"step peak {delta / 2**20:.1f} MB above RSS for a {size / 2**20:.0f} MB parameter"


def _noisy_quadratic(noise_amplitude, dim=50, seed=0):
    """f(x) = 0.5 |x - 1|^2 on a fixed 'batch', plus a noise that alternates +-amplitude/2 between calls."""
    torch.manual_seed(seed)
    x = nn.Parameter(torch.zeros(dim, dtype=torch.float64))
    calls = [0]

    def closure():
        calls[0] += 1
        return 0.5 * ((x - 1) ** 2).sum() + noise_amplitude * (0.5 if calls[0] % 2 else -0.5)

    return x, closure


def test_line_search_accepts_only_a_decrease_beyond_the_noise_slack():
    # noise-free: steps are accepted and the loss falls
    x, closure = _noisy_quadratic(0.0)
    opt = ZerothOrder([x], method="mezo-ls", lr=1e-2, eps=1e-4, seed=0)
    start = 0.5 * 50
    for _ in range(60):
        opt.step(closure)
    assert opt.last_step.noise == 0.0
    assert float(0.5 * ((x.detach() - 1) ** 2).sum()) < 0.5 * start  # measured 0.38 x start
    # every accepted trial decreased f by at least c a s + 2 sigma; every rejected one did not
    for amplitude in (0.0, 0.3):
        x, closure = _noisy_quadratic(amplitude)
        opt = ZerothOrder([x], method="mezo-ls", lr=1e-2, eps=1e-4, seed=1)
        for _ in range(25):
            opt.step(closure)
            info = opt.last_step
            s = float(np.mean(np.square(info.projected_grad)))
            slack = 2 * info.noise
            for t, (a, ft) in enumerate(info.trials):
                beyond = info.loss_base - ft >= opt.config.ls_c * a * s + slack
                assert beyond == (info.accepted and t == len(info.trials) - 1)
        if amplitude:
            assert info.noise == pytest.approx(amplitude / math.sqrt(2))


def test_line_search_does_not_move_when_no_decrease_exceeds_the_noise():
    """The largest decrease available along any direction (25, from 0.5 |x - 1|^2 at x = 0) is below the
    slack 2 sigma = 2 * 30 / sqrt(2): no step may be accepted, the parameters stay where they are."""
    x, closure = _noisy_quadratic(30.0)
    opt = ZerothOrder([x], method="mezo-ls", lr=1e-2, eps=1e-4, seed=0)
    for _ in range(10):
        opt.step(closure)
        assert opt.last_step.accepted is False and opt.last_step.trials
    assert torch.allclose(x.detach(), torch.zeros(50, dtype=torch.float64), atol=1e-12)


def test_line_search_measures_the_noise_by_repeats_only_every_noise_every_steps():
    x, closure = _noisy_quadratic(0.0)
    opt = ZerothOrder([x], method="mezo-ls", lr=1e-2, eps=1e-4, seed=0, noise_every=5, ls_trials=1)
    passes = []
    for _ in range(10):
        opt.step(closure)
        passes.append(opt.last_step.forward_passes)
    assert passes == [5, 4, 4, 4, 4, 5, 4, 4, 4, 4]  # f0 (+ repeat), f(x +- eps z), one trial
    assert opt.forward_passes == sum(passes) and max(passes) <= opt.config.max_forward_passes()


def test_line_search_starts_at_the_newton_step_along_z():
    """On a quadratic the three-point curvature is exact, so the first trial is s / (u^T H u) = 1 / (z^T H z)."""
    x, closure = _noisy_quadratic(0.0, dim=20)
    opt = ZerothOrder([x], method="mezo-ls", lr=10.0, eps=1e-3, seed=0)
    opt.step(closure)
    info = opt.last_step
    z = _regenerate(Generators(), [x], lambda j: [opt._dense_seed(opt._slots[0], 0)])[:, 0]
    assert info.curvature[0] == pytest.approx(float(z @ z), rel=1e-6)  # H = I
    assert info.trials[0][0] == pytest.approx(1 / float(z @ z), rel=1e-6)
    assert info.accepted


def test_fzoo_mean_baseline_cancels_the_one_sided_curvature_bias():
    """f = 0.5 h |x|^2 + b . x at x = 0: the one-sided differences (f_i - f(x)) / eps carry eps h |z|^2 / 2
    (here 50x the gradient's size); with the mean baseline the average update points along -b."""
    dim, h = 400, 1e3
    b = torch.randn(dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    b = b / b.norm()
    totals = {}
    for baseline in ("mean", "base"):
        x = nn.Parameter(torch.zeros(dim, dtype=torch.float64))
        closure = lambda: 0.5 * h * (x ** 2).sum() + b @ x  # noqa: E731
        opt = ZerothOrder([x], method="fzoo", lr=1.0, eps=1e-4, n_directions=8, seed=0, baseline=baseline)
        total = torch.zeros(dim, dtype=torch.float64)
        for _ in range(200):
            with torch.no_grad():
                x.zero_()
            opt.step(closure)
            total -= x.detach()
        totals[baseline] = float(total @ b / total.norm())
    assert totals["mean"] > 0.6 and abs(totals["base"]) < 0.2, totals  # measured 0.68 and -0.02


def test_fzoo_takes_n_forward_passes_and_base_one_more():
    x, closure = _noisy_quadratic(0.0)
    for baseline, want in (("mean", 6), ("base", 7)):
        opt = ZerothOrder([x], method="fzoo", n_directions=6, lr=1e-3, seed=0, baseline=baseline)
        opt.step(closure)
        assert opt.last_step.forward_passes == want == opt.config.max_forward_passes()


@pytest.mark.parametrize("method", RULES)
def test_rules_restore_the_parameters_when_a_loss_is_nan(method):
    x, closure = _noisy_quadratic(0.0)
    opt = ZerothOrder([x], method=method, lr=1e-2, seed=0)
    calls = [0]

    def nan_on_third():
        calls[0] += 1
        return closure() * (float("nan") if calls[0] == 3 else 1.0)

    with pytest.raises(FloatingPointError, match="step 0"):
        opt.step(nan_on_third)
    assert torch.allclose(x.detach(), torch.zeros(50, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("method", RULES)
def test_rules_resume_bit_identically(method):
    def run(split):
        x, closure = _noisy_quadratic(0.0, seed=0)
        opt = ZerothOrder([x], method=method, lr=1e-2, seed=5)
        losses = [opt.step(closure) for _ in range(split)]
        state = opt.state_dict()
        x2 = nn.Parameter(x.detach().clone())
        calls = [0]

        def closure2():
            calls[0] += 1
            return 0.5 * ((x2 - 1) ** 2).sum()

        opt2 = ZerothOrder([x2], method=method, lr=1e-2, seed=99)
        opt2.load_state_dict(state)
        losses += [opt2.step(closure2) for _ in range(6 - split)]
        return losses, x2.detach().clone(), opt2.forward_passes

    a, b = run(6), run(2)
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and a[2] == b[2]


def _per_example_problem(spread, dim=30, n=16, seed=0):
    """Per-example losses 0.5 |x - 1|^2 + spread * c_e . x (the c_e sum to zero: the mean is the quadratic)."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(n, dim, dtype=torch.float64, generator=gen)
    c -= c.mean(0)
    x = nn.Parameter(torch.zeros(dim, dtype=torch.float64))
    return x, lambda: 0.5 * ((x - 1) ** 2).sum() + spread * (c @ x)


@pytest.mark.parametrize("spread", [0.0, 0.5, 5.0])
def test_line_search_with_per_example_losses_shrinks_and_asks_for_a_decrease_beyond_the_batch_noise(spread):
    """Per-example losses: the slopes are shrunk by rho = max(0, 1 - SE^2 / g^2) and a trial is accepted only when
    the mean decrease exceeds c a s + 2 sigma + ls_batch_slack * SE(decrease); no spread, no batch noise."""
    x, closure = _per_example_problem(spread)
    opt = ZerothOrder([x], method="mezo-ls", lr=1e-2, eps=1e-4, seed=0)
    start = float(closure().detach().mean())
    accepted = 0
    for _ in range(40):
        opt.step(closure)
        info = opt.last_step
        g = info.projected_grad[0]
        assert 0.0 <= info.shrinkage[0] <= 1.0
        for t, (a, ft) in enumerate(info.trials):
            need = opt.config.ls_c * a * info.shrinkage[0] * g ** 2 + 2 * info.noise + \
                opt.config.ls_batch_slack * info.batch_noise[t]
            assert (info.loss_base - ft >= need) == (info.accepted and t == len(info.trials) - 1)
            if spread == 0.0:
                assert info.batch_noise[t] == pytest.approx(0.0, abs=1e-9)
        accepted += bool(info.accepted)
    end = float(closure().detach().mean())
    assert end <= start
    # measured accepted steps of 40: spread 0 -> 40, 0.5 -> 33, 5 -> 1 (fixed seeds)
    assert accepted == {0.0: 40, 0.5: 33, 5.0: 1}[spread]
