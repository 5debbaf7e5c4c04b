"""Author-year labels for the bibliography, matching the author-year citations in the text.

pybtex's default label style (``alpha``) gives the list labels such as ``[NLB25]``, made from the raw
BibTeX names, so LaTeX accents leak into them (``{\\c{S}}im{\\c{s}}ek`` became ``JGcSimcsek``). Here:

* the pybtex label style ``author_year``: ``Nichani et al., 2025``, ``Allen-Zhu and Li, 2024``,
  ``Kohonen, 1972``, names decoded from LaTeX, and ``2024a``/``2024b`` when two entries would share a label;
* the formatting style ``author_year`` (pybtex's ``unsrt`` entries, sorted by author, year, title, with
  those labels), for ``bibtex_default_style``;
* the citation style ``author_year_label`` for ``bibtex_reference_style``: sphinxcontrib-bibtex's
  ``author_year``, except that the year printed in the text is the label's year, suffix included, so that
  ``Cabannes et al. [2024a]`` in the text points at ``[Cabannes et al., 2024a]`` in the list.
"""

import re
from collections import Counter
from dataclasses import dataclass
from string import ascii_lowercase

import pybtex.plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.plugin import register_plugin
from sphinxcontrib.bibtex.style.referencing import GroupReferenceStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.template import join, join2, node, post_text, pre_text, reference, year

STYLE = "author_year"
REFERENCE_STYLE = "author_year_label"


def _last_name(person):
    """A person's last name(s) as plain text, LaTeX accents and braces decoded."""
    return " ".join(part.render_as("text") for part in person.rich_last_names)


def author_part(entry):
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(p) for p in persons]
    if not names:
        return Text.from_latex(entry.fields.get("title", entry.key)).render_as("text")
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        bases = [f"{author_part(e)}, {e.fields.get('year', 'n.d.')}" for e in sorted_entries]
        counts, seen = Counter(bases), Counter()
        for base in bases:
            if counts[base] > 1:
                yield base + ascii_lowercase[seen[base]]
                seen[base] += 1
            else:
                yield base


class AuthorYearStyle(UnsrtStyle):
    default_sorting_style = "author_year_title"
    default_label_style = STYLE


_LABEL_YEAR = re.compile(r", (n\.d\.|\d{4}[a-z]?)$")


@node
def label_year(children, data):
    """The year at the end of the entry's author-year label (``2024a``), else the plain year."""
    assert not children
    match = _LABEL_YEAR.search(data["formatted_entry"].label)
    return Text(match.group(1)) if match else year.format_data(data)


class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[
                join(sep=self.author_year_sep)[
                    self.person.author_or_editor_or_title(full="s" in role_name), label_year
                ]
            ],
            post_text,
        ]


class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name):
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text, reference[label_year], post_text
                ],
                self.bracket.right,
            ],
        ]


@dataclass
class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    def __post_init__(self):
        # AuthorYearReferenceStyle.__post_init__ without its own list: this one swaps the two basic styles.
        self.styles.extend([
            _Parenthetical(
                bracket=self.bracket_parenthetical, person=self.person,
                author_year_sep=self.author_year_sep, pre_text_sep=self.pre_text_sep,
                post_text_sep=self.post_text_sep),
            _Textual(
                bracket=self.bracket_textual, person=self.person,
                text_reference_sep=self.text_reference_sep, pre_text_sep=self.pre_text_sep,
                post_text_sep=self.post_text_sep),
            ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
            ExtraLabelReferenceStyle(bracket=self.bracket_label),
            ExtraYearReferenceStyle(bracket=self.bracket_year),
            ExtraEmptyReferenceStyle(),
        ])
        GroupReferenceStyle.__post_init__(self)


def register():
    pybtex.plugin.register_plugin("pybtex.style.labels", STYLE, AuthorYearLabelStyle)
    pybtex.plugin.register_plugin("pybtex.style.formatting", STYLE, AuthorYearStyle)
    register_plugin("sphinxcontrib.bibtex.style.referencing", REFERENCE_STYLE, AuthorYearLabelReferenceStyle)
