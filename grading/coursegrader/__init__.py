"""The course's instructor workflow around nbgrader (release, collect, autograde, feedback, grades,
samples for CI, the public student repository). One module per job; `cli` is the command line that
grading/grading.mk drives. `autograde.grade_submissions` grades with the sandboxed engine
(`sandboxed`: jobs from the course in, scores into the gradebook) or plain nbgrader; `records` holds
the result of each graded submission. Imports go one way: this package uses `sandboxgrader` (the
engine), which imports nothing from here."""
