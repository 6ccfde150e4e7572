"""The shared test machinery of the course's assignments: one module per assignment.

A test cell states its inputs and calls a check in one line, passing the student's function::

    from coursetests.hw2_backprop import check_forward
    check_forward(forward_univariate, 0.8, -0.3, 1.5, 1.0, 0.1)

Where the module is found:

- in the student's Jupyter (a laptop with `make lab`, Binder, a JupyterHub): installed with the course
  environment (`make install`, environment.yml, the hub's environment);
- on Colab: the notebook's stamped setup cell installs it from the repository, next to gradcheck;
- in the sandboxed grader: the visible tests run in the student's kernel (where the package is mounted
  read-only, like gradcheck) and again, with the hidden ones, in the grader's own process, which
  imports its own copy -- nothing a student writes reaches it.

The checks read no notebook globals: the student's functions and any reference (the hidden tests
pass torch.autograd ones) are arguments, so a student cannot change a check by redefining a name.
Messages say what is wrong with the student's answer, in the words the old test cells used.
"""
