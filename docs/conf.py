"""Sphinx configuration of numloss's documentation site (``docs/``).

Build: ``pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html``
(CI builds it with warnings as errors, so a broken reference or a malformed
docstring fails the build).  The pages are Markdown (MyST); the API reference
is generated from the docstrings (numpydoc).
"""

import numloss

project = "numloss"
author = "numloss developers"
copyright = "numloss developers, MIT licence"
version = release = numloss.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown: headings get anchors, so ``[x](losses.md#sample-weights-...)`` resolves;
# $...$ and $$...$$ math; ::: fences for directives
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath", "colon_fence"]

# The API reference: numpydoc renders the Parameters/Returns sections; the
# class members are listed by autodoc itself.
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
autodoc_typehints = "none"  # the types are in the docstrings' Parameters sections
autodoc_member_order = "bysource"

intersphinx_mapping = {}  # offline-safe: no inventories are fetched

html_theme = "alabaster"
html_title = f"numloss {release}"
html_static_path: list[str] = []
