"""dfo.torch.workers: MeZO steps spread over worker processes that exchange seeds and scalar losses only."""

from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dfo.parallel import make_evaluator  # noqa: E402
from dfo.torch import ZerothOrder  # noqa: E402
from dfo.torch.workers import ZOWorkers  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SETTINGS = dict(lr=1e-2, eps=1e-3, n_directions=4, weight_decay=0.1, seed=3)
BATCH = 32


# Module-level so that loky workers import them by reference.
def mlp_task(width: int = 16, seed: int = 0):
    """A small MLP regression task: the model and ``loss_fn(model, step)`` on the step's batch of held data."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 1))
    gen = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(256, 8, generator=gen), torch.randn(256, 1, generator=gen)

    def loss(m, t):  # the batch argument is the step index: the data stays in the worker
        i = (t * BATCH) % 256
        return nn.functional.mse_loss(m(x[i:i + BATCH]), y[i:i + BATCH])

    return model, loss


def nan_task():
    model, _ = mlp_task()
    return model, lambda m, t: torch.tensor(float("nan")) if t == 1 else m[0].weight.sum()


def _reference(steps: int, **settings):
    """ZerothOrder in one process on the same task."""
    model, loss = mlp_task()
    opt = ZerothOrder(model.parameters(), method="mezo", model=model, **settings)
    losses = [opt.step(lambda t=t: loss(model, t)) for t in range(steps)]
    return model, losses, opt


def _run(steps: int, evaluator, factory=mlp_task, **kw):
    with ZOWorkers(factory, evaluator=evaluator, **{**SETTINGS, **kw}) as zo:
        losses, traffic = [], []
        for t in range(steps):
            losses.append(zo.step(t))
            traffic.append(dict(zo.last_traffic))
        model = zo.model
        return model, losses, traffic, zo


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_serial_workers_are_bit_identical_to_zeroth_order():
    ref, ref_losses, opt = _reference(5, **SETTINGS)
    model, losses, _, zo = _run(5, "serial")
    assert losses == ref_losses
    assert zo.last_step.projected_grad == opt.last_step.projected_grad
    _assert_same_weights(model, ref)


def test_two_loky_workers_give_bit_identical_weights_to_one_process():
    ref, ref_losses, _ = _reference(5, **SETTINGS)
    with make_evaluator("loky", n_jobs=2) as ev:
        model, losses, traffic, zo = _run(5, ev)
        assert ev.n_workers == 2 and all(t["items"] >= 2 for t in traffic)  # two shares per step
    assert losses == ref_losses
    _assert_same_weights(model, ref)
    assert zo.forward_passes == 5 * 2 * SETTINGS["n_directions"]


def test_only_seeds_and_scalars_cross_the_process_boundary():
    """The bytes sent per step do not grow with the model (40x more parameters) and stay small."""
    sent = {}
    with make_evaluator("loky", n_jobs=2) as ev:
        for width in (16, 128):
            _, _, traffic, _ = _run(4, ev, functools.partial(mlp_task, width))
            steady = [t for t in traffic[1:] if t["rounds"] == 1]  # a replica behind costs a second round
            assert steady, traffic
            sent[width] = min(t["sent"] for t in steady)
            assert max(t["received"] for t in traffic) < 2000
    n_small = sum(p.numel() for p in mlp_task(16)[0].parameters())
    n_large = sum(p.numel() for p in mlp_task(128)[0].parameters())
    assert n_large > 40 * n_small
    assert sent[16] == sent[128] < 2000, sent  # the large model's weights alone: 4 bytes x 17793


def test_a_replica_behind_catches_up_from_the_log():
    """A fresh process (a replica at step 0) gets the log it misses and evaluates at the right weights."""
    ref, ref_losses, _ = _reference(6, **SETTINGS)
    with ZOWorkers(mlp_task, window=1, **SETTINGS) as zo:
        losses = [zo.step(t) for t in range(3)]
        from dfo.torch import replica

        replica.REPLICAS.pop(zo._key)  # as if a new worker took over: rebuilt from the factory at step 0
        losses += [zo.step(t) for t in range(3, 6)]
        assert losses == ref_losses
        _assert_same_weights(zo.model, ref)


class ReversedEvaluator:
    """Runs a step's shares last first in this process (a Dask worker may run its queue out of order)."""

    n_workers = 2

    def map(self, fn, items, shared=None):
        return [fn(shared, item) for item in reversed(items)][::-1]


def test_shares_run_out_of_order_still_give_the_same_weights():
    ref, ref_losses, _ = _reference(4, **SETTINGS)
    model, losses, traffic, _ = _run(4, ReversedEvaluator())
    assert losses == ref_losses
    _assert_same_weights(model, ref)
    assert max(t["rounds"] for t in traffic) == 2  # the replica rebuilt from the factory asked for the whole log


def test_local_dask_cluster_gives_the_same_weights():
    pytest.importorskip("distributed")
    ref, ref_losses, _ = _reference(3, **SETTINGS)
    with make_evaluator("local-dask", n_jobs=2) as ev:
        model, losses, _, _ = _run(3, ev)
    assert losses == ref_losses
    _assert_same_weights(model, ref)


def test_state_dict_holds_seeds_and_scalars_and_resumes_exactly():
    ref, ref_losses, _ = _reference(5, **SETTINGS)
    with ZOWorkers(mlp_task, **SETTINGS) as zo:
        first = [zo.step(t) for t in range(3)]
        state = zo.state_dict()
    assert not any(torch.is_tensor(v) for v in state["zo_workers"]["log"][0][2])
    with ZOWorkers(mlp_task, **SETTINGS) as again:
        again.load_state_dict(state)
        rest = [again.step(t) for t in range(3, 5)]
        assert first + rest == ref_losses
        _assert_same_weights(again.model, ref)


def test_a_non_finite_loss_raises_and_the_replica_is_rebuilt():
    with ZOWorkers(nan_task, **SETTINGS) as zo:
        zo.step(0)
        with pytest.raises(FloatingPointError, match="loss at theta"):
            zo.step(1)
        assert zo.step_count == 1
        zo.step(2)
        assert zo.step_count == 2


@pytest.mark.parametrize("method", ["subzero", "lozo", "mezo-orth", "fzoo"])
def test_unsupported_methods_are_refused_in_one_line(method):
    with pytest.raises(ValueError, match=f"ZOWorkers runs 'mezo' only.*not '{method}'") as err:
        ZOWorkers(mlp_task, method=method)
    assert "\n" not in str(err.value)


def test_an_unknown_method_gets_the_registrys_error():
    with pytest.raises(ValueError, match="unknown method 'mezzo'") as err:
        ZOWorkers(mlp_task, method="mezzo")
    assert "\n" not in str(err.value)
