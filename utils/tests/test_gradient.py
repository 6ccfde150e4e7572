"""check_gradient: correct gradients pass cheaply, planted mistakes fail with the right diagnosis."""

import numpy as np
import problems as P
import pytest

import gradcheck as gc


def no_complex(f):
    """The same function, refusing complex input: forces the Richardson path."""

    def g(x):
        leaves = x if isinstance(x, (tuple, list)) else [x]
        if any(np.iscomplexobj(l) for l in leaves):
            raise TypeError("real input only")
        return f(x)

    return g


def cases(rng):
    f, g, _, x = P.least_squares(rng)
    yield "least_squares", f, g, x
    f, g, x = P.bench(rng)
    yield "bench", f, g, x
    f, g, _, x, _ = P.quadratic(rng)
    yield "quadratic", f, g, x
    f, g, _, x = P.logistic(rng)
    yield "logistic", f, g, x
    yield ("trace_AXB",) + P.trace_AXB(rng)
    yield ("logdet",) + P.logdet(rng)
    yield ("frobenius",) + P.frobenius(rng)
    yield ("a_Xinv_b",) + P.a_Xinv_b(rng)


NAMES = ["least_squares", "bench", "quadratic", "logistic", "trace_AXB", "logdet", "frobenius", "a_Xinv_b"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("complex_ok", [True, False], ids=["complex-step", "richardson"])
@pytest.mark.parametrize("name", NAMES)
def test_correct_gradient_passes_within_ten_evaluations(name, complex_ok, seed):
    rng = np.random.default_rng(seed)
    _, f, g, x = next(c for c in cases(rng) if c[0] == name)
    r = gc.check_gradient(f if complex_ok else no_complex(f), g, x, seed=seed)
    assert r.passed, str(r)
    assert r.diagnosis == "ok"
    assert r.n_evals <= 10, r.n_evals
    assert r.method == ("complex" if complex_ok else "richardson")


@pytest.mark.parametrize("complex_ok", [True, False], ids=["complex-step", "richardson"])
@pytest.mark.parametrize("name", NAMES)
def test_any_perturbation_fails(name, complex_ok, rng):
    _, f, g, x = next(c for c in cases(rng) if c[0] == name)
    bump = rng.standard_normal(np.shape(x))
    wrong = lambda x_: g(x_) + 1e-3 * np.linalg.norm(g(x)) * bump / np.linalg.norm(bump)
    r = gc.check_gradient(f if complex_ok else no_complex(f), wrong, x)
    assert not r.passed, str(r)


def test_sign_flip(rng):
    f, g, x = P.bench(rng)
    r = gc.check_gradient(f, lambda x: -g(x), x)
    assert (r.passed, r.diagnosis) == (False, "sign")
    assert "sign" in r.message and "minus" in r.message


@pytest.mark.parametrize("c, name", [(2.0, "2 ×"), (0.5, "1/2 ×"), (20.0, "n = 20 ×"), (3.0, "3 ×")])
def test_constant_factor_is_named(rng, c, name):
    f, g, _, x = P.least_squares(rng, n=20)
    r = gc.check_gradient(f, lambda x: c * g(x), x)
    assert (r.passed, r.diagnosis) == (False, "factor")
    assert name in r.message, r.message


def test_transposed_square_matrix(rng):
    f, g, X = P.logdet(rng)
    r = gc.check_gradient(f, lambda X: np.linalg.inv(X), X)  # forgot the transpose
    assert (r.passed, r.diagnosis) == (False, "transposed"), str(r)
    assert ".T" in r.message


def test_transposed_nonsquare_is_a_shape_error_that_says_so(rng):
    f, g, X = P.trace_AXB(rng)
    r = gc.check_gradient(f, lambda X: g(X).T, X)
    assert (r.passed, r.diagnosis) == (False, "wrong_shape")
    assert "transposed" in r.message and "(4, 3)" in r.message


def test_only_symmetric_part_right(rng):
    n = 4
    A = rng.standard_normal((n, n))
    f = lambda X: np.trace(A @ X)  # gradient Aᵀ
    X = rng.standard_normal((n, n))
    r = gc.check_gradient(f, lambda X: (A + A.T) / 2, X)
    assert (r.passed, r.diagnosis) == (False, "symmetric_part"), str(r)


@pytest.mark.parametrize(
    "returned, words",
    [
        (lambda g, x: g(x).reshape(-1), "flattened"),
        (lambda g, x: g(x)[:, :, None], "extra dimension"),
        (lambda g, x: g(x)[:2], "entries instead of"),
    ],
)
def test_wrong_shapes_are_explained(rng, returned, words):
    f, g, X = P.frobenius(rng)
    r = gc.check_gradient(f, lambda X: returned(g, X), X)
    assert (r.passed, r.diagnosis) == (False, "wrong_shape")
    assert words in r.message and "(3, 4)" in r.message, r.message


def test_row_vs_column(rng):
    f, g, _, x = P.least_squares(rng)
    xc = x[:, None]
    fc = lambda x: f(x[:, 0])
    r = gc.check_gradient(fc, lambda x: g(x[:, 0]), xc)
    assert r.diagnosis == "wrong_shape" and "missing" in r.message and "(20, 1)" in r.message


def test_nan_in_gradient(rng):
    f, g, _, x = P.least_squares(rng)

    def bad(x):
        y = g(x)
        y[3] = np.nan
        return y

    r = gc.check_gradient(f, bad, x)
    assert (r.passed, r.diagnosis) == (False, "nan")
    assert "x[3]" in r.message


@pytest.mark.parametrize("n, delta", [(100, 1e-6), (10_000, 1e-4)])
def test_single_entry_bug_is_caught_and_named(n, delta):
    rng = np.random.default_rng(n)
    f, g, x = P.bench(rng, n=n)
    j = n // 3

    def bad(x):
        y = g(x)
        y[j] *= 1 + delta
        return y

    r = gc.check_gradient(f, bad, x, max_localize=200)
    assert not r.passed, str(r)
    if n <= 200:
        assert r.diagnosis == "few_entries" and f"x[{j}]" in r.message
        assert r.worst[0]["index"] == f"x[{j}]"


@pytest.mark.parametrize("complex_ok", [True, False])
def test_no_false_alarm_near_a_relu_kink(rng, complex_ok):
    n = 30
    a = rng.standard_normal(n)
    f = lambda x: np.sum(a * np.maximum(x, 0)) + 0.5 * np.sum(x**2)
    g = lambda x: a * (x > 0) + x
    x = rng.standard_normal(n)
    x[4] = 3e-7
    r = gc.check_gradient(f if complex_ok else no_complex(f), g, x)
    assert r.passed, str(r)
    if not complex_ok:
        assert r.diagnosis == "kink" and "x[4]" in r.message


def test_float32_correct_gradient_passes_and_wrong_fails(rng):
    f64, g64, x = P.bench(rng)
    A = rng.standard_normal((50, 100)).astype(np.float32)
    b = rng.standard_normal(50).astype(np.float32)
    f = lambda x: 0.5 * np.sum((A @ x - b) ** 2) + 0.1 * np.sum(np.log1p(np.exp(x)))
    g = lambda x: A.T @ (A @ x - b) + np.float32(0.1) / (1 + np.exp(-x))
    x32 = x.astype(np.float32)
    r = gc.check_gradient(f, g, x32)
    assert r.passed and r.tolerance >= 1e-4, str(r)
    assert not gc.check_gradient(f, lambda x: 2 * g(x), x32).passed


def test_structures_tuple_list_dict_and_float(rng):
    X, t = rng.standard_normal((10, 3)), rng.random(10)
    sig = lambda z: 1 / (1 + np.exp(-z))
    loss = lambda w, b: 0.5 * np.sum((sig(X @ w + b) - t) ** 2)

    def grad_loss(w, b):
        s = sig(X @ w + b)
        dz = (s - t) * s * (1 - s)
        return X.T @ dz, float(np.sum(dz)) if not np.iscomplexobj(dz) else np.sum(dz)

    w, b = rng.standard_normal(3), 0.3
    assert gc.check_gradient(lambda p: loss(*p), lambda p: grad_loss(*p), (w, b)).passed
    assert gc.check_gradient(lambda p: loss(*p), lambda p: list(grad_loss(*p)), [w, b]).passed
    assert gc.check_gradient(
        lambda p: loss(p["w"], p["b"]), lambda p: dict(zip("wb", grad_loss(p["w"], p["b"]))), {"w": w, "b": b}
    ).passed
    assert gc.check_gradient(lambda x: np.sin(x) * x, lambda x: np.cos(x) * x + np.sin(x), 0.7).passed
    r = gc.check_gradient(lambda p: loss(*p), lambda p: (grad_loss(*p)[0], 2 * grad_loss(*p)[1]), (w, b))
    assert not r.passed and "x[1]" in r.message


def test_caller_x_is_never_modified(rng):
    f, g, _, x = P.least_squares(rng)
    before = x.copy()

    def mutating_grad(x):
        out = g(x)
        x += 1.0
        return out

    def mutating_f(x):
        val = f(x)
        x *= 0
        return val

    gc.check_gradient(mutating_f, mutating_grad, x)
    np.testing.assert_array_equal(x, before)


def test_assert_returns_none_and_raises_with_message(rng):
    f, g, _, x = P.least_squares(rng)
    assert gc.assert_gradient(f, g, x) is None
    with pytest.raises(AssertionError, match="sign flipped"):
        gc.assert_gradient(f, lambda x: -g(x), x)


def test_result_renders(rng):
    f, g, _, x = P.least_squares(rng)
    ok, bad = gc.check_gradient(f, g, x), gc.check_gradient(f, lambda x: 2 * g(x), x)
    assert bool(ok) and not bool(bad)
    assert "passed" in str(ok) and "FAILED" in str(bad) and "worst entries" in str(bad)
    html = bad._repr_html_()
    assert "<table" in html and "✘" in html and "<table" not in ok._repr_html_()
    assert len(str(bad).splitlines()) <= 8  # never the whole array


def test_large_x_without_localisation_still_names_sign(rng):
    f, g, x = P.bench(rng, n=3000)
    r = gc.check_gradient(f, lambda x: -g(x), x, max_localize=100)
    assert (r.passed, r.diagnosis) == (False, "sign")
    assert r.n_evals <= 10


@pytest.mark.parametrize(
    "mistake, code",
    [
        (lambda G: G.T, "transposed"),
        (lambda G: (G + G.T) / 2, "symmetric_part"),
        (lambda G: -G, "sign"),
        (lambda G: 2 * G, "factor"),
    ],
)
def test_patterns_are_named_without_localisation(rng, mistake, code):
    n = 60  # 3600 entries, above max_localize below
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    f = lambda X: np.trace(A @ X @ B) + 0.5 * np.sum(X**2)
    g = lambda X: A.T @ B.T + X
    X = rng.standard_normal((n, n))
    r = gc.check_gradient(f, lambda X: mistake(g(X)), X, max_localize=100)
    assert (r.passed, r.diagnosis) == (False, code), str(r)
    assert r.n_evals <= 12


def test_small_single_entry_error_without_localisation_is_not_called_a_factor(rng):
    f, g, x = P.bench(rng, n=3000)

    def bad(x):
        y = g(x)
        y[5] *= 1 + 1e-4
        return y

    r = gc.check_gradient(f, bad, x, max_localize=100)
    assert not r.passed and r.diagnosis == "mismatch", str(r)


@pytest.mark.parametrize("method", ["richardson", "auto"])
def test_wrong_gradient_fails_where_the_true_gradient_is_zero(method):
    # regressions: the tolerance was divided by ‖∇f‖ = 0 (a reviewer's report)
    f = lambda x: np.sum(np.abs(x - 1) ** 2)  # abs: no complex step
    assert not gc.check_gradient(f, lambda x: 2 * (x - 1) + 5, np.ones(3), method=method).passed
    assert gc.check_gradient(f, lambda x: 2 * (x - 1), np.ones(3), method=method).passed
    assert not gc.check_gradient(lambda x: x @ x, lambda x: 2 * x + 1, np.zeros(3), method=method).passed


def test_zero_jacobian_is_not_a_kink():
    f = lambda x: np.abs(x - 1) ** 2
    assert gc.check_jacobian(f, lambda x: np.diag(2 * (x - 1)), np.ones(3)).passed
    r = gc.check_jacobian(f, lambda x: 7 * np.eye(3), np.ones(3))
    assert not r.passed and r.diagnosis != "kink"
    assert not gc.check_vjp(f, lambda x, v: 7 * v, np.ones(3)).passed
