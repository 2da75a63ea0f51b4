"""Round-3 reliability cases of the torch adapter (docs/reliability.md): one-line errors, named by case id."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dfo.torch import ZerothOrder  # noqa: E402


def _trained():
    model = torch.nn.Linear(3, 2)
    opt = ZerothOrder(model.parameters(), method="mezo", lr=1e-3, seed=0)
    x = torch.randn(8, 3)
    opt.step(lambda: model(x).pow(2).mean())
    return model, opt


def test_N_T21_truncated_generator_state_is_a_clear_error():
    model, opt = _trained()
    sd = opt.state_dict()
    sd["zo"]["rng"] = sd["zo"]["rng"][:10]
    with pytest.raises(ValueError, match="generator state has 10 bytes"):
        ZerothOrder(model.parameters(), method="mezo", lr=1e-3, seed=0).load_state_dict(sd)


@pytest.mark.parametrize("bad", ["x", -1, 1.5, None])
def test_N_T23_a_step_that_is_not_a_count_is_a_clear_error(bad):
    model, opt = _trained()
    sd = opt.state_dict()
    sd["zo"]["step"] = bad
    with pytest.raises(ValueError, match="the checkpoint's step is"):
        ZerothOrder(model.parameters(), method="mezo", lr=1e-3, seed=0).load_state_dict(sd)


def test_N_T_a_sound_state_still_loads_and_continues_the_same_steps():
    model, opt = _trained()
    sd = opt.state_dict()
    other = ZerothOrder(model.parameters(), method="mezo", lr=1e-3, seed=0)
    other.load_state_dict(sd)
    assert other.step_count == opt.step_count == 1


def test_N_H9_zo_given_as_a_string_is_a_clear_error():
    pytest.importorskip("transformers")
    from dfo.torch.hf import ZOTrainer

    with pytest.raises(ValueError, match=r"zo must be a dict of ZerothOrder keyword arguments.*got 'mezo'"):
        ZOTrainer(model=torch.nn.Linear(2, 2), zo="mezo")
