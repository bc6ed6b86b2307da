"""Sphinx extension: drop repeated inline scripts from each page.

sphinx-thebe (loaded by Jupyter Book 1 for launch buttons) registers its inline configuration
script twice, so every page declares ``const THEBE_JS_URL`` twice and the browser raises
"Identifier 'THEBE_JS_URL' has already been declared" on load. Keeping the first copy of each
identical script removes the error and changes nothing else.
"""

from __future__ import annotations


def _dedupe(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # An inline script may be registered once with filename None and once with "".
        key = (getattr(script, "filename", None) or str(script) if getattr(script, "filename", None)
               else "", tuple(sorted(getattr(script, "attributes", {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    context["script_files"] = kept


def setup(app):
    """Register the page-context hook."""
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
