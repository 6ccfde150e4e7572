"""The course website: Sphinx + MyST-NB + sphinx-book-theme (`make site` -> _site/).

The pages are the notebooks as stored (never executed here: the outputs nbval checks are what
readers see). `make site` copies this folder's pages and the notebooks (lectures, student versions)
into one source folder, at their repository paths, so a page's path is the notebook's path in the
repository (launch buttons, downloads, links between notebooks), and builds it with this
configuration (`sphinx-build -c docs`). Sphinx resolves symbolic links, so links would not do.
What the stack does not do by itself is in `_ext/course_site.py`.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent / "scripts")]

from course import hub_url, settings  # noqa: E402

_repo = settings()

project = "Matrix calculus, low rank and autodiff for ML"
author = "the course authors"
copyright = "the course authors"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.doctest", "course_site"]
root_doc = "index"
# every numbered lecture and every student version; nothing else of the linked folders
include_patterns = ["*.md", "lectures/[0-9][0-9]_*.ipynb", "assignments/*/*.ipynb"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# Notebooks: stored outputs only, read through the course's reader (drops the Colab cells, widget note)
nb_execution_mode = "off"
nb_custom_formats = {".ipynb": ["course_site.read_notebook", {}, False]}
nb_ipywidgets_js = {}  # the widget renderer would come from a CDN; widgets are replaced by a note
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True  # `$$…$$` inside a paragraph, as JupyterLab renders it
myst_heading_anchors = 3

# gradcheck's API from its NumPy-style docstrings
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
doctest_global_setup = "import numpy as np\nimport gradcheck as gc"

# MathJax 2 from the site itself (copied by course_site at build time), STIX-Web fonts only
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
mathjax2_config = {
    "HTML-CSS": {
        "availableFonts": [],
        "preferredFont": None,
        "webFont": "STIX-Web",
        "imageFont": None,
        "linebreaks": {"automatic": True},
        # MathJax's placeholder font is url('about:blank'): a blocked request and a console error
        "styles": {"@font-face": {"font-family": "MathJax_Blank", "src": "local('MathJax_Blank')"}},
    },
    "menuSettings": {"assistiveMML": False},  # the hidden MathML copy asks for fonts not shipped
    # myst-nb wraps notebook content in tex2jax_ignore; MathJax 2 must still process Sphinx's math
    "tex2jax": {"processClass": "tex2jax_process|mathjax_process|math|output_area"},
}

html_theme = "sphinx_book_theme"
html_title = "Matrix calculus, low rank & autodiff"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_favicon = "_static/favicon.svg"
html_context = {"default_mode": "light"}  # else the theme logs "Got invalid theme mode" on a first visit
html_theme_options = {
    "repository_url": f"https://github.com/{_repo['slug']}",
    "repository_branch": _repo["branch"],
    "path_to_docs": "",  # pages are at their repository paths (see above)
    "use_repository_button": True,
    "use_download_button": True,
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "launch_buttons": {
        "notebook_interface": "jupyterlab",
        "colab_url": "https://colab.research.google.com",
        "binderhub_url": "https://mybinder.org",
        **({"jupyterhub_url": hub_url()} if hub_url() else {}),
    },
}
