# Browser tests, the static site and its screenshots (included by the top-level Makefile).
# Chromium is Debian's (`apt-get install -y chromium`, done by .ci/run in CI); without it the browser
# tests skip locally and fail when CI=true. Artefacts (screenshots, Lab log): build/browser/.

BROWSER_PYTEST := $(PYTEST) tests/browser
README_SHOTS   := 01_rank_and_regularization student-validate-success student-validate-failure instructor-formgrader site-index

.PHONY: test-browser site screenshots

# `make test` runs the browser suite too
test: test-browser

test-browser: install ## JupyterLab in Chromium: every lecture + widget, Validate, Formgrader, the site
	$(BROWSER_PYTEST)

site: install ## static HTML of the lectures -> _site/ (offline MathJax), then checked in Chromium
	$(PY) scripts/build_site.py --out _site
	SITE_DIR=_site $(PYTEST) tests/browser/test_site.py

screenshots: install ## refresh the README's screenshots (tests/browser/screenshots/) from a browser run
	$(BROWSER_PYTEST)
	$(PY) tests/browser/readme_screenshots.py $(README_SHOTS)
