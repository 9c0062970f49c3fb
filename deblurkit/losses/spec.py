"""The loss specification language: ``l1 + 0.1*mae_local(blocks=1-6, ratio=0.5)``.

Grammar (whitespace is free; a tokenizer and a recursive-descent parser, no ``eval``)::

    spec    := term ('+' term)* END
    term    := NUMBER '*' call | call ['*' NUMBER]
    call    := NAME ['(' [option (',' option)* [',']] ')']
    option  := NAME '=' value
    value   := NUMBER ['-' NUMBER]            # a number, or an inclusive integer range: 1-6
             | '[' [value (',' value)*] ']'   # a list: [1, 3, 5]
             | NAME                           # a word: true, false, none, l1, mae-vit-base
             | STRING                         # 'quoted' or "quoted" (paths, anything else)

A term's factor is its weight; a term written without one gets that term's default weight. Every
error is a one-line :class:`~deblurkit.errors.DeblurkitError` that quotes the spec and says at which
column the problem is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import DeblurkitError, UsageError

__all__ = ["Range", "TermSpec", "Token", "parse_spec", "spec_error", "tokenize"]


@dataclass(frozen=True)
class Token:
    """A lexical token: ``kind`` is NUMBER, NAME, STRING, one of ``+ * ( ) , = [ ] -``, or END."""

    kind: str
    text: str
    pos: int  # 0-based offset in the spec
    value: Any = None


@dataclass(frozen=True)
class Range:
    """An inclusive integer range written ``a-b``."""

    start: int
    stop: int

    def as_tuple(self) -> tuple[int, ...]:
        """The integers ``start..stop``."""
        return tuple(range(self.start, self.stop + 1))


@dataclass(frozen=True)
class TermSpec:
    """One parsed term: its name, its weight (``None``: the term's default), its options, and where
    the name and each option stand in the spec (0-based offsets, for error messages)."""

    name: str
    weight: float | None
    options: dict[str, Any] = field(default_factory=dict)
    pos: int = 0
    option_pos: dict[str, int] = field(default_factory=dict)


_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN_RE = re.compile(
    rf"(?P<ws>\s+)|(?P<NUMBER>{_NUMBER})|(?P<NAME>[A-Za-z_][A-Za-z0-9_.\-]*)"
    r"|(?P<STRING>'[^']*'|\"[^\"]*\")|(?P<PUNCT>[+*(),=\[\]\-])"
)
_WORDS = {"true": True, "false": False, "none": None, "null": None}


def spec_error(spec: str, pos: int, message: str) -> UsageError:
    """A one-line error about ``spec`` at offset ``pos``."""
    flat = " ".join(spec.split()) if "\n" in spec else spec
    where = "at the end" if pos >= len(spec) else f"at column {pos + 1}"
    return UsageError(f"bad loss spec {flat!r}: {message} {where}")


def tokenize(spec: str) -> list[Token]:
    """Split a spec into tokens (an END token last)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(spec):
        match = _TOKEN_RE.match(spec, pos)
        if match is None:
            char = spec[pos]
            if char in "'\"":
                raise spec_error(spec, pos, f"unterminated string starting with {char}")
            raise spec_error(spec, pos, f"unexpected character {char!r}")
        kind = match.lastgroup
        text = match.group()
        if kind == "NUMBER":
            if match.end() < len(spec) and (spec[match.end()].isalpha() or spec[match.end()] == "_"):
                raise spec_error(spec, pos, f"malformed number {text + spec[match.end()]!r}...")
            is_int = re.fullmatch(r"\d+", text) is not None
            tokens.append(Token("NUMBER", text, pos, int(text) if is_int else float(text)))
        elif kind == "NAME":
            tokens.append(Token("NAME", text, pos, text))
        elif kind == "STRING":
            tokens.append(Token("STRING", text, pos, text[1:-1]))
        elif kind == "PUNCT":
            tokens.append(Token(text, text, pos))
        pos = match.end()
    tokens.append(Token("END", "", len(spec)))
    return tokens


def _describe(token: Token) -> str:
    return "the end of the spec" if token.kind == "END" else repr(token.text)


class _Parser:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.tokens = tokenize(spec)
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, message: str, token: Token | None = None) -> DeblurkitError:
        token = token or self.current
        return spec_error(self.spec, token.pos, message)

    def expect(self, kind: str, what: str) -> Token:
        if self.current.kind != kind:
            raise self.error(f"expected {what}, found {_describe(self.current)}")
        return self.advance()

    # spec := term ('+' term)* END
    def parse(self) -> list[TermSpec]:
        if self.current.kind == "END":
            raise UsageError("empty loss spec: write terms like 'l1 + 0.1*mae_local'")
        terms = [self.term()]
        while self.current.kind == "+":
            self.advance()
            terms.append(self.term())
        if self.current.kind == "-":
            raise self.error("terms are joined with '+' (there is no subtraction; weights are positive)")
        if self.current.kind != "END":
            hint = " (join terms with '+')" if self.current.kind in ("NAME", "NUMBER") else ""
            raise self.error(f"unexpected {_describe(self.current)}{hint}")
        return terms

    # term := NUMBER '*' call | call ['*' NUMBER]
    def term(self) -> TermSpec:
        if self.current.kind == "NUMBER":
            number = self.advance()
            if self.current.kind != "*":
                raise self.error(
                    f"expected '*' after the weight {number.text}, found {_describe(self.current)}"
                )
            self.advance()
            term = self.call()
            if self.current.kind == "*":
                raise self.error("a term takes one weight, not two")
            return TermSpec(term.name, float(number.value), term.options, term.pos, term.option_pos)
        if self.current.kind == "-":
            raise self.error("weights must be positive numbers")
        term = self.call()
        if self.current.kind == "*":
            self.advance()
            if self.current.kind != "NUMBER":
                raise self.error(f"expected a weight after '*', found {_describe(self.current)}")
            number = self.advance()
            return TermSpec(term.name, float(number.value), term.options, term.pos, term.option_pos)
        return term

    # call := NAME ['(' [option (',' option)* [',']] ')']
    def call(self) -> TermSpec:
        if self.current.kind != "NAME":
            raise self.error(f"expected a loss term name, found {_describe(self.current)}")
        name = self.advance()
        options: dict[str, Any] = {}
        option_pos: dict[str, int] = {}
        if self.current.kind == "(":
            self.advance()
            while self.current.kind != ")":
                key = self.expect("NAME", "an option name (like ratio=0.5) or ')'")
                if key.text in options:
                    raise self.error(f"option {key.text!r} given twice", key)
                self.expect("=", f"'=' after the option name {key.text!r}")
                options[key.text] = self.value()
                option_pos[key.text] = key.pos
                if self.current.kind == ",":
                    self.advance()
                elif self.current.kind != ")":
                    raise self.error(
                        f"expected ',' or ')' in the options of {name.text!r}, "
                        f"found {_describe(self.current)}"
                    )
            self.advance()
        return TermSpec(name.text.lower(), None, options, name.pos, option_pos)

    # value := NUMBER ['-' NUMBER] | '[' values ']' | NAME | STRING
    def value(self) -> Any:
        token = self.current
        if token.kind == "NUMBER":
            self.advance()
            if self.current.kind != "-":
                return token.value
            self.advance()
            stop = self.expect("NUMBER", "the end of a range (like 1-6)")
            if not isinstance(token.value, int) or not isinstance(stop.value, int):
                raise self.error("a range needs whole numbers (like 1-6)", token)
            if stop.value < token.value:
                raise self.error(f"the range {token.value}-{stop.value} is empty", token)
            return Range(token.value, stop.value)
        if token.kind == "[":
            self.advance()
            items = []
            while self.current.kind != "]":
                items.append(self.value())
                if self.current.kind == ",":
                    self.advance()
                elif self.current.kind != "]":
                    raise self.error(f"expected ',' or ']' in a list, found {_describe(self.current)}")
            self.advance()
            return tuple(items)
        if token.kind == "NAME":
            self.advance()
            return _WORDS.get(token.text.lower(), token.text)
        if token.kind == "STRING":
            self.advance()
            return token.value
        if token.kind == "-":
            raise self.error("negative values are not allowed here")
        raise self.error(f"expected a value, found {_describe(token)}")


def parse_spec(spec: str) -> list[TermSpec]:
    """Parse a loss spec into its terms (names lower-cased, options as Python values)."""
    if not isinstance(spec, str):
        raise DeblurkitError(f"a loss spec must be a string, got {type(spec).__name__}")
    return _Parser(spec).parse()
