"""Every lr schedule against its closed form at chosen steps, warmup included."""

import math

import pytest

from mft.config.schema import LrScheduleConfig
from mft.training.lr_schedule import lr_at

PEAK, FLOOR, TOTAL, WARMUP = 2.0, 0.2, 110, 10
NAMES = ("constant", "linear", "cosine", "cosine_restarts", "polynomial", "inverse_sqrt", "wsd")


def sched(name, **kw):
    kw.setdefault("min_lr", 0.0 if name == "constant" else FLOOR)
    return LrScheduleConfig(name=name, warmup_steps=WARMUP, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_warmup_is_linear_up_to_the_peak_for_every_schedule(name):
    s = sched(name)
    assert lr_at(0, PEAK, TOTAL, s) == pytest.approx(PEAK / WARMUP)
    assert lr_at(4, PEAK, TOTAL, s) == pytest.approx(PEAK * 5 / WARMUP)
    assert lr_at(WARMUP - 1, PEAK, TOTAL, s) == pytest.approx(PEAK)
    assert lr_at(WARMUP, PEAK, TOTAL, s) == pytest.approx(PEAK)  # the first post-warmup step starts at the peak


def test_constant():
    assert [lr_at(s, PEAK, TOTAL, sched("constant")) for s in (10, 55, 109)] == [PEAK] * 3


def test_linear():
    s = sched("linear")
    assert lr_at(35, PEAK, TOTAL, s) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.75)  # p = 25/100
    assert lr_at(60, PEAK, TOTAL, s) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.5)
    assert lr_at(110, PEAK, TOTAL, s) == pytest.approx(FLOOR)


def test_cosine():
    s = sched("cosine")
    for step in (30, 60, 95):
        p = (step - WARMUP) / (TOTAL - WARMUP)
        assert lr_at(step, PEAK, TOTAL, s) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.5 * (1 + math.cos(math.pi * p)))
    assert lr_at(60, PEAK, TOTAL, s) == pytest.approx((PEAK + FLOOR) / 2)
    assert lr_at(110, PEAK, TOTAL, s) == pytest.approx(FLOOR)


def test_cosine_with_restarts():
    s = sched("cosine_restarts", cycles=4)  # 100 decay steps: restarts at 35, 60, 85
    lrs = {step: lr_at(step, PEAK, TOTAL, s) for step in range(TOTAL + 1)}
    for step in (35, 60, 85):
        assert lrs[step] == pytest.approx(PEAK)  # back at the peak
        assert lrs[step - 1] < FLOOR + 0.01 * (PEAK - FLOOR)  # just before: nearly at the floor
    # step 22: p = 0.12, 4 cycles -> 0.48 of the first cycle
    assert lrs[22] == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.5 * (1 + math.cos(math.pi * 0.48)))
    assert lrs[110] == pytest.approx(FLOOR)


def test_polynomial():
    s = sched("polynomial", power=2.0)
    assert lr_at(35, PEAK, TOTAL, s) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.75**2)
    assert lr_at(85, PEAK, TOTAL, s) == pytest.approx(FLOOR + (PEAK - FLOOR) * 0.25**2)
    # power 1 is the linear schedule
    assert lr_at(47, PEAK, TOTAL, sched("polynomial")) == pytest.approx(lr_at(47, PEAK, TOTAL, sched("linear")))


def test_inverse_sqrt():
    s = sched("inverse_sqrt", min_lr=0.0)
    # tau = warmup: lr = P * sqrt(W / (s)) with s counted from the start of training
    assert lr_at(40, PEAK, TOTAL, s) == pytest.approx(PEAK * math.sqrt(10 / 40))
    assert lr_at(100, PEAK, TOTAL, s) == pytest.approx(PEAK * math.sqrt(10 / 100))
    t = sched("inverse_sqrt", min_lr=0.0, timescale=25)
    assert lr_at(60, PEAK, TOTAL, t) == pytest.approx(PEAK * math.sqrt(25 / 75))
    floored = sched("inverse_sqrt", min_lr=0.9)
    assert lr_at(100, PEAK, TOTAL, floored) == pytest.approx(0.9)  # 2 * sqrt(0.1) = 0.63 < floor
    no_warmup = LrScheduleConfig(name="inverse_sqrt")
    assert lr_at(0, PEAK, TOTAL, no_warmup) == pytest.approx(PEAK)
    assert lr_at(3, PEAK, TOTAL, no_warmup) == pytest.approx(PEAK / 2)  # tau = 1: sqrt(1 / 4)


@pytest.mark.parametrize(
    "shape,f",
    [("linear", lambda q: 1 - q), ("cosine", lambda q: 0.5 * (1 + math.cos(math.pi * q))), ("1-sqrt", lambda q: 1 - math.sqrt(q))],
)
def test_warmup_stable_decay(shape, f):
    s = sched("wsd", decay_fraction=0.2, decay_shape=shape)  # decay over the last 22 steps: 88..109
    for step in (10, 50, 87):
        assert lr_at(step, PEAK, TOTAL, s) == PEAK
    for step in (88, 99, 105):
        q = (step - 88) / 22
        assert lr_at(step, PEAK, TOTAL, s) == pytest.approx(FLOOR + (PEAK - FLOOR) * f(q))
    assert lr_at(110, PEAK, TOTAL, s) == pytest.approx(FLOOR)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("constant", "cosine_restarts")])
def test_decays_monotonically_to_the_floor(name):
    s = sched(name)
    lrs = [lr_at(step, PEAK, TOTAL, s) for step in range(WARMUP, TOTAL)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert min(lrs) >= FLOOR - 1e-12


# ---------------------------------------------------------------- config errors

MINIMAL = {"run": {"output_dir": "out"}, "tokenizer": {"path": "tok.json"}, "data": {"prefix": "d"}}


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["train.steps=100", "train.lr_schedule.warmup_steps=101"], "key 'train.lr_schedule.warmup_steps' must be between 0 and train.steps (100), got 101"),
        (["train.lr_schedule.warmup_steps=-1"], "key 'train.lr_schedule.warmup_steps' must be between 0 and train.steps"),
        (["train.lr_schedule.name=cosine_restart"], "key 'train.lr_schedule.name' must be one of constant, linear, cosine, cosine_restarts, polynomial, inverse_sqrt, wsd, got 'cosine_restart'; did you mean 'cosine_restarts'?"),
        (["train.lr_schedule.min_lr=0.01", "train.optimizer.lr=0.001"], "key 'train.lr_schedule.min_lr' must not exceed train.optimizer.lr (0.001), got 0.01"),
        (["train.lr_schedule.min_lr=-0.1"], "key 'train.lr_schedule.min_lr' must be a finite number >= 0"),
        (["train.lr_schedule.name=cosine_restarts", "train.lr_schedule.cycles=0"], "key 'train.lr_schedule.cycles' must be an integer >= 1, got 0"),
        (["train.lr_schedule.name=polynomial", "train.lr_schedule.power=0"], "key 'train.lr_schedule.power' must be a finite number > 0"),
        (["train.lr_schedule.power=2"], "key 'train.lr_schedule.power' is read only by train.lr_schedule.name=polynomial (name is cosine); remove it"),
        (["train.lr_schedule.name=constant", "train.lr_schedule.min_lr=0.0001"], "key 'train.lr_schedule.min_lr' is read only by"),
        (["train.lr_schedule.name=wsd", "train.lr_schedule.decay_shape=exp"], "key 'train.lr_schedule.decay_shape' must be one of linear, cosine, 1-sqrt, got 'exp'"),
        (["train.lr_schedule.name=wsd", "train.lr_schedule.decay_fraction=1.5"], "key 'train.lr_schedule.decay_fraction' must be a number in (0, 1]"),
        (["train.lr_schedule.name=wsd", "train.steps=100", "train.lr_schedule.warmup_steps=90"], "plus the wsd decay (20 steps = decay_fraction * train.steps) exceeds train.steps (100)"),
    ],
)
def test_bad_schedule_keys_are_config_errors(tmp_path, overrides, needle):
    import yaml

    from mft.config import load_config
    from mft.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError) as e:
        load_config(str(path), overrides)
    assert needle in str(e.value)
    assert str(e.value).startswith("--set train.")


def test_every_schedule_loads_with_its_own_keys(tmp_path):
    import yaml

    from mft.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    own = {"cosine_restarts": ["train.lr_schedule.cycles=3"], "polynomial": ["train.lr_schedule.power=2.0"],
           "inverse_sqrt": ["train.lr_schedule.timescale=50"], "wsd": ["train.lr_schedule.decay_fraction=0.1", "train.lr_schedule.decay_shape=1-sqrt"]}
    for name in NAMES:
        cfg = load_config(str(path), [f"train.lr_schedule.name={name}", "train.lr_schedule.warmup_steps=10", *own.get(name, [])])
        lrs = [lr_at(s, cfg.train.optimizer.lr, cfg.train.steps, cfg.train.lr_schedule) for s in range(cfg.train.steps)]
        assert max(lrs) == pytest.approx(cfg.train.optimizer.lr) and min(lrs) > 0
