"""The sandboxed grader (the engine): student code in bubblewrap, every verdict in the grader.

Layers, each importing only those below it: wire / seccomp -> kernel -> session -> trusted ->
runner -> batch. The engine knows jobs (a source notebook, a submission, options) and returns plain
results; it knows nothing of courses, gradebooks or LMS downloads.

The rule: **the engine imports nothing from ``coursegrader``** (the workflow). Imports go one way:
``coursegrader`` (workflow) -> ``sandboxgrader`` (engine) -> ``gradcheck``. The workflow's side of
the engine (jobs from a course, results into the gradebook) is ``coursegrader.sandboxed``;
``tests/test_architecture.py`` fails if any module here imports the workflow.
"""
