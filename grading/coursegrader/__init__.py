"""The course's instructor workflow around nbgrader (release, collect, autograde, feedback, grades,
samples for CI, the public student repository). One module per job; `cli` is the command line that
grading/grading.mk drives. `autograde.grade_submissions` is where a batch is graded: by the sandboxed
grader (grading/sandboxgrader) by default, by plain nbgrader on request."""
