"""
Every page in docs/ and the README is valid reStructuredText: a malformed
table or a broken reference is an error here, not a surprise for readers.
"""

import io
from pathlib import Path

from docutils import nodes
from docutils.core import publish_doctree
from docutils.parsers.rst import roles
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.rst")) + [ROOT / "README.rst"]


def _docRole(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Sphinx's :doc: role, which plain docutils does not know: check the target exists."""
    target = ROOT / "docs" / f"{text.strip()}.rst"
    if not target.exists():
        message = inliner.reporter.error(f":doc: target {text!r} does not exist", line=lineno)
        return [inliner.problematic(rawtext, rawtext, message)], [message]
    return [nodes.literal(rawtext, text)], []


class DocsTests(SynchronousTestCase):
    def test_pagesParse(self) -> None:
        """
        Each page parses with no warning or error (docutils level 2+).
        """
        roles.register_local_role("doc", _docRole)
        self.assertGreater(len(PAGES), 10)
        problems = {}
        for page in PAGES:
            stream = io.StringIO()
            publish_doctree(page.read_text(), source_path=str(page),
                            settings_overrides={"report_level": 2, "halt_level": 5,
                                                "warning_stream": stream})
            if stream.getvalue():
                problems[page.name] = stream.getvalue()
        self.assertEqual(problems, {})

    def test_indexListsEveryPage(self) -> None:
        """
        docs/index.rst links every other page.
        """
        index = (ROOT / "docs" / "index.rst").read_text()
        missing = [p.stem for p in PAGES
                   if p.parent.name == "docs" and p.stem != "index" and f":doc:`{p.stem}`" not in index]
        self.assertEqual(missing, [])
