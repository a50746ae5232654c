"""Names and ids are what they look like: printable characters only.

str.isprintable() is false for control characters, format characters (bidirectional overrides,
zero-width spaces and joiners, the byte-order mark), line and paragraph separators, spaces other than
the ASCII space, private-use and unassigned code points: everything that shows differently from
what it is, or not at all.
"""

import unicodedata

from django.core.exceptions import ValidationError


def invisible_character(text: str) -> str | None:
    """What is wrong with `text`, naming its first unprintable character and its place; None if nothing is."""
    if text.isprintable():
        return None
    position, character = next((i, c) for i, c in enumerate(text, start=1) if not c.isprintable())
    name = unicodedata.name(character, unicodedata.category(character) + " character")
    return (f"character {position} is U+{ord(character):04X} {name}: names and ids may hold only printable characters "
            "(no control, invisible, direction-changing or unusual space characters)")


def visible_text(value: str) -> None:
    """A Django validator: refuses a value holding an unprintable character."""
    if problem := invisible_character(value):
        raise ValidationError(problem, code="invisible_character")
