"""Latin transliteration of Ukrainian and keyboard-layout repair, for the catalogue search.

Transliteration follows the official table of the Cabinet of Ministers of Ukraine, resolution
No 55 of 27.01.2010: є ї й ю я are written ye yi y yu ya at the start of a word and ie i i iu ia
elsewhere, "зг" is "zgh" (to tell it from "ж" = "zh"), the soft sign and the apostrophe are
dropped. Input is expected lower-cased; other characters pass through unchanged.

Layout repair maps what a visitor typed with the wrong keyboard layout active: the standard
Ukrainian ЙЦУКЕН layout (Windows "Ukrainian (Enhanced)" / xkb "ua": ґ on the backslash key, the
apostrophe on the backtick key) against US QWERTY. Russian-only letters typed on the same keys
are accepted too, since many kiosks' visitors have both layouts installed.
"""
from __future__ import annotations

_COMMON = {
    "а": "a", "б": "b", "в": "v", "г": "h", "ґ": "g", "д": "d", "е": "e", "ж": "zh", "з": "z",
    "и": "y", "і": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r",
    "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh",
    "щ": "shch", "ь": "", "'": "",
}
_WORD_START = {"є": "ye", "ї": "yi", "й": "y", "ю": "yu", "я": "ya"}
_INSIDE = {"є": "ie", "ї": "i", "й": "i", "ю": "iu", "я": "ia"}
# Russian letters a visitor may type; rendered the way a Ukrainian reader would expect.
_RUSSIAN = {"ы": "y", "э": "e", "ё": "io", "ъ": ""}


def is_cyrillic(word: str) -> bool:
    return any("\u0400" <= ch <= "\u04ff" for ch in word)


def transliterate(word: str, word_start: bool = True) -> str:
    """One lower-case word in Latin letters (KMU 55/2010).

    ``word_start=False`` transliterates a fragment from inside a word (an ending), where the
    iotated vowels take their non-initial form.
    """
    out: list[str] = []
    at_start = word_start
    previous = ""
    for ch in word:
        if ch == "г" and previous == "з":
            out.append("gh")
        elif ch in _COMMON:
            out.append(_COMMON[ch])
        elif ch in _INSIDE:
            out.append(_WORD_START[ch] if at_start else _INSIDE[ch])
        elif ch in _RUSSIAN:
            out.append(_RUSSIAN[ch])
        else:
            out.append(ch)
        at_start = False
        previous = ch
    return "".join(out)


# The physical key (US QWERTY, unshifted) -> the Ukrainian letter on the same key.
_QWERTY_TO_UK = {
    "q": "й", "w": "ц", "e": "у", "r": "к", "t": "е", "y": "н", "u": "г", "i": "ш", "o": "щ",
    "p": "з", "[": "х", "]": "ї", "\\": "ґ",
    "a": "ф", "s": "і", "d": "в", "f": "а", "g": "п", "h": "р", "j": "о", "k": "л", "l": "д",
    ";": "ж", "'": "є",
    "z": "я", "x": "ч", "c": "с", "v": "м", "b": "и", "n": "т", "m": "ь", ",": "б", ".": "ю",
    "`": "'",
}
_UK_TO_QWERTY = {uk: key for key, uk in _QWERTY_TO_UK.items()}
# Russian letters on the keys where Ukrainian has і, ї, є and the apostrophe.
_UK_TO_QWERTY.update({"ы": "s", "ъ": "]", "э": "'", "ё": "`"})
# Shifted punctuation keys give the same letters in capitals; the search is case-blind.
_QWERTY_TO_UK.update({"{": "х", "}": "ї", ":": "ж", '"': "є", "<": "б", ">": "ю", "~": "'",
                      "|": "ґ"})


def swap_layout(text: str) -> str:
    """The text as it would read had the other keyboard layout been active. Case is folded.

    A mostly-Latin text is read as QWERTY keystrokes meant as Ukrainian: every key, punctuation
    included (",", ".", ";", "'", "[", "]" carry letters), becomes its Ukrainian letter. A
    mostly-Cyrillic text becomes the Latin keys under its letters; punctuation stays as typed.
    """
    lowered = text.lower()
    latin = sum(1 for ch in lowered if "a" <= ch <= "z")
    cyrillic = sum(1 for ch in lowered if "\u0400" <= ch <= "\u04ff")
    table = _QWERTY_TO_UK if latin > cyrillic else _UK_TO_QWERTY
    return "".join(table.get(ch, ch) for ch in lowered)
