"""Payer identification: surname, РНОКПП (individual tax number) or passport, and masking.

Personal data appears unmasked only where the law needs it: the payer's surname on the receipt,
surname and tax number in the bank registry. Every other place (screens after entry, the
verification page, service mode, exports other than the registry, logs, the journal after the
retention period) uses the masks below — this module is their only home:

* ``mask_id``: any payer code (РНОКПП, passport booklet, ID card) keeps only its last 4
  characters: ``3652504575`` -> ``******4575``, ``АК123456`` -> ``****3456``. The first five
  digits of a РНОКПП are the date of birth, and a passport's series narrows down who holds it, so
  neither is ever shown. Plain ``*``: it prints on every receipt printer code page.
* ``mask_surname``: first and last letter of each word: ``Шевченко`` -> ``Ш******о``.
* ``mask_payer``: the two together, ``Ш******о, ******4575`` — what screens show.
Every mask is idempotent (masking a masked value changes nothing), so data redacted in the journal
replays to the same text."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from stdnum.exceptions import InvalidChecksum, ValidationError
from stdnum.ua import rntrc

MAX_SURNAME = 60

# Ukrainian and Latin letters, the apostrophe forms Ukrainian spelling uses, hyphen and space
# (double-barrelled surnames, foreigners' multi-word surnames).
_LETTERS = "A-Za-zА-ЩЬЮЯЄІЇҐа-щьюяєіїґЁёЪъЫыЭэ" + "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÑÒÓÔÕÖØÙÚÛÜÝßàáâãäåæçèéêëìíîïñòóôõöøùúûüýÿ" \
           + "ĄąĆćĘęŁłŃńŚśŹźŻżČčĎďĚěŇňŘřŠšŤťŮůŽž"
_APOSTROPHES = "'’ʼ`"
SURNAME_RE = re.compile(rf"^[{_LETTERS}]+(?:[{_APOSTROPHES}\- ][{_LETTERS}]+)*$")
# Old-style passport booklet: two Cyrillic capitals + 6 digits; ID card: 9 digits.
PASSPORT_BOOK_RE = re.compile(r"^[А-ЩЬЮЯЄІЇҐ]{2}\d{6}$")
PASSPORT_CARD_RE = re.compile(r"^\d{9}$")

ID_KINDS = ("rnokpp", "passport")


class PayerError(ValueError):
    """Invalid payer input; ``code`` names the message key shown to the visitor."""

    def __init__(self, field: str, code: str):
        super().__init__(f"{field}: {code}")
        self.field = field
        self.code = code


def normalize_surname(raw: str) -> str:
    """Trim, collapse spaces, unify apostrophes; raise PayerError when empty or absurd."""
    text = unicodedata.normalize("NFC", raw or "").strip()
    text = re.sub(r"\s+", " ", text)
    for ch in "’`‘":
        text = text.replace(ch, "'")
    text = text.replace("ʼ", "'")
    if not text:
        raise PayerError("surname", "empty")
    if len(text) > MAX_SURNAME:
        raise PayerError("surname", "too_long")
    if not SURNAME_RE.match(text) or len([c for c in text if c.isalpha()]) < 2:
        raise PayerError("surname", "invalid")
    return text


def normalize_id(kind: str, raw: str) -> str:
    value = re.sub(r"[\s\-]", "", raw or "").upper()
    if kind == "rnokpp":
        if not value:
            raise PayerError("id_value", "rnokpp_empty")
        # stdnum would fold full-width digits to ASCII; the kiosk keeps refusing them as before
        if not (value.isascii() and value.isdigit()):
            raise PayerError("id_value", "rnokpp_format")
        try:
            rntrc.validate(value)  # 10 digits, check digit (Σ dᵢ×wᵢ mod 11) mod 10
        except InvalidChecksum:
            raise PayerError("id_value", "rnokpp_checksum") from None
        except ValidationError:  # InvalidLength
            raise PayerError("id_value", "rnokpp_format") from None
        return value
    if kind == "passport":
        # Latin look-alikes typed on a Latin layout become the Cyrillic letters a passport has.
        value = value.translate(str.maketrans("ABCEHIKMOPTX", "АВСЕНІКМОРТХ"))
        if PASSPORT_BOOK_RE.match(value) or PASSPORT_CARD_RE.match(value):
            return value
        raise PayerError("id_value", "passport_format" if value else "passport_empty")
    raise PayerError("id_kind", "kind")


@dataclass(frozen=True)
class Payer:
    surname: str
    id_kind: str  # "rnokpp" | "passport"
    id_value: str

    @classmethod
    def parse(cls, surname: str, id_kind: str, id_value: str) -> "Payer":
        """Validate everything; raises PayerError for the first field that is wrong."""
        errors = collect_errors(surname, id_kind, id_value)
        if errors:
            raise errors[0]
        return cls(normalize_surname(surname), id_kind, normalize_id(id_kind, id_value))

    @property
    def masked(self) -> str:
        return mask_payer(self.to_plain())

    def to_plain(self) -> dict:
        return {"surname": self.surname, "id_kind": self.id_kind, "id_value": self.id_value}


def collect_errors(surname: str, id_kind: str, id_value: str) -> list[PayerError]:
    errors = []
    try:
        normalize_surname(surname)
    except PayerError as exc:
        errors.append(exc)
    if id_kind not in ID_KINDS:
        errors.append(PayerError("id_kind", "kind"))
    else:
        try:
            normalize_id(id_kind, id_value)
        except PayerError as exc:
            errors.append(exc)
    return errors


def mask_surname(surname: str) -> str:
    """"Шевченко" -> "Ш******о"; one- or two-letter words keep only the first letter."""
    words = []
    for word in (surname or "").split(" "):
        if len(word) <= 2:
            words.append(word[:1] + "*" * (len(word) - 1))
        else:
            words.append(word[0] + "*" * (len(word) - 2) + word[-1])
    return " ".join(words)


MASK = "*"
ID_VISIBLE = 4


def mask_id(value: str) -> str:
    """"3652504575" -> "******4575"; passports and ID cards alike keep their last 4 characters."""
    if not value:
        return ""
    if len(value) <= ID_VISIBLE:
        return MASK * len(value)
    return MASK * (len(value) - ID_VISIBLE) + value[-ID_VISIBLE:]


def mask_payer(payer) -> str:
    """A payer (``Payer.to_plain()`` or the journal's ``payer`` dict) as screens show it."""
    if not payer:
        return ""
    surname = mask_surname(payer.get("surname", ""))
    code = mask_id(payer.get("id_value", ""))
    return ", ".join(part for part in (surname, code) if part)


def redacted_payer(payer) -> dict:
    """The journal's ``payer`` dict once its retention is over: masked, and marked so."""
    return {"surname": mask_surname(payer.get("surname", "")), "id_kind": payer.get("id_kind", ""),
            "id_value": mask_id(payer.get("id_value", "")), "redacted": True}
