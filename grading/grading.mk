# Instructor workflow (included by the top-level Makefile). Guide with examples: grading/README.md.
# Everything runs in ONE python process per command; nbgrader config: grading/nbgrader_config.py.
GRADE := PYTHONPATH=grading $(PY) -m coursegrader

.PHONY: release release-check collect autograde feedback grades samples student-repo lint-assignments test-grading

release: install ## generate assignments/ from solutions/ (deterministic, checked for leaks) [ASSIGNMENT=…]
	$(GRADE) release $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

release-check: install ## does the committed assignments/ equal a fresh generation?
	$(GRADE) release-check

lint-assignments: install ## authoring problems in solutions/ that break grading
	$(GRADE) lint $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

collect: install ## FROM=<LMS zip or folder> or FROM=exchange (the hub's): -> grading/submitted/<student>/<id>/
	@test -n "$(FROM)" || { echo "usage: make collect FROM=<LMS .zip or folder>" >&2; exit 2; }
	$(GRADE) collect "$(FROM)"

autograde: install ## grade everything submitted, print a summary [ASSIGNMENT=… STUDENT=… JOBS=… GRADER=nbgrader UNSAFE=1]
	$(GRADE) autograde $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(STUDENT),--student "$(STUDENT)") \
	  $(if $(GRADER),--grader $(GRADER)) $(if $(JOBS),--jobs $(JOBS)) $(if $(filter 1,$(UNSAFE)),--unsafe)

feedback: install ## HTML feedback per student (no hidden tests, short tracebacks) [ASSIGNMENT=…]
	$(GRADE) feedback $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT)) $(if $(STUDENT),--student "$(STUDENT)")

grades: install ## grades CSV, per-question stats, histogram, anomalies -> grading/reports/
	$(GRADE) grades

samples: install ## sample submissions (solution, blank, mutations) -> grading/.work/samples/
	$(GRADE) samples $(if $(ASSIGNMENT),--assignment $(ASSIGNMENT))

student-repo: install ## DEST=<dir>: public tree without solutions/, grading/, hidden tests [FORCE=1]
	@test -n "$(DEST)" || { echo "usage: make student-repo DEST=<folder outside this repo>" >&2; exit 2; }
	$(GRADE) student-repo "$(DEST)" $(if $(FORCE),--force)

# `make test` runs the grading suites too
test: test-grading

test-grading: install ## CI of the grading workflow (all assignments in one batch)
	$(PYTEST) -n 2 --dist loadfile tests/test_grading_machinery.py tests/test_grading_course.py tests/test_grading_hostile.py
