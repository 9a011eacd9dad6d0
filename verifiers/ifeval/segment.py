"""Word and sentence counting the way IFEval counts them, without NLTK or its data files.

IFEval counts words with NLTK's ``RegexpTokenizer(r"\\w+")`` (reproduced exactly), sentences
with NLTK's pretrained English Punkt model and capital words with ``nltk.word_tokenize``.
Punkt's learned tables cannot be downloaded here, so `count_sentences` follows Punkt's
decision procedure with small hand-written tables (abbreviations; words that usually start a
sentence) in place of the learned ones; `count_capital_words` applies the Treebank splitting
rules that can change how many all-capital tokens a text has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Runs of word characters (IFEval's ``length_constraints:number_words`` count)."""
    return len(_WORD.findall(text))


# ---------------------------------------------------------------------------------------------
# Sentences (Punkt's procedure)
#
# A potential boundary is a word ending in . ? or ! that is followed by whitespace and another
# token, or by closing punctuation. Punkt then splits that context into tokens and asks whether
# a token that ends a sentence is followed by anything. A period ends a sentence unless its word
# is a known abbreviation; a second look at the next word can turn an abbreviation, an initial
# ("J.") or a number ("3.") back into a boundary or out of one.

_NON_WORD = r"""[)";}\]*:@'({\[!?]"""
_MULTI_PUNCT = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
_WORD_START = r"""[^("`{\[:;&#*@)}\]\-,]"""
_END_CONTEXT = re.compile(rf"\S*[.?!](?=(?P<after>{_NON_WORD}|\s+(?P<next>\S+)))")
_PUNKT_TOKEN = re.compile(
    rf"""{_MULTI_PUNCT}
    | (?={_WORD_START})\S+?(?=\s|$|{_NON_WORD}|{_MULTI_PUNCT}|,(?=$|\s|{_NON_WORD}|{_MULTI_PUNCT}))
    | \S""",
    re.VERBOSE,
)
_NUMBER = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL = re.compile(r"^[^\W\d]\.$")
_ELLIPSIS = re.compile(r"^\.\.+$")
_LEADING_LETTERS = re.compile(r"[^\W\d_]+")
# Closing quotes and brackets that Punkt moves from the start of a sentence to the end of the
# previous one.
_REALIGN = re.compile(r"""["')\]}]+?(?:\s+|(?=--)|$)""")

# Abbreviations (lower case, final period removed) that do not end a sentence by themselves.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof st jr sr inc ltd co corp vs etc e.g i.e u.s u.k u.n a.m p.m ph.d
    jan feb mar apr jun jul aug sep sept oct nov dec gen gov sen rep rev col lt capt sgt
    cpl maj brig vol dept univ approx est fig ave blvd rd mt ft cf al n.y d.c l.a
    """.split()
)

# Words that, capitalised after a period, mark a new sentence (in Punkt: words seen mostly in
# lower case and never capitalised mid-sentence, plus frequent sentence starters).
_SENTENCE_STARTERS = frozenset(
    """
    a an the this that these those it its he she they we you his her their our my your
    but and or so if when while after before as at in on for with by from to of there here
    however also then now some many most all each every one no not what which who how why
    where is are was were be do does did have has had can will would should could may might
    must let please finally first second third next last overall additionally furthermore
    moreover therefore thus instead although though because since even just only both
    either neither other another such once today yes thank thanks during despite given
    """.split()
)


@dataclass
class _Tok:
    text: str
    sentbreak: bool = False
    abbr: bool = False
    ellipsis: bool = False

    @property
    def period_final(self) -> bool:
        return self.text.endswith(".")

    @property
    def first_upper(self) -> bool:
        return self.text[:1].isupper()

    @property
    def first_lower(self) -> bool:
        return self.text[:1].islower()

    @property
    def word(self) -> str:
        """Lower-cased, final period removed, numbers folded into one type (Punkt's 'type')."""
        if _NUMBER.match(self.text):
            return "##number##"
        t = self.text.lower()
        return t[:-1] if t.endswith(".") and len(t) > 1 else t


def _starts_sentence(tok: _Tok) -> bool | None:
    """Punkt's orthographic test on the token after a period: True, False or None (unknown)."""
    if tok.text in (";", ":", ",", ".", "!", "?"):
        return False
    if tok.first_upper:
        stem = _LEADING_LETTERS.match(tok.word)  # "It's" and "However," count as "it", "however"
        return True if stem and stem.group() in _SENTENCE_STARTERS else None
    if tok.first_lower:
        # A lower-case word after a period continues the sentence.
        return False
    return None


def _first_pass(tok: _Tok) -> None:
    t = tok.text
    if t in (".", "?", "!"):
        tok.sentbreak = True
    elif _ELLIPSIS.match(t):
        tok.ellipsis = True
    elif tok.period_final and not t.endswith(".."):
        stem = t[:-1].lower()
        if stem in _ABBREVIATIONS or stem.split("-")[-1] in _ABBREVIATIONS:
            tok.abbr = True
        else:
            tok.sentbreak = True


def _second_pass(tok: _Tok, nxt: _Tok) -> None:
    if not tok.period_final:
        return
    initial = bool(_INITIAL.match(tok.text))
    if (tok.abbr or tok.ellipsis) and not initial:
        if _starts_sentence(nxt) is True:
            tok.sentbreak = True
            return
    if initial or tok.word == "##number##":
        starts = _starts_sentence(nxt)
        if starts is False or (starts is None and initial and nxt.first_upper):
            tok.sentbreak = False
            tok.abbr = True


def _context_breaks(context: str) -> bool:
    toks = [_Tok(t) for t in _PUNKT_TOKEN.findall(context)]
    for t in toks:
        _first_pass(t)
    for t, n in zip(toks, toks[1:], strict=False):
        _second_pass(t, n)
    return any(t.sentbreak for t in toks[:-1])


def split_sentences(text: str) -> list[str]:
    """Sentences as Punkt's English model would cut ``text`` (newlines alone never cut)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END_CONTEXT.finditer(text):
        if _context_breaks(m.group() + m.group("after")):
            spans.append((start, m.end()))
            start = m.start("next") if m.group("next") else m.end()
    spans.append((start, len(text.rstrip())))

    sentences = []
    shift = 0
    for i, (a, b) in enumerate(spans):
        a += shift
        shift = 0
        if i + 1 < len(spans):
            na, nb = spans[i + 1]
            m = _REALIGN.match(text, na, nb)
            if m:
                b = na + len(m.group().rstrip())
                shift = m.end() - na
        if text[a:b]:
            sentences.append(text[a:b])
    return sentences


def count_sentences(text: str) -> int:
    """IFEval's ``length_constraints:number_sentences`` count."""
    return len(split_sentences(text))


# ---------------------------------------------------------------------------------------------
# Capital words (nltk.word_tokenize, as far as it changes the count of all-capital tokens)
#
# Punctuation glued to a word does not change ``str.isupper``, so only the splits that cut one
# cased run into two matter: brackets and symbols, "?" "!" "*", ellipses, en/em and double dashes,
# commas and colons before a non-digit, curly quotes, and English contractions.

_SPLIT_AROUND = re.compile(r"""(-{2,}|\.{2,}|[;@#$%&?!*()\[\]{}<>«»“”‘’„"`–—])""")
_FINAL_PERIOD = re.compile(r"""(?<=[^.])(\.)(?=[\])}>"']*\s*$)""")
_COMMA_COLON = re.compile(r"([:,])(?=\D|$)")
_CONTRACTION = re.compile(r"(?<=[^' ])('[sSmMdD]|'ll|'LL|'re|'RE|'ve|'VE|n't|N'T|')(?= )")
_SPLIT_WORDS = re.compile(r"(?i)\b(can)(not)\b|\b(gon|got|wan|gim|lem)(na|ta|me)\b|('t)(is|was)\b")


def _split_compound(m: re.Match[str]) -> str:
    return " ".join(g for g in m.groups() if g)


def capital_word_tokens(text: str) -> list[str]:
    """Tokens of ``text`` split where NLTK's word tokenizer would split cased runs."""
    tokens: list[str] = []
    for sentence in split_sentences(text):
        # Only a sentence's last period is cut off its word, which frees a contraction before it.
        t = _FINAL_PERIOD.sub(r" \1", sentence)
        t = _SPLIT_AROUND.sub(r" \1 ", f" {t} ")
        t = _COMMA_COLON.sub(r" \1 ", t)
        t = _CONTRACTION.sub(r" \1", t)
        t = _SPLIT_WORDS.sub(_split_compound, t)
        tokens.extend(t.split())
    return tokens


def count_capital_words(text: str) -> int:
    """IFEval's ``change_case:capital_word_frequency`` count: tokens with ``str.isupper()``."""
    return sum(1 for tok in capital_word_tokens(text) if tok.isupper())
