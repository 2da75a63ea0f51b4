"""Correctness of dfo.torch.ZerothOrder on small CPU models (against autograd and exact identities)."""

from __future__ import annotations

import copy
import math
import warnings

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dfo.estimators import LowRankDirections  # noqa: E402
from dfo.estimators import lowrank_spec as spec  # noqa: E402
from dfo.torch import ZO_METHODS as METHODS, ZerothOrder  # noqa: E402
from dfo.torch.methods import get as get_entry  # noqa: E402

LOW_RANK = [m for m in METHODS if get_entry(m).low_rank]
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


@pytest.mark.parametrize("method", LOW_RANK)
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


@pytest.mark.parametrize("method", tuple(spec.LOWRANK_METHODS))  # the step rules: tests/test_torch_rules.py
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

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = ZerothOrder(model.parameters(), method=method, lr=0.0, eps=1e-2, rank=4, model=model, seed=0)
    assert any("in place" in str(w.message) for w in caught) == (dtype != torch.float32)  # biases are dense
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
    u = torch.from_numpy(spec.draw_core("lozo", tuple(w.shape), 2, opt.last_step.seed, 0, 0))  # the step's U
    n_proj = torch.linalg.solve(v_new.T @ v_new, v_new.T @ full.T).T
    assert torch.allclose(n_proj @ v_new.T, proj, atol=1e-10)
    expected = beta * n_proj + (1 - beta) * g * u.double() / 2
    assert torch.allclose(opt.state[w]["N"].double(), expected, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------- one low-rank source (numpy == torch)
@pytest.mark.parametrize("method", LOW_RANK)
@pytest.mark.parametrize("shape,rank", [((3, 17), 8), ((6, 5), 2), ((1, 4), 3), ((9, 9), 9)])
def test_numpy_and_torch_draw_the_same_direction(method, shape, rank):
    """Same seeds and shape: the torch optimizer's direction D V^T equals LowRankDirections' row, block by block."""
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(*shape, dtype=torch.float64))
    bias = nn.Parameter(torch.randn(shape[0], dtype=torch.float64))
    captured = {}

    def closure():  # the first forward pass sees theta + eps P
        captured.setdefault("w", weight.detach().clone())
        return (weight.sum() + bias.sum()) * 0.0

    before = weight.detach().clone()
    opt = ZerothOrder([weight, bias], method=method, eps=1e-3, rank=rank, n_directions=2, lr=0.0, seed=7)
    opt.step(closure)
    fam = spec.get_method(method).family
    r = spec.block_rank(shape, rank)
    assert r == min(rank, *shape) and opt._kind[0] == "write" and opt._kind[1] == "dense"  # small-matrix rule
    st = opt.state[weight]
    u, v = spec.draw_subspace(fam, shape, r, st["subspace_seed"], 0)
    assert torch.equal(st["V"], torch.from_numpy(v))  # bit-identical factors
    if u is not None:
        assert torch.equal(st["U"], torch.from_numpy(u))
    blocks = (("W", shape), ("b", (shape[0],)))
    dirs = LowRankDirections(fam, blocks, (r, 0), ((u, v), None), 2, opt.last_step.seed)
    numpy_p = torch.tensor(dirs.row(0)[: shape[0] * shape[1]].reshape(shape))
    torch_p = (captured["w"] - before) / 1e-3
    assert torch.allclose(torch_p, numpy_p, rtol=1e-9, atol=1e-9)
    # direction 1 too, straight from the optimizer's factors
    core = torch.from_numpy(spec.draw_core(fam, shape, r, opt.last_step.seed, 0, 1))
    left = spec.left_factor(fam, shape, r, core, None if u is None else torch.from_numpy(u))
    numpy_p1 = torch.tensor(dirs.row(1)[: shape[0] * shape[1]].reshape(shape))
    assert torch.allclose(left @ torch.from_numpy(v).T, numpy_p1, rtol=1e-12, atol=1e-12)


def test_method_registry_is_the_spec():
    assert set(spec.LOWRANK_METHODS) <= set(METHODS)  # the spec's methods, then the torch step rules
    assert all(get_entry(m).new_rule for m in set(METHODS) - set(spec.LOWRANK_METHODS))
    for name, entry in spec.LOWRANK_METHODS.items():
        opt = ZerothOrder([nn.Parameter(torch.zeros(4, 4))], method=name)
        assert (opt.config.rank, opt.config.refresh, opt.config.momentum) == (entry.rank, entry.refresh, entry.momentum)
        assert opt.config.family == entry.family


def test_lozo_m_first_step_equals_lozo_step():
    """LOZO-M's momentum starts at the first estimate (reference code), so step 1 is a LOZO step."""
    outs = []
    for method in ("lozo", "lozo-m"):
        model, closure = _problem(torch.float64)
        opt = ZerothOrder(model.parameters(), method=method, lr=1e-2, rank=2, model=model, seed=3)
        opt.step(closure)
        opt.flush()
        outs.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- torch conventions
def test_add_param_group_is_trained():
    model, closure = _problem(torch.float64)
    first, second = list(model[0].parameters()), list(model[2].parameters())
    opt = ZerothOrder(first, method="subzero", lr=1e-2, rank=2, model=model, seed=0)
    opt.add_param_group({"params": second, "lr": 5e-3})
    before = [p.detach().clone() for p in second]
    opt.step(closure)
    opt.flush()
    assert all(not torch.equal(p, b) for p, b in zip(second, before))
    assert opt._kind[2] == "side" and opt.param_groups[1]["lr"] == 5e-3
    with pytest.raises(ValueError, match="lr must be a finite"):
        opt.add_param_group({"params": [nn.Parameter(torch.zeros(2))], "lr": float("nan")})


@pytest.mark.parametrize("method", METHODS)
def test_parameter_frozen_after_construction_is_skipped(method):
    model, closure = _problem(torch.float64)
    opt = ZerothOrder(model.parameters(), method=method, lr=1e-2, rank=2, model=model, seed=0)
    opt.step(closure)
    opt.flush()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    seen = []

    def watching():
        seen.append(torch.equal(model[0].weight, frozen))
        return closure()

    for _ in range(3):
        opt.step(watching)
    opt.flush()
    assert all(seen) and torch.equal(model[0].weight, frozen)
    with torch.no_grad():  # and its (folded) side path no longer moves: outputs use W exactly
        x = torch.randn(3, 6, dtype=torch.float64)
        assert torch.allclose(model[0](x), x @ frozen.T + model[0].bias, atol=1e-14)
    model[0].weight.requires_grad_(True)  # unfreezing trains it again
    opt.step(closure)
    opt.flush()
    assert not torch.equal(model[0].weight, frozen)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_lr_and_eps_must_be_finite(bad):
    model, closure = _problem()
    with pytest.raises(ValueError, match="lr must be a finite number"):
        ZerothOrder(model.parameters(), lr=bad)
    with pytest.raises(ValueError, match="eps must be a positive finite"):
        ZerothOrder(model.parameters(), eps=bad)
    with pytest.raises(ValueError, match="weight_decay must be a finite"):
        ZerothOrder(model.parameters(), weight_decay=bad)
    opt = ZerothOrder(model.parameters(), lr=1e-3, seed=0)
    before = [p.detach().clone() for p in model.parameters()]
    opt.param_groups[0]["lr"] = bad  # e.g. a scheduler gone wrong: refused before any parameter moves
    with pytest.raises(ValueError, match="param group 0 lr"):
        opt.step(closure)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("seed", [2**70, -1, 1.5, True, "0"])
def test_seed_range_is_validated(seed):
    model, _ = _problem()
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63\)"):
        ZerothOrder(model.parameters(), seed=seed)


def test_foreign_states_are_refused_with_one_clear_error():
    model, closure = _problem()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    opt = ZerothOrder(model.parameters(), method="lozo", rank=2, model=model, seed=0)
    with pytest.raises(ValueError, match="not a ZerothOrder state_dict.*another optimizer"):
        opt.load_state_dict(sgd.state_dict())
    opt.step(closure)
    saved = opt.state_dict()
    other = nn.Sequential(nn.Linear(6, 7), nn.Tanh(), nn.Linear(7, 4)).double()  # same count, other shapes
    opt2 = ZerothOrder(other.parameters(), method="lozo", rank=2, model=other, seed=0)
    with pytest.raises(ValueError, match=r"another model: parameter 0 has shape \(5, 6\) there and \(7, 6\) here"):
        opt2.load_state_dict(saved)
    bigger = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Linear(4, 4)).double()
    opt3 = ZerothOrder(bigger.parameters(), method="lozo", rank=2, seed=0)
    with pytest.raises(ValueError, match="other parameter groups"):
        opt3.load_state_dict(saved)
    tampered = copy.deepcopy(saved)
    tampered["zo"].pop("shapes")
    tampered["state"][0]["V"] = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="state 'V' of parameter 0 has shape"):
        ZerothOrder(model.parameters(), method="lozo", rank=2, seed=0).load_state_dict(tampered)


def test_state_written_before_the_noise_option_resumes_identically():
    """A checkpoint from before ``noise`` existed (no key in its config) means noise="torch"."""
    model, closure = _problem()
    opt = ZerothOrder(model.parameters(), method="mezo", lr=1e-3, model=model, seed=3)
    opt.step(closure)
    saved = copy.deepcopy(opt.state_dict())
    old = copy.deepcopy(saved)
    old["zo"]["config"].pop("noise")
    weights = copy.deepcopy(model.state_dict())
    expected = opt.step(closure), [p.detach().clone() for p in model.parameters()]
    model.load_state_dict(weights)
    again = ZerothOrder(model.parameters(), method="mezo", lr=1e-3, model=model, seed=99)
    again.load_state_dict(old)
    assert again.step(closure) == expected[0]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), expected[1]))
    hashed = ZerothOrder(model.parameters(), method="mezo", lr=1e-3, model=model, seed=3, noise="hash")
    with pytest.raises(ValueError, match="optimizer config differs"):
        hashed.load_state_dict(old)


def test_closure_runs_in_eval_mode_and_modes_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 1)).double()
    model.train()
    model[2].eval()  # a deliberately mixed state must come back as it was
    x = torch.randn(64, 6, dtype=torch.float64)
    modes = []

    def closure():
        modes.append([m.training for m in model.modules()])
        return (model(x) ** 2).mean()

    with torch.no_grad():
        centre = float((model.eval()(x) ** 2).mean())
    model.train()
    model[2].eval()
    opt = ZerothOrder(model.parameters(), lr=1e-3, eps=1e-6, model=model, seed=0)
    opt.step(closure)
    assert modes == [[False] * 4] * 2
    assert [m.training for m in model.modules()] == [True, True, True, False]
    # eval-mode forwards see one network: the two losses average to the centre's up to O(eps^2) (dropout: O(1))
    lp, lm = opt.last_step.loss_plus[0], opt.last_step.loss_minus[0]
    assert abs((lp + lm) / 2 - centre) < 1e-6 * centre
    keep = ZerothOrder(model.parameters(), lr=1e-3, model=model.train(), seed=0, eval_mode=False)
    with pytest.warns(RuntimeWarning, match="dropout is active"):
        keep.step(closure)


@pytest.mark.parametrize("method", ["mezo", "fzoo", "mezo-orth"])
def test_noise_threads_give_bit_identical_steps(method):
    """Dense noise is drawn chunk by chunk by a thread pool: 1 and 2 threads give the same numbers.

    Dense methods only: with torch 2.13 ``addmm_`` itself (the low-rank writes of lozo / lozo-m) differs in
    the last bit between 1 and 2 BLAS threads (2.4e-7 on a 600 x 600 weight), whatever the noise does."""
    from dfo.torch.directions import CHUNK

    runs = []
    for threads in (1, 2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(600, 600), nn.Tanh(), nn.Linear(600, 1))  # 360k weights > CHUNK
        assert model[0].weight.numel() > CHUNK
        x = torch.randn(16, 600)
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            opt = ZerothOrder(model.parameters(), method=method, lr=1e-3, rank=2, n_directions=2, seed=1)
            losses = [opt.step(lambda: (model(x) ** 2).mean()) for _ in range(3)]
        finally:
            torch.set_num_threads(old)
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


@pytest.mark.parametrize("method", ["mezo", "lozo-m"])
@pytest.mark.parametrize("threads", [1, 2])
def test_noise_cache_changes_no_number_and_keeps_to_its_budget(method, threads, monkeypatch):
    """Kept directions (whole, part of the model, none) give bit-identical steps, with weight
    decay, two directions per step and lozo-m's dense momentum buffers (its 1-D biases);
    the cache holds at most its budget and is empty between steps."""
    from dfo.torch import directions

    sizes: list[int] = []
    clear = directions.Generators.clear_cache

    def watch(self):
        sizes.append(self._cached_bytes)
        clear(self)

    monkeypatch.setattr(directions.Generators, "clear_cache", watch)
    budget_big = 600 * 600 * 4  # the big weight alone
    runs = []
    for budget in (0, budget_big, 10**9):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(600, 600), nn.Tanh(), nn.Linear(600, 3))
        x = torch.randn(16, 600)
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            opt = ZerothOrder(model.parameters(), method=method, lr=1e-3, rank=2, n_directions=2, seed=1,
                              weight_decay=0.1, noise_cache_bytes=budget)
            losses = [opt.step(lambda: (model(x) ** 2).mean()) for _ in range(3)]
        finally:
            torch.set_num_threads(old)
        assert all(0 <= b <= budget for b in sizes) and opt._gens._cached_bytes == 0
        if budget == 10**9 and method == "mezo":
            assert max(sizes) == 2 * 4 * sum(p.numel() for p in model.parameters())  # both directions, all tensors
        sizes.clear()
        runs.append((losses, [p.detach().clone() for p in model.parameters()]))
    for losses, params in runs[1:]:
        assert losses == runs[0][0]
        assert all(torch.equal(a, b) for a, b in zip(params, runs[0][1]))


def test_noise_cache_budget_is_validated():
    with pytest.raises(ValueError, match="noise_cache_bytes"):
        ZerothOrder(nn.Linear(2, 2).parameters(), noise_cache_bytes=-1)


@pytest.mark.slow  # torch.compile of the kernel: about 10 s on an idle machine, 90 s under load
def test_hash_noise_is_gaussian_deterministic_and_restores():
    """noise='hash': N(0, 1) moments, the same numbers compiled and eager, lr=0 leaves the weights in place."""
    from dfo.torch import directions

    z = torch.zeros(1 << 20)
    directions.hash_gaussian_(z, 12345, 1.0)
    # 2^20 samples: standard errors 0.001 (mean), 0.0014 (variance), 0.005 (kurtosis)
    assert abs(float(z.mean())) < 0.005 and abs(float(z.var()) - 1) < 0.007 and abs(float((z**4).mean()) - 3) < 0.03
    assert float(z.abs().max()) > 4.5  # real tails, not a bounded approximation
    eager = torch.zeros(1 << 20)
    keys = torch.tensor([12345 & 0x7FFFFFFF, 0], dtype=torch.int32)
    for start in range(0, eager.numel(), directions.CHUNK):
        directions._hash_add(eager[start:start + directions.CHUNK], torch.tensor(start, dtype=torch.int32), keys,
                             torch.tensor(1.0))
    assert torch.allclose(z, eager, atol=1e-5)
    other = torch.zeros(1 << 20)
    directions.hash_gaussian_(other, 12346, 1.0)
    assert abs(float((z * other).mean())) < 0.005  # another seed: uncorrelated
    model, closure = _problem(torch.float32)
    before = [p.detach().clone() for p in model.parameters()]
    opt = ZerothOrder(model.parameters(), method="mezo", lr=0.0, eps=1e-3, seed=0, noise="hash")
    for _ in range(2):
        opt.step(closure)
    assert all(torch.allclose(p, b, atol=1e-6) for p, b in zip(model.parameters(), before))
    with pytest.raises(ValueError, match="noise must be one of"):
        ZerothOrder(model.parameters(), noise="fast")


@pytest.mark.parametrize("method", LOW_RANK)
def test_tied_embedding_and_head_side_path_equals_writing(method):
    """A weight shared by nn.Embedding and nn.Linear: both hooks carry the factors; same losses as writing."""

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 6)
            self.mid = nn.Linear(6, 6)
            self.head = nn.Linear(6, 20, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(torch.tanh(self.mid(self.emb(ids))))

    torch.manual_seed(0)
    model_a = Tied().double()
    model_b = copy.deepcopy(model_a)
    ids = torch.randint(0, 20, (8, 5))
    kw = dict(method=method, lr=1e-2, eps=1e-3, rank=2, refresh=2, seed=5)
    opt_a = ZerothOrder(model_a.parameters(), model=model_a, **kw)
    opt_b = ZerothOrder(model_b.parameters(), **kw)
    assert opt_a._kind[0] == "side" and opt_b._kind[0] == "write"
    w_before = model_a.emb.weight.detach().clone()
    seen = []

    def loss(model):
        def closure():
            if model is model_a:
                seen.append(torch.equal(model_a.emb.weight, w_before))
            return nn.functional.cross_entropy(model(ids).reshape(-1, 20), ids.reshape(-1))
        return closure

    for _ in range(5):
        assert opt_a.step(loss(model_a)) == pytest.approx(opt_b.step(loss(model_b)), rel=1e-10)
        if opt_a.step_count == 1:
            assert all(seen)  # within the first subspace the tied weight is never written
    opt_a.flush()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-10)


def _drift(model, dtype, autocast, steps=40, method="mezo"):
    """Relative weight change after ``steps`` ZO steps at lr 0 (only the +eps/-2eps/+eps round trips)."""
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)).to(dtype)
    before = torch.cat([p.detach().double().flatten() for p in model.parameters()])

    def closure():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model(x).float().pow(2).mean()

    opt = ZerothOrder(model.parameters(), method=method, lr=0.0, eps=1e-3, rank=2, model=model, seed=0)
    for _ in range(steps):
        opt.step(closure)
    opt.flush()
    after = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    return float((after - before).norm() / before.norm())


def test_half_precision_weights_warn_once_and_autocast_over_float32_does_not_drift():
    model, _ = _problem(torch.float32)
    with pytest.warns(RuntimeWarning, match="bfloat16 parameters in place") as caught:
        _drift(copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16, autocast=False, steps=0)
    assert sum("in place" in str(w.message) for w in caught) == 1  # once per optimizer, not per tensor
    with pytest.warns(RuntimeWarning):
        half = _drift(copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16, autocast=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float32 weights: no warning
        full = _drift(copy.deepcopy(model), torch.float32, autocast=True)
    # bfloat16 keeps 8 bits of mantissa: each write rounds by ~2^-9 relative, a random walk over 120 writes;
    # float32 weights under a bfloat16 forward round at 2^-24
    assert half > 1e-3 and full < 1e-5, (half, full)


@pytest.mark.parametrize("method", LOW_RANK)
def test_side_paths_run_under_autocast_over_float32_weights(method):
    model, _ = _problem(torch.float32)
    assert _drift(model, torch.float32, autocast=True, method=method) < 1e-5
