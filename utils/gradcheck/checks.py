"""The checks, by family: kept for code that imported ``gradcheck.checks`` (0.2.0 and earlier).

gradient / VJP: :mod:`gradcheck.gradient`; JVP / Jacobian: :mod:`gradcheck.jacobian`;
Hessian / HVP: :mod:`gradcheck.hessian`. ``import gradcheck`` gives all of them.
"""

from .gradient import assert_gradient, assert_vjp, check_gradient, check_vjp
from .hessian import assert_hessian, assert_hvp, check_hessian, check_hvp
from .jacobian import assert_jacobian, assert_jvp, check_jacobian, check_jvp

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
]
