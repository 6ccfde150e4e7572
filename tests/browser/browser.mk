# Browser tests, the static site and its screenshots (included by the top-level Makefile).
# Chromium is Debian's (`apt-get install -y chromium`, done by .ci/run in CI); without it the browser
# tests skip locally and fail when CI=true. Artefacts (screenshots, Lab log): build/browser/.

BROWSER_PYTEST := $(PYTEST) tests/browser
README_SHOTS   := 01_rank_and_regularization student-validate-success student-validate-failure instructor-formgrader site-lecture
# The site (docs/conf.py): its pages and the notebooks copied at their repository paths into one source
# folder, built from stored outputs (no execution) with warnings as errors, then gradcheck's examples run.
SITE      ?= _site
SITE_WORK ?= build/site
SPHINX    := $(PY) -m sphinx -W --keep-going -q -c docs -d $(SITE_WORK)/doctrees

.PHONY: test-browser site site-html screenshots

# `make test` runs the browser suite too
test: test-browser

test-browser: install site-html ## JupyterLab in Chromium: every lecture + widget, Validate, Formgrader, the site
	SITE_DIR=$(SITE) $(BROWSER_PYTEST)

site-html: install ## build the course website into _site/ [SITE=dir] (no browser check)
	@test ! -e $(SITE) || test -f $(SITE)/.buildinfo || \
	  { echo "refusing to delete $(SITE): not a site built by make site-html (no .buildinfo)"; exit 1; }
	rm -rf $(SITE_WORK)/src $(SITE) && mkdir -p $(SITE_WORK)/src
	cp docs/*.md $(SITE_WORK)/src/
	cp --parents lectures/[0-9][0-9]_*.ipynb assignments/*/*.ipynb $(SITE_WORK)/src/
	$(SPHINX) -b html $(SITE_WORK)/src $(SITE)
	$(SPHINX) -b doctest $(SITE_WORK)/src $(SITE_WORK)/doctest

site: site-html ## the course website -> _site/ (Sphinx + MyST-NB, offline), then checked in Chromium
	SITE_DIR=$(SITE) $(PYTEST) tests/browser/test_site.py

screenshots: install ## refresh the README's screenshots (tests/browser/screenshots/) from a browser run
	$(BROWSER_PYTEST)
	$(PY) tests/browser/readme_screenshots.py $(README_SHOTS)
