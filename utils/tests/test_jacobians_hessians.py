"""Jacobians, VJPs, JVPs, Hessians and HVPs: correct ones pass, classic mistakes are named."""

import numpy as np
import problems as P
import pytest

import gradcheck as gc


@pytest.fixture
def layer(rng):
    A = rng.standard_normal((3, 5))
    f = lambda x: np.tanh(A @ x)
    J = lambda x: (1 - np.tanh(A @ x) ** 2)[:, None] * A
    return f, J, rng.standard_normal(5)


def test_jacobian(layer):
    f, J, x = layer
    assert gc.check_jacobian(f, J, x).passed
    r = gc.check_jacobian(f, lambda x: J(x).T, x)
    assert r.diagnosis == "wrong_shape" and "layout" in r.message
    r = gc.check_jacobian(f, lambda x: -J(x), x)
    assert (r.passed, r.diagnosis) == (False, "sign")


def test_square_jacobian_transposed(rng):
    A = rng.standard_normal((4, 4))
    f = lambda x: np.sin(A @ x)
    J = lambda x: np.cos(A @ x)[:, None] * A
    x = rng.standard_normal(4)
    r = gc.check_jacobian(f, lambda x: J(x).T, x)
    assert (r.passed, r.diagnosis) == (False, "transposed"), str(r)


def test_jacobian_of_matrix_input_has_shape_f_plus_x(rng):
    B = rng.standard_normal((3, 2))
    f = lambda X: X @ B  # (4, 2) output for X (4, 3)
    X = rng.standard_normal((4, 3))
    J = np.einsum("ik,jl->ijkl", np.eye(4), B.T)  # ∂(XB)_ij/∂X_kl = δ_ik B_lj
    assert gc.check_jacobian(f, lambda X: J, X).passed
    assert gc.check_jacobian(f, lambda X: J.reshape(8, 12), X).passed


def test_vjp_and_jvp(layer):
    f, J, x = layer
    assert gc.check_vjp(f, lambda x, v: J(x).T @ v, x).passed
    assert gc.check_jvp(f, lambda x, u: J(x) @ u, x).passed
    r = gc.check_vjp(f, lambda x, v: 2 * J(x).T @ v, x)
    assert (r.passed, r.diagnosis, r.kind) == (False, "factor", "VJP")
    assert gc.check_jvp(f, lambda x, u: -J(x) @ u, x).diagnosis == "sign"
    r = gc.check_jvp(f, lambda x, u: (J(x) @ u)[:, None], x)
    assert r.diagnosis == "wrong_shape"


def test_elementwise_exp_vjp_never_forms_J(rng):
    z = rng.standard_normal(50)
    assert gc.check_vjp(np.exp, lambda z, g: g * np.exp(z), z).passed  # z̄ = ȳ ⊙ exp(z)
    assert not gc.check_vjp(np.exp, lambda z, g: np.exp(z), z).passed  # forgot ȳ


def test_vjp_with_structured_input(rng):
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    x = rng.standard_normal(4)
    f = lambda p: np.tanh(p[0] @ x + p[1])

    def vjp(p, g):
        dz = g * (1 - np.tanh(p[0] @ x + p[1]) ** 2)
        return np.outer(dz, x), dz

    assert gc.check_vjp(f, vjp, (W, b)).passed
    r = gc.check_vjp(f, lambda p, g: (vjp(p, g)[0].T, vjp(p, g)[1]), (W, b))
    assert r.diagnosis == "wrong_shape" and "x[0]" in r.message


@pytest.mark.parametrize("use_grad", [False, True])
def test_hessian(rng, use_grad):
    f, g, H, x, A = P.quadratic(rng)
    kw = {"grad": g} if use_grad else {}
    assert gc.check_hessian(f, H, x, **kw).passed
    r = gc.check_hessian(f, lambda x: 2 * A, x, **kw)
    assert (r.passed, r.diagnosis) == (False, "symmetric_part"), str(r)
    r = gc.check_hessian(f, lambda x: 2 * H(x), x, **kw)
    assert (r.passed, r.diagnosis) == (False, "factor")


@pytest.mark.parametrize("name", ["logistic", "least_squares"])
def test_hessian_and_hvp_of_nonquadratic(rng, name):
    f, g, H, x = getattr(P, name)(rng)
    assert gc.check_hessian(f, H, x).passed
    assert gc.check_hvp(f, lambda x, v: H(x) @ v, x).passed
    assert gc.check_hvp(f, lambda x, v: H(x) @ v, x, grad=g).passed
    assert gc.check_hvp(f, lambda x, v: -H(x) @ v, x).diagnosis == "sign"


def test_hessian_shape_and_nonsymmetric_hvp(rng):
    f, g, H, x, A = P.quadratic(rng)
    r = gc.check_hessian(f, lambda x: H(x)[:, :3], x)
    assert r.diagnosis == "wrong_shape"
    r = gc.check_hvp(f, lambda x, v: 2 * A @ v, x)
    assert r.diagnosis == "symmetric_part"


def test_matrix_input_hessian_shape(rng):
    f, g, X = P.frobenius(rng)
    H4 = 2 * np.einsum("ik,jl->ijkl", np.eye(3), np.eye(4))
    assert gc.check_hessian(f, lambda X: H4, X).passed
    assert gc.check_hessian(f, lambda X: H4.reshape(12, 12), X).passed
