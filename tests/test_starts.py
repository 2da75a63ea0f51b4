"""Multi-start race (TrainConfig.starts): lanes are plain runs of their own seeds, the best continues,
every episode counts, and a run interrupted mid-race resumes exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dfo.policies.training import TrainConfig, Trainer, read_progress
from dfo.policies.training.starts import StartRace
from test_train import _cfg, _det, _same

RACE = dict(n_directions=4, top_b=2, starts=3, start_episodes=16, episodes=64, seed=5)


def test_lane_seeds_are_the_run_seed_then_distinct_derived_seeds():
    seeds = [StartRace.lane_seed(5, k) for k in range(4)]
    assert seeds[0] == 5 and len(set(seeds)) == 4
    assert seeds == [StartRace.lane_seed(5, k) for k in range(4)]  # deterministic
    assert all(0 <= s < 2**31 for s in seeds)


def test_the_winner_continues_from_exactly_where_its_start_ended():
    with Trainer(_cfg(**RACE)) as tr:
        ends = []
        while tr.race.racing:
            lane = tr.race.lane
            tr.step()
            if tr.race.lane != lane:
                ends.append(tr.params.copy() if tr.race.racing else None)
        race = tr.race
        assert len(race.scores) == 3 and tr.episodes == 3 * 16  # every lane's episodes are counted
        winner = race.winner
        assert winner == int(np.argmax(race.scores))
        won_params = tr.params.copy()
        tr.run()
        assert tr.episodes >= 64
    # each lane is a plain run of its own seed: the winner's parameters are that run's after 16 episodes
    plain = _cfg(**{**RACE, "starts": 1, "episodes": 16, "seed": StartRace.lane_seed(5, winner)})
    with Trainer(plain) as alone:
        alone.run()
    np.testing.assert_array_equal(won_params, alone.params)


def test_one_start_is_a_plain_run():
    a = _cfg(**{**RACE, "starts": 1, "max_iterations": 4})
    b = dataclasses.replace(a, start_episodes=999)  # ignored with one start
    with Trainer(a) as ta, Trainer(b) as tb:
        ra, rb = ta.run(), tb.run()
    np.testing.assert_array_equal(ra.params, rb.params)


@pytest.mark.parametrize("cut", [3, 7])  # mid-race (lane 1) and after the race is decided
def test_a_run_interrupted_mid_race_resumes_exactly(tmp_path, cut):
    cfg = _cfg(**RACE, checkpoint_every=1)
    with Trainer(cfg, out_dir=tmp_path / "full") as tr:
        full = tr.run()
    with Trainer(dataclasses.replace(cfg, max_iterations=cut), out_dir=tmp_path / "cut") as tr:
        tr.run()
    with Trainer.resume(tmp_path / "cut", overrides={"max_iterations": None}) as tr:
        resumed = tr.run()
    assert _same(_det(read_progress(tmp_path / "full" / "progress.csv")),
                 _det(read_progress(tmp_path / "cut" / "progress.csv")))
    np.testing.assert_array_equal(full.params, resumed.params)


def test_a_race_that_leaves_no_budget_is_refused_in_one_line():
    with pytest.raises(ValueError, match="leave nothing of the 48-episode budget"):
        _cfg(**{**RACE, "episodes": 48}).resolved()
    with pytest.raises(ValueError, match="starts must be >= 1"):
        _cfg(starts=0)


def test_runs_saved_before_multi_start_keep_one_start():
    d = _cfg(episodes=32).resolved().to_dict()
    d.pop("starts"), d.pop("start_episodes")
    assert TrainConfig.from_dict(d).resolved().starts == 1


def test_the_progress_output_says_which_start_continues(capsys):
    with Trainer(_cfg(**RACE), progress=True) as tr:
        tr.run()
        winner = tr.race.winner
    err = capsys.readouterr().err
    assert "start 1 of 3 done (scores " in err and "start 2 begins" in err
    assert f"start {winner + 1} of 3 continues (scores " in err


def test_hopper_races_three_starts_by_default_but_not_in_a_short_run():
    assert TrainConfig(env_id="Hopper-v5").resolved().starts == 3
    assert TrainConfig(env_id="Hopper-v5").resolved().start_episodes == 512
    assert TrainConfig(env_id="Hopper-v5", episodes=2000).resolved().starts == 1  # 1536 > 2000 / 2
    assert TrainConfig(env_id="Hopper-v5", episodes=2000, starts=3).resolved().starts == 3  # asked for
    assert TrainConfig(env_id="Swimmer-v5").resolved().starts == 1
