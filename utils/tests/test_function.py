"""check_function: torch autograd Functions (backward and jvp) and torch-native f with NumPy points."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # optional dependency of gradcheck; the course env pins it

from planted import solve_function as make_solve

import gradcheck as gc


def _double(*shape, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


@pytest.fixture
def Ab():
    A = (_double(5, 5, requires_grad=False) + 5 * torch.eye(5, dtype=torch.float64)).requires_grad_(True)
    return A, _double(5, seed=1)


def test_correct_function_passes_backward_and_jvp(Ab):
    r = gc.check_function(make_solve(), *Ab)
    assert r.passed, str(r)
    assert "backward and jvp" in r.message and r.kind == "Function" and r.resolution < 1e-7


@pytest.mark.parametrize(
    "mistake, which, code",
    [
        ("A_transposed", "backward (VJP) of input 0", "transposed"),
        ("b_sign", "backward (VJP) of input 1", "sign"),
        ("b_not_transposed", "backward (VJP) of input 1", "mismatch"),
        ("jvp_factor", "forward (JVP) of input 0", "factor"),
    ],
)
def test_planted_mistakes_are_named(Ab, mistake, which, code):
    r = gc.check_function(make_solve(mistake), *Ab)
    assert not r.passed and r.kind == which, str(r)
    assert r.diagnosis == code, str(r)
    assert which in str(r)
    with pytest.raises(AssertionError, match="FAILED"):
        gc.assert_function(make_solve(mistake), *Ab)


def test_only_inputs_that_require_grad_are_checked(Ab):
    A, b = Ab
    # Ā is wrong, but A does not require grad: only b̄ is checked (as torch.autograd.gradcheck does)
    r = gc.check_function(make_solve("A_transposed"), A.detach(), b)
    assert r.passed and "1 input " in r.message, str(r)


def test_apply_and_plain_torch_callables_are_accepted(Ab):
    assert gc.check_function(make_solve().apply, *Ab).passed
    assert gc.check_function(torch.linalg.solve, *Ab, jvp=True).passed  # torch's own derivatives


def test_several_outputs_and_non_tensor_arguments():
    class ScaledPair(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, c):
            ctx.save_for_backward(x)
            ctx.c = c
            return torch.sin(x) * c, x**2

        @staticmethod
        def backward(ctx, y1_bar, y2_bar):
            (x,) = ctx.saved_tensors
            return torch.cos(x) * ctx.c * y1_bar + 2 * x * y2_bar, None

    x = _double(4)
    assert gc.check_function(ScaledPair, x, 3.0).passed

    class Forgot(ScaledPair):
        @staticmethod
        def backward(ctx, y1_bar, y2_bar):
            (x,) = ctx.saved_tensors
            return torch.cos(x) * ctx.c * y1_bar, None  # drops the second output's term

    assert not gc.check_function(Forgot, x, 3.0).passed


def test_bad_calls_say_what_is_expected():
    with pytest.raises(ValueError, match="requires_grad=True"):
        gc.check_function(torch.sin, _double(3, requires_grad=False))
    with pytest.raises(TypeError, match="Function subclass or a callable"):
        gc.check_function(42, _double(3))
    with pytest.raises(ValueError, match="jvp must be"):
        gc.check_function(torch.sin, _double(3), jvp="yes")


def test_a_forward_that_leaves_autograd_is_reported():
    def detached(x):
        return torch.sin(x).detach()

    with pytest.raises(TypeError, match="no grad_fn"):
        gc.check_function(detached, _double(3))


def test_torch_native_f_and_grad_accept_numpy_points():
    rng = np.random.default_rng(0)
    A, b = torch.tensor(rng.standard_normal((30, 10))), torch.tensor(rng.standard_normal(30))
    f = lambda x: 0.5 * ((A @ x - b) ** 2).sum() + torch.nn.functional.softplus(x).sum()  # noqa: E731
    g = lambda x: A.T @ (A @ x - b) + torch.sigmoid(x)  # noqa: E731
    x = rng.standard_normal(10)
    r = gc.check_gradient(f, g, x)
    assert r.passed and r.n_evals <= 10, str(r)
    assert gc.check_gradient(f, lambda x: 2 * g(x), x).diagnosis == "factor"
    # complex-capable torch code gets the complex step
    f2 = lambda x: 0.5 * ((A.to(x.dtype) @ x - b) ** 2).sum()  # noqa: E731
    assert gc.check_gradient(f2, lambda x: A.T @ (A @ x - b), x).method == "complex"
    assert gc.check_vjp(torch.sin, lambda x, v: torch.cos(x) * v, x).passed
    assert gc.check_hvp(f2, lambda x, v: A.T @ (A @ v), x).passed


def test_a_numpy_function_that_raises_typeerror_keeps_its_own_error():
    def f(x):
        raise TypeError("my own bug")

    with pytest.raises(TypeError, match="my own bug"):
        gc.check_gradient(f, lambda x: x, np.ones(3))
