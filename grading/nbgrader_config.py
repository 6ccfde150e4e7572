"""nbgrader configuration of the course (read by `make` targets and by the `nbgrader` CLI).

The `make` targets (grading/grading.mk) load this file explicitly. To use the plain CLI or the
formgrader, run them from this folder: `cd grading && nbgrader autograde hw1_matrix_gradients`.
Every path is relative to the repository root, which is computed from this file's location, so the
course works from any clone. The gradebook stores hidden-test source: it is git-ignored.
"""

import os
import sys

GRADING = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(GRADING)
if GRADING not in sys.path:  # the course's preprocessors live in grading/coursegrader/
    sys.path.insert(0, GRADING)

from coursegrader import preprocessors as pp  # noqa: E402

c = get_config()  # noqa: F821 (injected by traitlets)

c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "grading/submitted"
c.CourseDirectory.autograded_directory = "grading/autograded"
c.CourseDirectory.feedback_directory = "grading/feedback"
c.CourseDirectory.solution_directory = "grading/release_solutions"
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(GRADING, "gradebook.db")
# never copied into releases or over a student's files
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store", "*.tmp", ".*.swp"]

# Stub left in every answer cell of the release (the blank release must score 0).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding. Per-cell timeout (Execute.timeout overrides ExecutePreprocessor.timeout).
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# Student warnings go to stdout: nbgrader scores any stderr in a test cell as 0 points.
c.Execute.extra_arguments = pp.kernel_arguments()
# nbgrader's own autograde (formgrader's button, `nbgrader autograde`) would run student code
# unsandboxed: it refuses, before touching any file, with a pointer to `make autograde` (the sandboxed
# grader, whose results formgrader shows). --RefuseUnsandboxed.allow=True: trusted code only.
c.Autograde.exporter_class = "coursegrader.preprocessors.RefuseUnsandboxed"
# The sandboxed grader's budgets (grading/README.md, "Limits"): per submission, per job, per kernel.
# Every field of sandboxgrader.kernel.Limits is set here (the engine's defaults, today's values): change
# a limit on its line and in grading/README.md's table (tests/test_sandbox.py keeps the two in step).
c.Sandbox.submission_budget = 600  # s of student code per submission (cells + calls), else NOT graded
c.Sandbox.job_timeout = 1800  # s wall clock per notebook: the worker is killed beyond
c.Sandbox.memory = 4 * 2**30  # bytes, the kernel's whole process tree (tmpfs included)
c.Sandbox.address_space = 3 * 2**30  # bytes per process (RLIMIT_AS): MemoryError beyond
c.Sandbox.processes = 64  # processes + threads of the kernel's tree
c.Sandbox.cpu_seconds = 300  # CPU s of the kernel's tree (and of each process)
c.Sandbox.cpus = 1.0  # cores the kernel's tree may use at once
c.Sandbox.home_size = 256 * 2**20  # bytes, the kernel's home (a tmpfs, never host disk)
c.Sandbox.tmp_size = 64 * 2**20  # bytes, /tmp and /dev/shm each (tmpfs)
c.Sandbox.file_size = 64 * 2**20  # bytes, largest file the kernel may write
c.Sandbox.open_files = 256  # open file descriptors per process
c.Sandbox.reply_bytes = 16 * 2**20  # largest answer of a graded call
c.Sandbox.message_bytes = 16 * 2**20  # largest Jupyter message taken from the kernel
c.Sandbox.cell_output_chars = 200_000  # characters of output kept per cell (the rest cut, flagged)
c.Sandbox.call_output_chars = 2_000_000  # characters a graded call may print before it is stopped
c.Sandbox.wall_factor = 5.0  # a time limit is on the kernel's clock, and at most this many times on the wall's
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    # nbgrader's DeduplicateIds leaves `{}` metadata that aborts the whole batch (SchemaTooOldError)
    "coursegrader.preprocessors.SanitizeGradeIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    # a deleted test cell is put back from the gradebook and run (reported as an anomaly)
    "coursegrader.preprocessors.RestoreMissingTests",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# Feedback: no hidden-test source, no long tracebacks (their frames quote hidden tests).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "coursegrader.preprocessors.ShortTracebacks",
    # only text and verified images: a student's HTML / JavaScript / SVG output must not run
    "coursegrader.preprocessors.InertOutputs",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
c.ClearHiddenTests.enabled = True
c.ShortTracebacks.enabled = True
c.InertOutputs.enabled = True
