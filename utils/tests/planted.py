"""Planted-mistake torch autograd Functions, shared by the tests and ``benchmarks/bench_gradcheck.py``.

Test data, not part of the wheel (only ``gradcheck/`` is packaged). Imports torch: import it only
where torch is installed.
"""

import torch


def solve_function(mistake=None):
    """x = A⁻¹ b with backward b̄ = A⁻ᵀ x̄, Ā = −b̄ xᵀ, and jvp dx = A⁻¹(db − dA x) — or a planted mistake.

    ``mistake``: ``A_transposed`` (Ā returned transposed), ``b_sign`` (b̄ negated),
    ``b_not_transposed`` (b̄ = A⁻¹x̄), ``A_entry`` (Ā[3, 5] × (1 + 10⁻⁴); A at least 6×6),
    ``b_entry`` (b̄[2] × (1 + 10⁻⁶)), ``jvp_factor`` (the jvp doubled); None for the correct one.
    """
    known = (None, "A_transposed", "b_sign", "b_not_transposed", "A_entry", "b_entry", "jvp_factor")
    if mistake not in known:
        raise ValueError(f"unknown mistake {mistake!r}; expected one of {known}")

    class Solve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, A, b):
            x = torch.linalg.solve(A, b)
            ctx.save_for_backward(A, x)
            ctx.save_for_forward(A, x)
            return x

        @staticmethod
        def backward(ctx, x_bar):
            A, x = ctx.saved_tensors
            b_bar = torch.linalg.solve(A.T, x_bar)
            A_bar = -torch.outer(b_bar, x)
            if mistake == "A_transposed":
                A_bar = A_bar.T
            elif mistake == "b_sign":
                b_bar = -b_bar
            elif mistake == "b_not_transposed":
                b_bar = torch.linalg.solve(A, x_bar)
            elif mistake == "A_entry":
                A_bar = A_bar.clone()
                A_bar[3, 5] *= 1 + 1e-4
            elif mistake == "b_entry":
                b_bar = b_bar.clone()
                b_bar[2] *= 1 + 1e-6
            return A_bar, b_bar

        @staticmethod
        def jvp(ctx, dA, db):
            A, x = ctx.saved_tensors
            dx = torch.linalg.solve(A, db - dA @ x)
            return 2 * dx if mistake == "jvp_factor" else dx

    return Solve
