"""torch tensors as x; torch functions with and without complex support; agreement with autograd."""

import pytest

torch = pytest.importorskip("torch")  # torch is an optional dependency of gradcheck; the course env pins it

import gradcheck as gc


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(50, 20, generator=g, dtype=torch.float64)
    b = torch.randn(50, generator=g, dtype=torch.float64)
    x = torch.randn(20, generator=g, dtype=torch.float64)
    return A, b, x


def test_torch_tensor_with_complex_capable_f(data):
    A, b, x = data
    f = lambda x: 0.5 * ((A.to(x.dtype) @ x - b) ** 2).sum()
    g = lambda x: A.T @ (A @ x - b)
    r = gc.check_gradient(f, g, x)
    assert r.passed and r.method == "complex"


def test_torch_softplus_falls_back_to_richardson(data):
    A, b, x = data
    f = lambda x: 0.5 * ((A @ x - b) ** 2).sum() + 0.1 * torch.nn.functional.softplus(x).sum()
    g = lambda x: A.T @ (A @ x - b) + 0.1 * torch.sigmoid(x)
    r = gc.check_gradient(f, g, x)
    assert r.passed and r.method == "richardson" and r.n_evals <= 10


def test_agrees_with_autograd(data):
    A, b, x = data

    def f(x):
        return torch.log1p(torch.exp(A.to(x.dtype) @ x - b)).sum()

    def grad_autograd(x):
        xx = x.clone().requires_grad_(True)
        f(xx).backward()
        return xx.grad

    assert gc.check_gradient(f, grad_autograd, x).passed
    assert not gc.check_gradient(f, lambda x: 2 * grad_autograd(x), x).passed


def test_float32_tensor(data):
    A, b, x = (t.float() for t in data)
    f = lambda x: 0.5 * ((A.to(x.dtype) @ x - b.to(x.dtype)) ** 2).sum()
    g = lambda x: A.T @ (A @ x - b)
    r = gc.check_gradient(f, g, x)
    assert r.passed, str(r)


def test_hvp_with_double_backward(data):
    A, b, x = data
    f = lambda x: torch.log1p(torch.exp(A.to(x.dtype) @ x - b)).sum() + (x**4).sum()

    def hvp(x, v):
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(xx), xx, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v, xx)
        return hv

    assert gc.check_hvp(f, hvp, x).passed
    assert gc.check_hvp(f, lambda x, v: 2 * hvp(x, v), x).diagnosis == "factor"


def test_integer_tensor_is_refused():
    with pytest.raises(TypeError, match="floating dtype"):
        gc.check_gradient(lambda x: x.sum(), lambda x: x, torch.tensor([1, 2]))
