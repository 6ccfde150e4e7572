"""A failing check shows the student their own code: no gradcheck frame in the traceback.

In plain Python, in pytest and in a real Jupyter kernel (IPython always prints the innermost
frame, so hiding gradcheck's frames there needs them cut from the traceback, not only marked).
"""

import os
import re
import textwrap
import traceback
from pathlib import Path

import numpy as np
import pytest

import gradcheck as gc

PACKAGE_DIR = str(Path(gc.__file__).resolve().parent)
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# A student's notebook in miniature: a wrong gradient checked from inside a helper function.
STUDENT = textwrap.dedent("""
    import numpy as np
    import gradcheck as gc

    def f(x):
        return np.sum(x ** 3)

    def wrong_grad(x):
        return -3 * x ** 2          # the planted mistake: sign flipped

    def my_helper():
        gc.assert_gradient(f, wrong_grad, np.linspace(0.5, 1.5, 4))
""")


def frames(exc):
    tb = exc.__traceback__
    out = []
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_filename, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    return out


def ours(filename):
    return str(Path(filename).resolve()).startswith(PACKAGE_DIR)


def student_helper():
    def my_helper():
        gc.assert_gradient(lambda x: np.sum(x**3), lambda x: -3 * x**2, np.linspace(0.5, 1.5, 4))

    return my_helper


def test_a_failed_assert_ends_in_the_students_function_with_the_same_message():
    with pytest.raises(AssertionError) as info:
        student_helper()()
    names = [name for _, name in frames(info.value)]
    assert names[-1] == "my_helper", names
    assert not [fn for fn, _ in frames(info.value) if ours(fn)]
    expected = gc.check_gradient(lambda x: np.sum(x**3), lambda x: -3 * x**2, np.linspace(0.5, 1.5, 4))
    assert str(info.value) == str(expected) and expected.diagnosis == "sign"


def test_an_error_in_the_students_own_function_keeps_its_frame_and_drops_gradcheck_between():
    def grad_that_divides_by_zero(x):
        return 1 / 0

    with pytest.raises(ZeroDivisionError) as info:
        gc.check_gradient(lambda x: float(np.sum(x**2)), grad_that_divides_by_zero, np.ones(3))
    names = [name for _, name in frames(info.value)]
    assert names[-2:] == [
        "test_an_error_in_the_students_own_function_keeps_its_frame_and_drops_gradcheck_between",
        "grad_that_divides_by_zero",
    ], names
    assert not [fn for fn, _ in frames(info.value) if ours(fn)]


def test_gradchecks_own_input_errors_point_at_the_students_call():
    with pytest.raises(ValueError, match="wrong shape|entries|shape") as info:
        gc.check_gradient(lambda x: float(np.sum(x**2)), lambda x: {"a": x}, np.ones(3))
    assert not [fn for fn, _ in frames(info.value) if ours(fn)], frames(info.value)
    text = "".join(traceback.format_exception(info.value))
    assert "gradcheck" + os.sep not in text


def test_pytest_shows_the_students_helper_and_no_gradcheck_frame(pytester):
    pytester.makepyfile(test_student=STUDENT + "\n\ndef test_it():\n    my_helper()\n")
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    out = run.stdout.str() + run.stderr.str()
    assert run.ret == 1, out
    assert "in my_helper" in out or "def my_helper" in out, out
    assert "sign flipped" in out, out
    assert "gradcheck" + os.sep not in out, out


def _kernel_tools():
    try:
        import nbclient  # noqa: F401
        import nbformat  # noqa: F401
        from jupyter_client.kernelspec import KernelSpecManager

        KernelSpecManager().get_kernel_spec("python3")
    except Exception as exc:  # noqa: BLE001 - any missing piece means no kernel to test in
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no Jupyter kernel here ({exc})")


def test_a_jupyter_kernel_shows_the_students_cell_and_helper_and_no_gradcheck_frame(tmp_path):
    _kernel_tools()
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(STUDENT), nbformat.v4.new_code_cell("my_helper()")]
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert len(errors) == 1, nb.cells[1].outputs
    err = errors[0]
    text = ANSI.sub("", "\n".join(err.traceback))
    assert err.ename == "AssertionError" and "sign flipped" in err.evalue
    assert "Cell In[" in text and "my_helper" in text, text
    assert "gradcheck" + os.sep not in text, text
    # the innermost frame shown is the student's call, not gradcheck's raise
    assert "gc.assert_gradient(f, wrong_grad" in text, text
