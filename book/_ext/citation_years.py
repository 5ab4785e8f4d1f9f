"""Sphinx glue for the bibliography, loaded from _config.yml: author-year citations that tell
apart works by the same authors in the same year, and a bibliography labelled the same way.

With ``bibtex_reference_style: author_year``, sphinxcontrib-bibtex renders
``{cite:t}`arora2019exact``` and ``{cite:t}`arora2019finegrained``` both as "Arora et al.
(2019)": the reader cannot tell which paper is meant without following the link. The usual
remedy (natbib, APA) is a letter after the year, "2019a" and "2019b", in the citations and in
the bibliography alike. After sphinxcontrib-bibtex has read the ``.bib`` files
(``builder-inited``), :func:`disambiguate` gives every group of entries that would show the
same author text and year the letters a, b, ... in bibliography order (by the authors' last
names, then the title), by appending the letter to the entry's ``year`` field in memory; the
``.bib`` file is not changed. Entries already suffixed (a cached environment) are left alone,
so the step is idempotent.

The bibliography page labels each entry with the text its citations show, "[Arora et al.,
2019a]" for ``{cite:p}`arora2019exact``` rendered "[Arora et al., 2019a]", instead of the
numbers [1], [2], ... of pybtex's ``plain`` style: :class:`AuthorYearStyle` is ``plain``
(entries sorted by author, year, title; DOI and arXiv links) with :class:`AuthorYearLabels`,
registered with pybtex as ``authoryear`` (``bibtex_default_style`` in _config.yml).
"""
from __future__ import annotations

import string
from collections import defaultdict
from typing import Any, Mapping

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx


def author_text(entry: Any) -> tuple[str, ...]:
    """The author part of an author-year citation: the last names of one or two authors, or
    the first author's last name and "et al." for three or more (sphinxcontrib-bibtex's
    default person style)."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    last = tuple(" ".join(p.last_names) for p in people)
    return last if len(last) <= 2 else (last[0], "et al.")


def year_suffixes(entries: Mapping[str, Any]) -> dict[str, str]:
    """``{key: "2019a", ...}`` for the entries whose author text and year are shared with
    another entry; the letters follow bibliography order (all last names, then title)."""
    groups: dict[tuple[tuple[str, ...], str], list[str]] = defaultdict(list)
    for key, entry in entries.items():
        year = entry.fields.get("year", "")
        if year.isdigit():
            groups[(author_text(entry), year)].append(key)
    out = {}
    for (_, year), keys in groups.items():
        if len(keys) < 2:
            continue
        if len(keys) > len(string.ascii_lowercase):
            raise ValueError(f"more than 26 entries share an author-year label: {keys}")

        def order(key: str) -> tuple[tuple[str, ...], str]:
            entry = entries[key]
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            return (tuple(" ".join(p.last_names) for p in people),
                    entry.fields.get("title", "").lower())

        for letter, key in zip(string.ascii_lowercase, sorted(keys, key=order)):
            out[key] = year + letter
    return out


def plain_text(latex: str) -> str:
    """A name as the reader sees it: ``Sch{\\"o}lkopf`` -> ``Schölkopf``."""
    return Text.from_latex(latex).render_as("text")


def author_year_label(entry: Any) -> str:
    """The label of an entry in the bibliography, the same text as its citations:
    ``"Jacot et al., 2018"``, ``"Chizat and Bach, 2018"``, ``"Neal, 1996"`` (the year with
    its letter once :func:`disambiguate` has run)."""
    names = [plain_text(n) for n in author_text(entry)]
    who = f"{names[0]} {names[1]}" if names[-1] == "et al." else " and ".join(names)
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """pybtex label style: :func:`author_year_label` for every entry."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield author_year_label(entry)


class AuthorYearStyle(PlainStyle):
    """pybtex's ``plain`` formatting with author-year labels."""

    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def disambiguate(app: Sphinx) -> None:
    """``builder-inited`` (after sphinxcontrib-bibtex's own handler): suffix the years."""
    entries = app.env.get_domain("cite").bibdata.data.entries
    for key, year in year_suffixes(entries).items():
        entries[key].fields["year"] = year


def setup(app: Sphinx) -> dict[str, Any]:
    # sphinxcontrib-bibtex parses the .bib files at priority 500; run after it.
    app.connect("builder-inited", disambiguate, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
