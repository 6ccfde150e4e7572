"""gradcheck — check derivatives against finite differences, with messages a student can act on.

Usage::

    import gradcheck as gc
    gc.check_gradient(f, grad, x)        # f(x) -> scalar, grad(x) -> like x
    gc.check_jacobian(f, jac, x)         # jac(x) -> f(x).shape + x.shape
    gc.check_vjp(f, vjp, x)              # vjp(x, v) -> like x, v like f(x)
    gc.check_jvp(f, jvp, x)              # jvp(x, u) -> like f(x)
    gc.check_hessian(f, hess, x)         # hess(x) -> x.shape + x.shape (or (n, n))
    gc.check_hvp(f, hvp, x)              # hvp(x, v) -> like x
    gc.assert_gradient(...) ...          # raise AssertionError with the message, return None
    gc.numerical_gradient(f, x), gc.numerical_jacobian(f, x)
    gc.taylor_test(f, grad, x)           # remainders and observed orders, for lectures
    gc.check_function(MyFunction, *inputs)  # a torch.autograd.Function's backward (and jvp)

A check costs O(1) evaluations of f whatever the size of x (complex step when f accepts
complex input, Richardson-extrapolated central differences otherwise); on failure it computes
the whole numerical derivative and names the mistake: sign, factor, transposed, symmetric
part, wrong shape, NaN, a few wrong entries.
"""

from .gradient import assert_gradient, assert_vjp, check_gradient, check_vjp
from .hessian import assert_hessian, assert_hvp, check_hessian, check_hvp
from .jacobian import assert_jacobian, assert_jvp, check_jacobian, check_jvp
from .numerical import numerical_gradient, numerical_jacobian
from .result import CheckResult
from .taylor import TaylorResult, taylor_test
from .torchfn import assert_function, check_function

__version__ = "0.2.0"
__all__ = [
    "check_gradient",
    "check_jacobian",
    "check_vjp",
    "check_jvp",
    "check_hessian",
    "check_hvp",
    "assert_gradient",
    "assert_jacobian",
    "assert_vjp",
    "assert_jvp",
    "assert_hessian",
    "assert_hvp",
    "check_function",
    "assert_function",
    "numerical_gradient",
    "numerical_jacobian",
    "taylor_test",
    "CheckResult",
    "TaylorResult",
]
