"""The head+calibrator ONNX graph equals scikit-learn, including the isotonic part at, between and beyond thresholds."""

import numpy as np
import pytest

from conftest import needs_export

pytestmark = needs_export


def _fit(kind: str, seed: int = 0, normalize: str = "standard"):
    from unspoken.export.train_head import HeadConfig, fit_head

    rng = np.random.default_rng(seed)
    # hidden states are large; the scaler handles it. Without one, an MLP on such values saturates and tiny float64
    # summation-order differences land on steep isotonic segments, so that case uses unit-scale features.
    x = (rng.normal(size=(600, 32)) * (1 if normalize == "none" else 50)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] * 0.5 + 40 * rng.normal(size=600) > 0).astype(int)
    cfg = HeadConfig(kind=kind, hidden=(24,), max_iter=300, normalize=normalize)
    return fit_head(x[:300], y[:300], x[300:450], y[300:450], cfg), x[450:]


def _session(fitted, tmp_path):
    from unspoken.export.head_graph import save_head_model
    from unspoken.runtime.session import make_session

    return make_session(save_head_model(fitted.params, tmp_path / "head.onnx"), threads=1)


@pytest.mark.parametrize("normalize", ["standard", "l2", "none"])
@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_onnx_head_equals_sklearn(kind, normalize, tmp_path):
    from unspoken.export.train_head import sklearn_predict

    fitted, x = _fit(kind, normalize=normalize)
    got = _session(fitted, tmp_path).run(None, {"features": x})[0]
    want = sklearn_predict(fitted, x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5
    assert np.abs(fitted.predict(x) - want).max() <= 1e-12  # the numpy mirror is exact


def test_isotonic_exact_at_between_and_beyond_thresholds(tmp_path):
    """Drive the calibrator directly: a linear head with identity scaler and weights that pass p through."""
    from sklearn.isotonic import IsotonicRegression

    from unspoken.export.head_graph import HeadParams

    rng = np.random.default_rng(1)
    raw = rng.uniform(0.05, 0.95, size=400)
    iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw, (rng.uniform(size=400) < raw).astype(int))
    xs = iso.X_thresholds_
    probe_p = np.concatenate([
        xs,  # exactly on thresholds
        (xs[:-1] + xs[1:]) / 2,  # between
        [0.0001, 0.01, xs[0] - 1e-3, xs[-1] + 1e-3, 0.999],  # out of range on both sides
    ])
    logit = np.log(probe_p / (1 - probe_p))
    params = HeadParams(
        mean=np.zeros(1), scale=np.ones(1), weights=[np.ones((1, 1))], biases=[np.zeros(1)],
        iso_x=np.asarray(xs, dtype=np.float64), iso_y=np.asarray(iso.y_thresholds_, dtype=np.float64),
    )

    class Fitted:
        pass

    f = Fitted()
    f.params = params
    got = _session(f, tmp_path).run(None, {"features": logit.astype(np.float32)[:, None]})[0]
    p32 = 1 / (1 + np.exp(-logit.astype(np.float32).astype(np.float64)))  # the graph sees float32 logits
    want = iso.predict(p32)
    assert np.abs(got - want).max() <= 1e-9
    on = len(xs)
    assert np.abs(got[:on] - iso.y_thresholds_).max() <= 1e-6  # float32 input rounding only
    assert got.min() >= 0 and got.max() <= 1


def test_unknown_normalisation_names_the_alternatives():
    from unspoken.export.train_head import HeadConfig
    from unspoken.runtime import InputError

    with pytest.raises(InputError, match="available: standard, l2, none"):
        HeadConfig(normalize="minmax")
