"""The forms candidates are matched on (contract §3.2 find/upsert): e-mail case-insensitively, phone
numbers as E.164 (default country NL), or their digits when a number cannot be parsed."""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_COUNTRY = "NL"


def email_key(email: str) -> str:
    return email.strip().lower()


def phone_key(phone: str) -> str:
    try:
        number = phonenumbers.parse(phone, DEFAULT_COUNTRY)
    except phonenumbers.NumberParseException:
        number = None
    if number is not None and phonenumbers.is_possible_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return re.sub(r"\D", "", phone)
