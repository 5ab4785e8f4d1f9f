"""Sphinx glue for the bibliography, loaded from _config.yml: author-year citations that tell
apart works by the same authors in the same year.

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
"""
from __future__ import annotations

import string
from collections import defaultdict
from typing import Any, Mapping

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


def disambiguate(app: Sphinx) -> None:
    """``builder-inited`` (after sphinxcontrib-bibtex's own handler): suffix the years."""
    entries = app.env.get_domain("cite").bibdata.data.entries
    for key, year in year_suffixes(entries).items():
        entries[key].fields["year"] = year


def setup(app: Sphinx) -> dict[str, Any]:
    # sphinxcontrib-bibtex parses the .bib files at priority 500; run after it.
    app.connect("builder-inited", disambiguate, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
