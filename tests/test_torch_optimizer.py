"""Correctness of dfo.torch.ZerothOrder on small CPU models (against autograd and exact identities)."""

from __future__ import annotations

import copy
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dfo.torch import ZerothOrder  # noqa: E402

METHODS = ["mezo", "subzero", "lozo", "lozo-m"]
pytestmark = pytest.mark.usefixtures("torch_one_thread")




def _problem(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4)).to(dtype)
    x = torch.randn(32, 6, dtype=dtype)
    y = torch.randn(32, 4, dtype=dtype)

    def closure():
        return 0.5 * ((model(x) - y) ** 2).mean()

    return model, closure


def _autograd(model, closure):
    model.zero_grad()
    with torch.enable_grad():
        closure().backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _cos(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


def _mean_estimate(opt, model, trials):
    """Average of ``-(theta_after - theta_before)`` over ``trials`` one-step runs with lr=1."""
    params = list(model.parameters())
    start = [p.detach().clone() for p in params]
    total = [torch.zeros_like(p) for p in params]
    for _ in range(trials):
        opt.step(closure_holder[0])
        opt.flush()
        for t, p, s in zip(total, params, start):
            t.add_(s - p.detach())
            p.data.copy_(s)
    return [t / trials for t in total]


closure_holder: list = []


def test_mezo_average_converges_to_gradient():
    model, closure = _problem()
    closure_holder[:] = [closure]
    grads = _autograd(model, closure)
    opt = ZerothOrder(model.parameters(), method="mezo", lr=1.0, eps=1e-6, seed=1)
    est = _mean_estimate(opt, model, 2000)
    flat_est = torch.cat([e.flatten() for e in est])
    flat_g = torch.cat([g.flatten() for g in grads])
    # 59 dims, 2000 samples: expected cosine about (1 + 59/2000)^-1/2 = 0.985
    assert _cos(flat_est, flat_g) > 0.96
    assert flat_est.norm() / flat_g.norm() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("use_model", [True, False])
def test_subzero_average_converges_to_projected_gradient(use_model):
    model, closure = _problem()
    closure_holder[:] = [closure]
    grads = _autograd(model, closure)
    opt = ZerothOrder(
        model.parameters(), method="subzero", lr=1.0, eps=1e-6, rank=2, refresh=10**9,
        model=model if use_model else None, seed=2,
    )
    est = _mean_estimate(opt, model, 800)
    w = model[0].weight
    st = opt.state[w]
    u, v = st["U"].double(), st["V"].double()
    assert torch.allclose(u.T @ u, torch.eye(2, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(v.T @ v, torch.eye(2, dtype=torch.float64), atol=1e-6)
    g = grads[0]
    m, n = w.shape
    target = (m * n / 4) * u @ u.T @ g @ v @ v.T  # (sqrt(mn)/r)^2 U U^T G V V^T
    # exact: every estimate lies in the subspace {U X V^T}
    residual = est[0] - u @ (u.T @ est[0] @ v) @ v.T
    assert residual.abs().max() < 1e-8 * est[0].abs().max()
    assert _cos(est[0], target) > 0.98
    assert est[0].norm() / target.norm() == pytest.approx(1.0, rel=0.15)
    # the bias still gets a dense Gaussian estimate of its gradient
    assert _cos(est[1], grads[1]) > 0.9


def test_lozo_average_converges_to_gradient_times_vvt():
    model, closure = _problem()
    closure_holder[:] = [closure]
    grads = _autograd(model, closure)
    opt = ZerothOrder(model.parameters(), method="lozo", lr=1.0, eps=1e-6, rank=2, refresh=10**9, model=model, seed=3)
    est = _mean_estimate(opt, model, 1500)
    w = model[0].weight
    v = opt.state[w]["V"].double()
    target = grads[0] @ v @ v.T / 2  # E[g U V^T / r | V] = G V V^T / r
    proj = v @ torch.linalg.solve(v.T @ v, v.T)
    assert (est[0] - est[0] @ proj).abs().max() < 1e-8 * est[0].abs().max()
    assert _cos(est[0], target) > 0.97
    assert est[0].norm() / target.norm() == pytest.approx(1.0, rel=0.15)


@pytest.mark.parametrize("method", ["subzero", "lozo", "lozo-m"])
def test_side_path_equals_writing_into_weights(method):
    """Same seeds: the side-path run (model=) and the write-into-weights run see the same losses."""
    model_a, closure_a = _problem(torch.float64)
    model_b = copy.deepcopy(model_a)
    x = torch.randn(32, 6, dtype=torch.float64)

    def closure_a2():
        return 0.5 * (model_a(x) ** 2).mean()

    def closure_b():
        return 0.5 * (model_b(x) ** 2).mean()

    kw = dict(method=method, lr=1e-2, eps=1e-3, rank=2, refresh=3, seed=5)
    opt_a = ZerothOrder(model_a.parameters(), model=model_a, **kw)
    opt_b = ZerothOrder(model_b.parameters(), **kw)
    assert "side" in opt_a._kind.values() and "side" not in opt_b._kind.values()
    for _ in range(7):  # crosses two refreshes
        la, lb = opt_a.step(closure_a2), opt_b.step(closure_b)
        assert la == pytest.approx(lb, rel=1e-10, abs=1e-12)
        assert opt_a.last_step.loss_plus == pytest.approx(opt_b.last_step.loss_plus, rel=1e-10)
    with torch.no_grad():  # the model's forward includes the pending A V^T before any flush
        assert torch.allclose(model_a(x), model_b(x), atol=1e-10)
    opt_a.flush()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_lr_zero_restores_parameters(method):
    model, closure = _problem(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    opt = ZerothOrder(model.parameters(), method=method, lr=0.0, eps=1e-3, rank=2, model=model, seed=0,
                      n_directions=2)
    for _ in range(3):
        opt.step(closure)
    for k, (p, b) in enumerate(zip(model.parameters(), before)):
        if opt._kind[k] == "side":
            assert torch.equal(p, b)  # never written: bit-exact
        else:  # in place +eps z, -2 eps z, +eps z: float rounding only (3 roundings x 2 directions x 3 steps)
            assert (p - b).abs().max() <= 18 * torch.finfo(torch.float32).eps * (b.abs().max() + 5e-3)
    opt.flush()
    for p, b in zip(model.parameters(), before):
        assert torch.allclose(p, b, atol=1e-8)


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fail_at", [1, 2])
def test_closure_raising_leaves_parameters_unperturbed(method, fail_at):
    model, closure = _problem(torch.float64)
    x = torch.randn(3, 6, dtype=torch.float64)
    opt = ZerothOrder(model.parameters(), method=method, lr=1e-2, rank=2, model=model, seed=0)
    opt.step(closure)
    with torch.no_grad():
        out_before = model(x).clone()
    before = [p.detach().clone() for p in model.parameters()]
    calls = [0]

    def bad():
        calls[0] += 1
        if calls[0] == fail_at:
            raise _Boom("data loader died")
        return closure()

    with pytest.raises(_Boom):
        opt.step(bad)
    assert opt.step_count == 1
    for p, b in zip(model.parameters(), before):
        assert torch.allclose(p, b, rtol=0, atol=1e-14)
    with torch.no_grad():
        assert torch.allclose(model(x), out_before, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_nan_loss_raises_and_restores(method):
    model, closure = _problem(torch.float64)
    before = [p.detach().clone() for p in model.parameters()]
    opt = ZerothOrder(model.parameters(), method=method, lr=1e-2, rank=2, model=model, seed=0)
    calls = [0]

    def nan_on_minus():
        calls[0] += 1
        return closure() * (float("nan") if calls[0] == 2 else 1.0)

    with pytest.raises(FloatingPointError, match=r"step 0: loss at theta -eps"):
        opt.step(nan_on_minus)
    opt.flush()
    for p, b in zip(model.parameters(), before):
        assert torch.allclose(p, b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("method", METHODS)
def test_resume_gives_identical_losses(method, tmp_path):
    kw = dict(method=method, lr=5e-2, eps=1e-3, rank=2, refresh=3, seed=11, n_directions=2)
    model, closure = _problem(torch.float32)
    init = copy.deepcopy(model.state_dict())
    opt = ZerothOrder(model.parameters(), model=model, **kw)
    straight = []
    for t in range(10):
        if t == 4:  # the uninterrupted run checkpoints too (state_dict folds side-path updates)
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ck.pt")
        straight.append(opt.step(closure))

    model2, closure2 = _problem(torch.float32)
    model2.load_state_dict(init)
    opt2 = ZerothOrder(model2.parameters(), model=model2, **{**kw, "seed": 999})
    ck = torch.load(tmp_path / "ck.pt", weights_only=False)
    model2.load_state_dict(ck["model"])
    opt2.load_state_dict(ck["opt"])
    resumed = [opt2.step(closure2) for _ in range(6)]
    assert resumed == straight[4:]  # bit for bit


def test_only_requires_grad_parameters_are_touched():
    model, closure = _problem(torch.float32)
    model[0].weight.requires_grad_(False)
    model[2].bias.requires_grad_(False)
    frozen = [model[0].weight.detach().clone(), model[2].bias.detach().clone()]
    for method in METHODS:
        opt = ZerothOrder(model.parameters(), method=method, lr=1e-2, rank=2, model=model, seed=0)
        for _ in range(3):
            opt.step(closure)
        opt.flush()
        assert torch.equal(model[0].weight, frozen[0]) and torch.equal(model[2].bias, frozen[1])
        opt.close()


def test_gradient_accumulation_shares_one_perturbation():
    """A closure averaging two half batches gives the same losses as the full batch."""
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 4, dtype=torch.float64)
    model_b = copy.deepcopy(model)

    def full():
        return ((model(x) - y) ** 2).mean()

    def micro():
        return sum(((model_b(xb) - yb) ** 2).mean() for xb, yb in zip(x.chunk(2), y.chunk(2))) / 2

    for method in METHODS:
        oa = ZerothOrder(model.parameters(), method=method, lr=1e-2, rank=2, model=model, seed=4)
        ob = ZerothOrder(model_b.parameters(), method=method, lr=1e-2, rank=2, model=model_b, seed=4)
        for _ in range(4):
            assert oa.step(full) == pytest.approx(ob.step(micro), rel=1e-12)
        oa.close()
        ob.close()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", METHODS)
def test_low_precision_dtypes_step_and_restore(dtype, method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)).to(dtype)
    x, y = torch.randn(64, 16, dtype=dtype), torch.randn(64, 4, dtype=dtype)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        return ((model(x) - y).float() ** 2).mean()

    opt = ZerothOrder(model.parameters(), method=method, lr=0.0, eps=1e-2, rank=4, model=model, seed=0)
    opt.step(closure)
    opt.flush()
    tol = {torch.float32: 1e-6, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    for p, b in zip(model.parameters(), before):
        assert p.dtype == dtype
        assert (p.float() - b.float()).abs().max() <= tol * (1 + b.float().abs().max())


def test_bad_arguments_are_named():
    model = nn.Linear(3, 3)
    with pytest.raises(ValueError, match="unknown method"):
        ZerothOrder(model.parameters(), method="adam")
    with pytest.raises(ValueError, match="momentum is only used by 'lozo-m'"):
        ZerothOrder(model.parameters(), method="mezo", momentum=0.9)
    opt = ZerothOrder(model.parameters())
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="scalar"):
        opt.step(lambda: torch.ones(2))


def test_lozo_m_momentum_is_projected_on_refresh():
    model, closure = _problem(torch.float64)
    opt = ZerothOrder(model.parameters(), method="lozo-m", lr=1e-2, rank=2, refresh=2, model=model, seed=0)
    w = model[0].weight
    opt.step(closure)
    opt.step(closure)
    n_old, v_old = opt.state[w]["N"].clone(), opt.state[w]["V"].clone()
    opt.step(closure)  # refreshes V first, then updates N
    v_new = opt.state[w]["V"]
    assert not torch.equal(v_new, v_old)
    beta = opt.config.momentum
    # reconstruct: N_proj V_new^T is the least-squares projection of N_old V_old^T on rows spanned by V_new^T
    full = n_old @ v_old.T
    proj = full @ v_new @ torch.linalg.solve(v_new.T @ v_new, v_new.T)
    g = opt.last_step.projected_grad[0]
    u = opt._direction(0, opt.last_step.seeds[0])  # regenerated from the step's seed
    n_proj = torch.linalg.solve(v_new.T @ v_new, v_new.T @ full.T).T
    assert torch.allclose(n_proj @ v_new.T, proj, atol=1e-10)
    expected = beta * n_proj + (1 - beta) * g * u.double() / 2
    assert torch.allclose(opt.state[w]["N"].double(), expected, rtol=1e-5, atol=1e-8)
