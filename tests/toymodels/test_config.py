"""Every config field is checked (finite, in range, the right type) before anything compiles,
NumPy scalars are accepted and stored as Python values."""
import json
import math

import numpy as np
import pytest

from toymodels.config import ConfigError, check_int, check_range, check_seed
from toymodels.model import TransformerConfig
from toymodels.schedule import Event, Mixture
from toymodels.trainconfig import TrainConfig

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize("build, match", [
    (lambda: TrainConfig(lr=INF), r"lr=inf is not allowed: must be a finite number"),
    (lambda: TrainConfig(lr=NAN), r"lr=nan"),
    (lambda: TrainConfig(eps=-1e-8), r"eps=-1e-08 is not allowed: must be in \(0.0, inf\)"),
    (lambda: TrainConfig(eps=0.0), r"eps=0.0"),
    (lambda: TrainConfig(weight_decay=INF), r"weight_decay=inf"),
    (lambda: TrainConfig(grad_clip=NAN), r"grad_clip=nan"),
    (lambda: TrainConfig(min_lr_frac=NAN), r"min_lr_frac=nan"),
    (lambda: TrainConfig(b1=NAN), r"b1=nan"),
    (lambda: TrainConfig(seed=99999999999), r"seed=99999999999 .*int32 PRNG seed range"),
    (lambda: TrainConfig(eval_seed=2**31), r"eval_seed=2147483648 .*int32"),
    (lambda: TrainConfig(seed=1.5), r"seed=1.5"),
    (lambda: TrainConfig(myopic="yes"), r"myopic='yes' is not allowed: must be True or False"),
    (lambda: TrainConfig(grad_diagnostics=1), r"grad_diagnostics=1"),
    (lambda: TrainConfig(trainable=3), r"trainable=3 is not allowed: must be a string"),
    (lambda: TrainConfig(eval_at=5), r"eval_at=5 is not allowed: must be a sequence"),
    (lambda: TrainConfig(eval_at=(-1,)), r"eval_at step=-1"),
    (lambda: TrainConfig(myopic_beta=0.5), r"myopic_beta=0.5 .*set myopic=True"),
    (lambda: TransformerConfig(init_std=NAN), r"init_std=nan is not allowed: must be a finite number"),
    (lambda: TransformerConfig(init_std=-0.1), r"init_std=-0.1"),
    (lambda: TransformerConfig(ln_eps=-1e-5), r"ln_eps=-1e-05 is not allowed: must be in \[0.0, inf\)"),
    (lambda: TransformerConfig(ln_eps=INF), r"ln_eps=inf"),
    (lambda: TransformerConfig(dropout=NAN), r"dropout=nan"),
    (lambda: TransformerConfig(myopic_beta=INF), r"myopic_beta=inf"),
    (lambda: TransformerConfig(causal="no"), r"causal='no' is not allowed: must be True or False"),
    (lambda: TransformerConfig(d_input=-1), r"d_input=-1"),
    (lambda: TransformerConfig(d_model=64.0), r"d_model=64.0 is not allowed: must be an integer"),
    (lambda: Event("drop", "a", 5, fraction=NAN), r"event.fraction=nan"),
    (lambda: Event("replay", "a", 5, fraction=1.5), r"event.fraction=1.5 is not allowed: must be in \[0.0, 1.0\]"),
    (lambda: Event("drop", "a", 2**40), r"event.step=1099511627776"),
    (lambda: Event("drop", 3, 5), r"event.task=3"),
    (lambda: Mixture(("a", "b"), weights=(1.0, NAN)), r"mixture.weights\[1\]=nan"),
    (lambda: Mixture(("a", "b"), weights=(INF, 1.0)), r"mixture.weights\[0\]=inf"),
    (lambda: Mixture(("a", "b"), weights=(-1.0, 1.0)), r"mixture.weights\[0\]=-1.0"),
    (lambda: Mixture(("a",), events=("drop:a:5",)), r"must be an Event"),
    (lambda: Mixture("ab"), r"mixture.tasks='ab' is not allowed: must be a sequence"),
])
def test_every_field_is_checked_for_type_finiteness_and_range(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_numpy_scalars_are_accepted_and_stored_as_python_values():
    t = TrainConfig(steps=np.int64(200), lr=np.float32(0.5), eval_at=(np.int64(101),), seed=np.int32(3),
                    myopic=np.bool_(True), myopic_beta=np.float64(0.25))
    assert t.eval_at == (101,) and type(t.eval_at[0]) is int and type(t.steps) is int
    assert type(t.lr) is float and type(t.seed) is int and type(t.myopic) is bool
    m = TransformerConfig(d_model=np.int64(32), n_heads=np.int32(2), init_std=np.float32(0.5))
    assert type(m.d_model) is int and type(m.init_std) is float
    ev = Event("replay", "a", np.int64(7), np.float32(0.5))
    assert (type(ev.step), type(ev.fraction)) == (int, float)
    json.dumps([t.__dict__, m.__dict__, ev.__dict__])   # JSON-able
    assert hash(t) == hash(TrainConfig(steps=200, lr=0.5, eval_at=(101,), seed=3, myopic=True,
                                       myopic_beta=0.25))


def test_checks_return_python_values_and_name_what_is_allowed():
    assert check_int("n", np.int16(4)) == 4 and type(check_int("n", np.uint8(4))) is int
    assert check_range("x", np.float16(0.5), 0.0, 1.0) == 0.5
    assert check_seed("seed", -2**31) == -2**31
    with pytest.raises(ConfigError, match=r"n=True is not allowed: must be an integer >= 1"):
        check_int("n", True)
    with pytest.raises(ConfigError, match=r"x=-inf is not allowed: must be a finite number in \[0.0, inf\)"):
        check_range("x", -INF, 0.0, INF)
