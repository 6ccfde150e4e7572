"""numerical_gradient / numerical_jacobian accuracy by scheme, and the Taylor test."""

import numpy as np
import problems as P
import pytest

import gradcheck as gc


@pytest.mark.parametrize(
    "method, rtol", [("complex", 1e-14), ("richardson", 1e-10), ("central", 1e-7), ("forward", 1e-5), ("auto", 1e-14)]
)
def test_numerical_gradient_accuracy(rng, method, rtol):
    f, g, x = P.bench(rng, n=40)
    G = gc.numerical_gradient(f, x, method=method)
    assert G.shape == x.shape
    assert np.linalg.norm(G - g(x)) <= rtol * np.linalg.norm(g(x))


def test_numerical_gradient_keeps_structure(rng):
    W, b = rng.standard_normal((2, 3)), 0.5
    G = gc.numerical_gradient(lambda p: np.sum(p["W"] ** 2) + p["b"] ** 3, {"W": W, "b": b})
    assert set(G) == {"W", "b"} and G["W"].shape == (2, 3)
    np.testing.assert_allclose(G["W"], 2 * W, rtol=1e-12)
    np.testing.assert_allclose(G["b"], 3 * b**2, rtol=1e-12)


def test_numerical_jacobian_shape(rng):
    A = rng.standard_normal((3, 4))
    X = rng.standard_normal((4, 2))
    J = gc.numerical_jacobian(lambda X: A @ X, X)
    assert J.shape == (3, 2, 4, 2)
    np.testing.assert_allclose(J, np.einsum("ik,jl->ijkl", A, np.eye(2)), atol=1e-12)


def test_taylor_orders(rng):
    f, g, x = P.bench(rng, n=30)
    r = gc.taylor_test(f, g, x)
    assert r.passed and abs(r.order0 - 1) < 0.1 and abs(r.order1 - 2) < 0.15, str(r)
    wrong = gc.taylor_test(f, lambda x: 1.05 * g(x), x)
    assert not wrong.passed and wrong.order1 < 1.5


def test_taylor_on_linear_function_is_not_nonsense(rng):
    f, g, X = P.trace_AXB(rng)
    r = gc.taylor_test(f, g, X)
    assert r.passed and np.isnan(r.order1) and "linear" in r.message


def test_taylor_plot(rng):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, g, x = P.bench(rng, n=10)
    fig, ax = plt.subplots()
    gc.taylor_test(f, g, x).plot(ax)
    assert len(ax.lines) == 4
    plt.close(fig)
