"""Candidate input (contract §3.2): every shared property with its type and limits, and the
region's custom fields typed from its definitions (§3.6). The same models produce /schema (§3.1).

No coercion anywhere: "true" is not a boolean and "30" is not a number. Unknown and read-only
properties are refused (no mass assignment).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, Self

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    create_model,
    model_validator,
)

from onderwijsregio.attachments.schemas import AttachmentInputs
from onderwijsregio.clock import utc_now
from onderwijsregio.interactions.schemas import InteractionInput
from onderwijsregio.validation import STRICT_INPUT

Phase = Literal["nieuw", "matchen", "oriënteren", "voorbereiden", "in opleiding", "werkzaam", "uitgestroomd"]
Sector = Literal[
    "Primair onderwijs",
    "Voortgezet onderwijs",
    "Speciaal onderwijs",
    "Middelbaar beroepsonderwijs",
    "Hoger onderwijs",
    "Praktijkonderwijs",
]
Function = Literal[
    "Docent / leraar",
    "Instructeur (mbo)",
    "OOP",
    "Ondersteuning",
    "Leerlingenzorg",
    "Midden management",
    "Schoolleiding",
    "Anders",
]
Qualification = Literal[
    "Primair onderwijs",
    "Beperkt tweedegraads",
    "Tweedegraads",
    "Eerstegraads",
    "PDG",
    "BKO/BDB",
    "Kwalificatie onderwijs ondersteunend personeel",
    "Kwalificatie Instructeur (MBO)",
    "Geen: gastdocentschap",
    "Pabo",
    "Onbekend",
    "Nog geen idee",
    "Niet van toepassing",
]
PriorEducation = Literal[
    "geen",
    "praktijkonderwijs",
    "vmbo-bl",
    "vmbo-kl",
    "vmbo-gl",
    "vmbo-tl",
    "vmbo",
    "havo",
    "vwo",
    "mbo entree",
    "mbo 2",
    "mbo 3",
    "mbo 4",
    "mbo",
    "associate degree",
    "hbo propedeuse",
    "hbo bachelor",
    "hbo master",
    "hbo",
    "wo bachelor",
    "wo master",
    "wo",
    "PhD",
]
EARLIEST_BIRTH_DATE = date(1900, 1, 1)


def _text(limit: int, *, at_least: int = 0) -> Any:
    return Annotated[str, StringConstraints(strict=True, min_length=at_least, max_length=limit)]


def _email(value: str) -> str:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise ValueError("Not a valid e-mail address") from None
    return value


def _phone(value: str) -> str:
    if not 6 <= len(re.sub(r"\D", "", value)) <= 15:
        raise ValueError("A phone number holds 6 to 15 digits")
    return value


def _web_address(value: str) -> str:
    if not re.match(r"^https?://[^\s/?#]+", value):
        raise ValueError("An absolute http(s) URL")
    return value


def _iso_date(value: Any) -> Any:
    """Only the YYYY-MM-DD form: no timestamps, no numbers (no coercion)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("A date as YYYY-MM-DD")
    return value


def _born_in_range(value: date) -> date:
    if value < EARLIEST_BIRTH_DATE or value > utc_now().date():
        raise ValueError("A date of birth from 1900-01-01 up to today")
    return value


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("Every value may appear once")
    return values


def _unique_list(item: Any, limit: int) -> Any:
    return Annotated[
        list[item], Field(max_length=limit, json_schema_extra={"uniqueItems": True}), AfterValidator(_unique)
    ]


Name = _text(200, at_least=1)
EMAIL_LENGTH, PHONE_LENGTH = 254, 32
Email = Annotated[
    str,
    StringConstraints(strict=True, min_length=3, max_length=EMAIL_LENGTH),
    AfterValidator(_email),
    Field(json_schema_extra={"format": "email"}),
]
Phone = Annotated[str, StringConstraints(strict=True, max_length=PHONE_LENGTH), AfterValidator(_phone)]
WebAddress = Annotated[
    str,
    StringConstraints(strict=True, max_length=500),
    AfterValidator(_web_address),
    Field(json_schema_extra={"format": "uri"}),
]
IsoDate = Annotated[date, BeforeValidator(_iso_date), Field(json_schema_extra={"format": "date"})]
BirthDate = Annotated[IsoDate, AfterValidator(_born_in_range)]

# Shared properties other than the three a create requires: name, email, privacyConsent.
OPTIONAL_PROPERTIES: dict[str, Any] = {
    "phone": Phone,
    "phase": Phase,
    "sectors": _unique_list(Sector, 6),
    "functions": _unique_list(Function, 8),
    "qualifications": _unique_list(Qualification, 13),
    "priorEducation": PriorEducation,
    "linkedinUrl": WebAddress,
    "dateOfBirth": BirthDate,
    "motivation": _text(10000),
    "notes": _text(10000),
    "address": _text(200),
    "city": _text(100),
    "postalCode": _text(16),
    "outflowReason": _text(1000),
}
CUSTOM_VALUE_TYPES: dict[str, Any] = {
    "string": _text(1000),
    "text": _text(10000),
    "integer": StrictInt,
    "number": StrictInt | StrictFloat,
    "boolean": StrictBool,
    "date": IsoDate,
    "url": Annotated[
        str,
        StringConstraints(strict=True, max_length=2000),
        AfterValidator(_web_address),
        Field(json_schema_extra={"format": "uri"}),
    ],
    "email": Email,
}


def custom_value_type(definition: dict[str, Any]) -> Any:
    kind = definition["type"]
    if kind == "select":
        return Literal[tuple(definition["options"])]
    if kind == "multiSelect":
        return _unique_list(Literal[tuple(definition["options"])], len(definition["options"]))
    return CUSTOM_VALUE_TYPES[kind]


def custom_fields_model(definitions: list[dict[str, Any]], *, update: bool) -> type[BaseModel]:
    """The region's `customFields` object: its keys only, typed; required ones required on create.

    In an update every key is optional and `null` clears it (customFields merge per key).
    """
    fields: dict[str, Any] = {}
    for definition in definitions:
        value_type = custom_value_type(definition)
        meta = Field(
            description=definition.get("description") or definition["label"], title=definition["label"]
        )
        if update:
            fields[definition["key"]] = (
                value_type | None,
                Field(default=None, description=meta.description, title=meta.title),
            )
        elif definition.get("required"):
            fields[definition["key"]] = (value_type, meta)
        else:
            fields[definition["key"]] = (
                value_type | None,
                Field(default=None, description=meta.description, title=meta.title),
            )
    name = "CustomFieldsUpdate" if update else "CustomFields"
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    return model


class CandidateUpdateBase(BaseModel):
    """Patch semantics (§3.2): at least one property; `null` clears an optional one (the required
    ones are typed without `null`, so the schema says so too)."""

    model_config = STRICT_INPUT | {"json_schema_extra": {"minProperties": 1}}

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one property to change")
        return self


def _omittable(kind: Any) -> tuple[Any, Any]:
    """A property an update may leave out but not clear: no `null`, and no `default` in the schema."""
    return (kind, Field(default_factory=lambda: None))  # a factory, as a plain default would show


def candidate_models(definitions: list[dict[str, Any]]) -> tuple[type[BaseModel], type[BaseModel]]:
    """(create, update) models of one region's candidate payload."""
    create_custom = custom_fields_model(definitions, update=False)
    update_custom = custom_fields_model(definitions, update=True)
    needs_custom = any(d.get("required") for d in definitions)
    optional: dict[str, Any] = {name: (kind | None, None) for name, kind in OPTIONAL_PROPERTIES.items()}
    inline_interactions = Annotated[list[InteractionInput], Field(min_length=1, max_length=10)]
    create_fields: dict[str, Any] = {
        "name": (Name, ...),
        "email": (Email, ...),
        "privacyConsent": (StrictBool, ...),
        **optional,
        "customFields": (create_custom, ...) if needs_custom else (create_custom | None, None),
        "interactions": (inline_interactions | None, None),
        "curriculumVitae": (AttachmentInputs | None, None),
        "otherAttachments": (AttachmentInputs | None, None),
    }
    update_fields: dict[str, Any] = {
        "name": _omittable(Name),
        "email": _omittable(Email),
        "privacyConsent": _omittable(StrictBool),
        **optional,
        "customFields": _omittable(update_custom),  # its keys clear one by one; the whole stays
    }
    create: type[BaseModel] = create_model("CandidateCreate", __config__=STRICT_INPUT, **create_fields)
    update: type[BaseModel] = create_model("CandidateUpdate", __base__=CandidateUpdateBase, **update_fields)
    return create, update
