"""Check a torch ``autograd.Function`` (or any differentiable torch code) against its own forward.

For every input tensor that requires grad, the backward pass is a VJP,

    x̄_i = (∂f/∂x_i)ᵀ ȳ,

checked as the gradient of x_i ↦ ⟨ȳ, f(…, x_i, …)⟩ along random directions, exactly like
:func:`gradcheck.check_vjp` (same messages and diagnoses); where the Function defines ``jvp``
(forward-mode AD), J_i u = d/dt f(…, x_i + t u, …) is checked like :func:`gradcheck.check_jvp`.
The forward is evaluated without building a graph; the complex step is used when the forward
accepts complex tensors, Richardson differences otherwise.

torch is imported only when this is called: ``import gradcheck`` never imports it.
"""

from __future__ import annotations

from ._frames import asserting, student_facing
from .gradient import vjp_core
from .jacobian import jvp_check
from .result import CheckResult


def _torch():
    import torch  # noqa: PLC0415 - optional dependency, imported on use

    return torch


def _apply_of(fn):
    """The callable to run: ``Fn.apply`` for a Function subclass, else ``fn`` itself."""
    torch = _torch()
    if isinstance(fn, type) and issubclass(fn, torch.autograd.Function):
        return fn.apply, fn
    if not callable(fn):
        raise TypeError(f"fn must be a torch.autograd.Function subclass or a callable, got {type(fn).__name__}")
    owner = getattr(fn, "__self__", None)  # MyFunction.apply is bound to the class
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        return fn, owner
    return fn, None


def _defines_jvp(cls) -> bool:
    if cls is None:
        return False
    jvp = getattr(cls, "jvp", None)
    return jvp is not None and not getattr(jvp, "__qualname__", "").startswith(("_SingleLevelFunction.", "Function."))


def _outputs(y, what):
    torch = _torch()
    if isinstance(y, torch.Tensor):
        return y
    if isinstance(y, (tuple, list)) and y and all(isinstance(o, torch.Tensor) for o in y):
        return tuple(y)
    raise TypeError(f"{what} must return a tensor or a tuple of tensors, got {type(y).__name__}")


@student_facing
def check_function(fn, *inputs, rtol=None, seed=0, method="auto", max_localize=2000, jvp="auto") -> CheckResult:
    """Check the backward (and, where defined, the ``jvp``) of a torch Function against its forward.

    Parameters
    ----------
    fn : torch.autograd.Function subclass, its ``apply``, or a callable on tensors
        The function ``y = fn(*inputs)``; ``y`` a tensor or a tuple of tensors.
    *inputs
        Its arguments. Tensors with ``requires_grad=True`` are checked, one at a time (the
        others held fixed); other arguments are passed as they are.
    rtol, seed, method, max_localize
        As in :func:`gradcheck.check_vjp`.
    jvp : {"auto", True, False}
        Check forward mode too: "auto" does where ``fn`` is a Function that defines ``jvp``.

    Returns
    -------
    CheckResult
        The first failing check (its ``kind`` names the input and the mode, e.g. ``backward
        (VJP) of input 1``), or a passing result summarising every check; ``n_evals`` counts
        the forward evaluations of all of them.

    Examples
    --------
    >>> import torch, gradcheck as gc
    >>> class Cube(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, y_bar):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x ** 2 * y_bar
    >>> x = torch.linspace(-1, 1, 5, dtype=torch.float64, requires_grad=True)
    >>> gc.check_function(Cube, x).passed
    True
    """
    torch = _torch()
    apply, cls = _apply_of(fn)
    if jvp not in ("auto", True, False):
        raise ValueError(f"jvp must be 'auto', True or False, got {jvp!r}")
    checked = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor) and a.requires_grad]
    if not checked:
        raise ValueError(
            "check_function: no input requires grad — create the tensors to check with "
            "requires_grad=True (as torch.autograd.gradcheck expects)"
        )
    for i in checked:
        if not inputs[i].is_floating_point():
            raise TypeError(f"check_function: input {i} has dtype {inputs[i].dtype}; a floating dtype is needed")
    do_jvp = _defines_jvp(cls) if jvp == "auto" else jvp
    fixed = [a.detach() if isinstance(a, torch.Tensor) else a for a in inputs]
    results, n_evals = [], 0
    for i in checked:
        label = f"input {i}" if len(inputs) > 1 else "the input"

        def f(xi, i=i):
            args = list(fixed)
            args[i] = xi
            with torch.no_grad():
                return _outputs(apply(*args), "fn")

        def vjp(xi, y_bar, i=i, label=label):
            args = list(fixed)
            args[i] = xi.detach().clone().requires_grad_(True)
            y = _outputs(apply(*args), "fn")
            ys, bars = (y, y_bar) if isinstance(y, tuple) else ((y,), (y_bar,))
            pairs = [(o, b) for o, b in zip(ys, bars) if o.requires_grad]
            if not pairs:
                raise TypeError(
                    f"fn's output does not depend on {label} through autograd (no grad_fn): "
                    "did forward detach it or leave autograd?"
                )
            (g,) = torch.autograd.grad(
                [o for o, _ in pairs], [args[i]], [b.to(o.dtype) for o, b in pairs], allow_unused=True
            )
            return torch.zeros_like(args[i]) if g is None else g

        x = inputs[i].detach().clone()
        r = vjp_core(
            f,
            vjp,
            x,
            rtol=rtol,
            n_dirs=None,
            seed=seed,
            method=method,
            max_localize=max_localize,
            kind=f"backward (VJP) of {label}",
            who="backward",
        )
        n_evals += r.n_evals
        results.append(r)
        if not r.passed:
            break
        if do_jvp:

            def jvp_fn(xi, u, i=i):
                import torch.autograd.forward_ad as fwAD  # noqa: PLC0415

                args = list(fixed)
                with fwAD.dual_level():
                    args[i] = fwAD.make_dual(xi.detach().clone(), u.to(xi.dtype))
                    y = _outputs(apply(*args), "fn")
                    ys = y if isinstance(y, tuple) else (y,)
                    tangents = []
                    for o in ys:
                        t = fwAD.unpack_dual(o).tangent
                        tangents.append(torch.zeros_like(o) if t is None else t)
                return tuple(tangents) if isinstance(y, tuple) else tangents[0]

            r = jvp_check(
                f,
                jvp_fn,
                x,
                rtol=rtol,
                n_dirs=None,
                seed=seed,
                method=method,
                kind=f"forward (JVP) of {label}",
                who="jvp",
            )
            n_evals += r.n_evals
            results.append(r)
            if not r.passed:
                break
    bad = next((r for r in results if not r.passed), None)
    if bad is not None:
        bad.n_evals = n_evals
        return bad
    modes = "backward and jvp" if do_jvp else "backward"
    worst = max(results, key=lambda r: r.error / r.tolerance)
    return CheckResult.success(
        worst.error,
        worst.tolerance,
        f"{modes} match finite differences of forward for {len(checked)} input"
        f"{'s' if len(checked) > 1 else ''} that require grad",
        n_evals=n_evals,
        method=worst.method,
        kind="Function",
        resolution=max(r.resolution for r in results),
    )


assert_function = asserting(check_function)
