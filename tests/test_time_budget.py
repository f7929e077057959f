"""train.time_budget (hoffr_arch.models.time_budget_model): checkpoints on the clock, then a stop."""
import pytest

import hoffr_arch  # noqa: F401
from hoffr_arch.models import time_budget_model
from hoffr_arch.models.time_budget_model import BudgetReached, TimeBudgetMixin
from hoffr_arch.options import OptionsError, _Checker, _check_train


class _Step:
    def optimize_parameters(self, current_iter):
        self.steps.append(current_iter)


class _Model(TimeBudgetMixin, _Step):
    """A model whose iterations take one minute each on a fake clock."""

    def __init__(self, tmp_path, **train):
        self.opt = {'train': train, 'path': {'experiments_root': str(tmp_path), 'models': str(tmp_path / 'models')}}
        self.steps, self.saved = [], []

    def save(self, epoch, current_iter):
        self.saved.append(current_iter)


def test_checkpoints_every_interval_then_stops_at_the_budget(tmp_path, monkeypatch):
    clock = iter(range(0, 10 ** 6, 60))  # seconds: each call one minute later
    monkeypatch.setattr(time_budget_model.time, 'perf_counter', lambda: next(clock))
    model = _Model(tmp_path, time_budget=5, save_every_minutes=2)
    with pytest.raises(BudgetReached, match='5 min reached at iteration 5'):
        for it in range(1, 100):
            model.optimize_parameters(it)
    assert model.steps == [1, 2, 3, 4, 5]
    assert model.saved == [2, 4, 5]
    rows = (tmp_path / 'time_budget.csv').read_text().splitlines()
    assert rows[0] == 'minutes,iter,checkpoint'
    assert [r.split(',')[:2] for r in rows[1:]] == [['2.000', '2'], ['4.000', '4'], ['5.000', '5']]


def test_without_a_budget_nothing_is_saved(tmp_path):
    model = _Model(tmp_path)
    for it in range(1, 4):
        model.optimize_parameters(it)
    assert model.steps == [1, 2, 3] and model.saved == []
    assert not (tmp_path / 'time_budget.csv').exists()


def test_a_budget_for_a_model_without_one_is_refused():
    from basicsr.models.video_recurrent_model import VideoRecurrentModel
    train = {'optim_g': {'type': 'Adam', 'lr': 1e-4}, 'total_iter': 10,
             'scheduler': {'type': 'MultiStepRestartLR', 'milestones': [10]}, 'time_budget': 3}
    with pytest.raises(OptionsError, match="'train.time_budget': VideoRecurrentModel has no time budget"):
        _check_train(_Checker('x.yml'), dict(train), VideoRecurrentModel)
    _check_train(_Checker('x.yml'), dict(train), time_budget_model.TimedVideoRecurrentModel)
    with pytest.raises(OptionsError, match="'train.time_budget' must be a number >= 0"):
        _check_train(_Checker('x.yml'), dict(train, time_budget='soon'), time_budget_model.TimedVideoRecurrentModel)
