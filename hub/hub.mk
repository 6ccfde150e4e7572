# The course on a JupyterHub (included by the top-level Makefile). Guide: hub/README.md.
# The hub's Python environment is NOT .venv: single-user servers run as the students' Linux users,
# so it must be world-readable and made from Debian's /usr/bin/python3 (the default python3 here may
# live under root's 0700 home). configurable-http-proxy comes from npm into hub/proxy/node_modules.
HUB_VENV   ?= /opt/course-hub/venv
HUB_PY     := $(HUB_VENV)/bin/python
HUB_STAMP  := $(HUB_VENV)/.installed
HUB_STATE  ?= /var/lib/course-hub
CHP        := hub/proxy/node_modules/.bin/configurable-http-proxy
HUBCTL     := $(HUB_PY) hub/hubctl.py --venv $(HUB_VENV) --state $(HUB_STATE)

.PHONY: hub hub-install hub-users hub-remove-users hub-k8s hub-screenshots release-exchange release-feedback test-hub

# `make test` runs the hub scenario too (it needs root: it creates throw-away Linux users)
test: test-hub

$(HUB_STAMP): requirements.txt utils/pyproject.toml $(wildcard utils/gradcheck/*.py coursetests/*.py)
	@test "$$(id -u)" = 0 || { echo "the hub needs root (it creates Linux users and runs servers as them)" >&2; exit 2; }
	@test -x $(HUB_PY) || /usr/bin/python3 -m venv $(HUB_VENV)
	$(HUB_PY) -m pip install --quiet --upgrade pip
	$(HUB_PY) -m pip install --quiet -r requirements.txt
	$(HUB_PY) -m pip install --quiet --no-deps --force-reinstall ./utils ./coursetests
	$(HUB_PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
	$(HUB_PY) hub/hubctl.py --venv $(HUB_VENV) roles
	chmod -R a+rX $(HUB_VENV)
	@touch $@

$(CHP): hub/proxy/package.json hub/proxy/package-lock.json
	cd hub/proxy && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

hub-install: $(HUB_STAMP) $(CHP) ## the hub's environment ($(HUB_VENV)) and its proxy (hub/proxy, npm)

hub-users: hub-install ## demo users: 1 instructor + 2 students, passwords printed [USERS=…]
	$(HUBCTL) users $(if $(USERS),--prefix $(USERS))

hub-remove-users: hub-install ## delete the demo users (and their homes) made by `make hub-users`
	$(HUBCTL) remove-users

hub: hub-install ## JupyterHub on http://127.0.0.1:<port> (foreground; Ctrl-C stops everything) [HUB_PORT=…]
	$(HUBCTL) run --proxy $(CHP) $(if $(HUB_PORT),--port $(HUB_PORT))

hub-k8s: ## regenerate hub/k8s/values.yaml from its template and course.toml
	$(PY) hub/hubctl.py --venv $(HUB_VENV) k8s

# The instructor, in a terminal of their hub server, in ~/<course id> (their copy of the course).
# nbgrader is the hub environment's (.venv is not theirs); course id and exchange: course.toml.
HUB_NBGRADER := cd grading && PATH=$(HUB_VENV)/bin:$$PATH $(HUB_VENV)/bin/nbgrader
release-exchange: ## (instructor, on the hub) publish assignments/<id> to the exchange [ASSIGNMENT=…]
	@test -n "$(ASSIGNMENT)" || { echo "usage: make release-exchange ASSIGNMENT=<id>" >&2; exit 2; }
	$(HUB_NBGRADER) release_assignment "$(ASSIGNMENT)"

release-feedback: ## (instructor, on the hub) `make feedback`'s pages to the students [ASSIGNMENT=…]
	@test -n "$(ASSIGNMENT)" || { echo "usage: make release-feedback ASSIGNMENT=<id>" >&2; exit 2; }
	$(HUB_NBGRADER) release_feedback "$(ASSIGNMENT)"

test-hub: install hub-install ## JupyterHub end to end in Chromium: release, fetch, submit, grade, feedback
	HUB_VENV=$(HUB_VENV) $(PYTEST) hub/tests

HUB_SHOTS := hub-student-assignments hub-student-feedback-fetched hub-student-feedback hub-instructor-formgrader
hub-screenshots: install ## refresh hub/README.md's screenshots from the last `make test-hub` (build/hub/)
	$(PY) -c "import sys; sys.path.insert(0, 'tests/browser'); import readme_screenshots as r; \
	from pathlib import Path; r.SOURCE, r.DEST = Path('build/hub/screenshots').resolve(), Path('hub/screenshots').resolve(); \
	sys.exit(r.main(sys.argv[1:]))" $(HUB_SHOTS)
