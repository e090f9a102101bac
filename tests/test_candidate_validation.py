"""The candidate payload's rules (contract §3.2, §3.3, custom fields §3.6), on the models themselves.

The routes that use them arrive with the rest of the candidates issue; these rules are theirs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from onderwijsregio.candidates.normalize import email_key, phone_key
from onderwijsregio.candidates.schemas import candidate_models

DEFINITIONS: list[dict[str, Any]] = [
    {"key": "favoriteSubject", "label": "Vak", "type": "string", "required": True},
    {"key": "story", "label": "Verhaal", "type": "text", "required": False},
    {"key": "yearsExperience", "label": "Jaren", "type": "integer", "required": False},
    {"key": "hoursPerWeek", "label": "Uren", "type": "number", "required": False},
    {"key": "hasCar", "label": "Auto", "type": "boolean", "required": False},
    {"key": "availableFrom", "label": "Per", "type": "date", "required": False},
    {"key": "portfolio", "label": "Portfolio", "type": "url", "required": False},
    {"key": "workEmail", "label": "Werkmail", "type": "email", "required": False},
    {
        "key": "schoolType",
        "label": "Schooltype",
        "type": "select",
        "options": ["po", "vo"],
        "required": False,
    },
    {
        "key": "regions",
        "label": "Regio's",
        "type": "multiSelect",
        "options": ["Noord", "Zuid"],
        "required": False,
    },
]
CREATE, UPDATE = candidate_models(DEFINITIONS)


def valid(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Jan Jansen",
        "email": "jan@example.org",
        "privacyConsent": True,
        "customFields": {"favoriteSubject": "Wiskunde"},
    }
    body.update(changes)
    return body


def error_codes(model: type[BaseModel], body: Any) -> set[tuple[str, ...]]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    return {tuple(str(part) for part in error["loc"]) for error in refused.value.errors()}


def test_a_complete_candidate_is_accepted() -> None:
    body = valid(
        phone="06-12345678",
        phase="oriënteren",
        sectors=["Primair onderwijs", "Hoger onderwijs"],
        functions=["Docent / leraar"],
        qualifications=["Geen: gastdocentschap"],
        priorEducation="hbo bachelor",
        linkedinUrl="https://www.linkedin.com/in/jan",
        dateOfBirth="1990-03-24",
        motivation="m" * 10000,
        notes="n",
        address="Straat 1",
        city="Utrecht",
        postalCode="3511 AA",
        outflowReason="",
        customFields={
            "favoriteSubject": "Wiskunde",
            "story": "…",
            "yearsExperience": 3,
            "hoursPerWeek": 24.5,
            "hasCar": False,
            "availableFrom": "2026-09-01",
            "portfolio": "https://example.org/p",
            "workEmail": "j@school.nl",
            "schoolType": "vo",
            "regions": ["Noord", "Zuid"],
        },
        interactions=[
            {
                "type": "Inschrijving activiteit",
                "performedAt": "2026-03-24T10:15:00+01:00",
                "durationMinutes": 1440,
            }
        ],
    )
    candidate = CREATE.model_validate(body)
    assert candidate.model_dump(exclude_unset=True)["phase"] == "oriënteren"


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"name": None}, ("name",)),
        ({"name": ""}, ("name",)),
        ({"name": "x" * 201}, ("name",)),
        ({"email": "not-an-email"}, ("email",)),
        ({"privacyConsent": "true"}, ("privacyConsent",)),
        ({"privacyConsent": 1}, ("privacyConsent",)),
        ({"phone": "12345"}, ("phone",)),
        ({"phone": "1" * 16}, ("phone",)),
        ({"phone": "+31 6 " + "1" * 30}, ("phone",)),
        ({"phase": "orienteren"}, ("phase",)),
        ({"phase": "Nieuw"}, ("phase",)),
        ({"sectors": ["Primair onderwijs", "Primair onderwijs"]}, ("sectors",)),
        ({"sectors": "Primair onderwijs"}, ("sectors",)),
        ({"functions": ["Docent/leraar"]}, ("functions", "0")),
        ({"priorEducation": "HBO"}, ("priorEducation",)),
        ({"linkedinUrl": "linkedin.com/in/jan"}, ("linkedinUrl",)),
        ({"linkedinUrl": "ftp://example.org"}, ("linkedinUrl",)),
        ({"dateOfBirth": "1899-12-31"}, ("dateOfBirth",)),
        ({"dateOfBirth": (datetime.now(UTC) + timedelta(days=2)).date().isoformat()}, ("dateOfBirth",)),
        ({"dateOfBirth": "24-03-1990"}, ("dateOfBirth",)),
        ({"dateOfBirth": 638236800}, ("dateOfBirth",)),
        ({"motivation": "m" * 10001}, ("motivation",)),
        ({"postalCode": "1" * 17}, ("postalCode",)),
        ({"id": "cand_01ZZZZZZZZZZZZZZZZZZZZZZZZ"}, ("id",)),
        ({"createdAt": "2026-01-01T00:00:00Z"}, ("createdAt",)),
        ({"archived": True}, ("archived",)),
        ({"privacyConsentAt": "2026-01-01T00:00:00Z"}, ("privacyConsentAt",)),
        ({"colour": "blue"}, ("colour",)),
        ({"interactions": []}, ("interactions",)),
        (
            {"interactions": [{"type": "Telefonisch", "performedAt": "2026-03-24T10:15:00Z"}] * 11},
            ("interactions",),
        ),
        (
            {"interactions": [{"type": "Bellen", "performedAt": "2026-03-24T10:15:00Z"}]},
            ("interactions", "0", "type"),
        ),
        (
            {"interactions": [{"type": "Telefonisch", "performedAt": "2026-03-24T10:15:00"}]},
            ("interactions", "0", "performedAt"),
        ),
        (
            {
                "interactions": [
                    {"type": "Telefonisch", "performedAt": "2026-03-24T10:15:00Z", "durationMinutes": "30"}
                ]
            },
            ("interactions", "0", "durationMinutes"),
        ),
        (
            {
                "interactions": [
                    {"type": "Telefonisch", "performedAt": "2026-03-24T10:15:00Z", "durationMinutes": 1441}
                ]
            },
            ("interactions", "0", "durationMinutes"),
        ),
    ],
)
def test_shared_property_rules(changes: dict[str, Any], where: tuple[str, ...]) -> None:
    assert where in error_codes(CREATE, valid(**changes))


def test_name_email_and_consent_are_required_on_create() -> None:
    for missing in ("name", "email", "privacyConsent"):
        body = valid()
        del body[missing]
        assert (missing,) in error_codes(CREATE, body)


@pytest.mark.parametrize(
    ("custom", "where"),
    [
        ({}, ("customFields", "favoriteSubject")),  # required on create
        ({"favoriteSubject": "x", "unknownKey": 1}, ("customFields", "unknownKey")),
        ({"favoriteSubject": 5}, ("customFields", "favoriteSubject")),
        ({"favoriteSubject": "x" * 1001}, ("customFields", "favoriteSubject")),
        ({"favoriteSubject": "x", "yearsExperience": "3"}, ("customFields", "yearsExperience")),
        ({"favoriteSubject": "x", "yearsExperience": 2.5}, ("customFields", "yearsExperience")),
        ({"favoriteSubject": "x", "hoursPerWeek": "24"}, ("customFields", "hoursPerWeek")),
        ({"favoriteSubject": "x", "hasCar": "false"}, ("customFields", "hasCar")),
        ({"favoriteSubject": "x", "availableFrom": "1-9-2026"}, ("customFields", "availableFrom")),
        ({"favoriteSubject": "x", "portfolio": "example.org"}, ("customFields", "portfolio")),
        ({"favoriteSubject": "x", "workEmail": "nope"}, ("customFields", "workEmail")),
        ({"favoriteSubject": "x", "schoolType": "PO"}, ("customFields", "schoolType")),
        ({"favoriteSubject": "x", "regions": ["Noord", "Noord"]}, ("customFields", "regions")),
        ({"favoriteSubject": "x", "regions": ["Oost"]}, ("customFields", "regions", "0")),
    ],
)
def test_custom_fields_follow_their_definitions(custom: dict[str, Any], where: tuple[str, ...]) -> None:
    assert any(
        location[: len(where)] == where for location in error_codes(CREATE, valid(customFields=custom))
    )


def test_customfields_can_be_left_out_when_none_is_required() -> None:
    create, _ = candidate_models([{"key": "optional", "label": "O", "type": "string", "required": False}])
    create.model_validate({"name": "A", "email": "a@example.org", "privacyConsent": False})
    assert ("customFields",) in error_codes(
        CREATE, {"name": "A", "email": "a@example.org", "privacyConsent": False}
    )


def test_update_semantics() -> None:
    patch = UPDATE.model_validate({"city": None, "customFields": {"hasCar": None, "yearsExperience": 4}})
    assert patch.model_dump(exclude_unset=True) == {
        "city": None,
        "customFields": {"hasCar": None, "yearsExperience": 4},
    }
    refused: list[dict[str, Any]] = [
        {},
        {"name": None},
        {"email": None},
        {"privacyConsent": None},
        {"interactions": []},
        {"curriculumVitae": []},
        {"phase": "klaar"},
        {"id": "cand_x"},
    ]
    for body in refused:
        with pytest.raises(ValidationError):
            UPDATE.model_validate(body)


def test_matching_forms_of_email_and_phone() -> None:
    assert email_key("  Jan.Jansen@Example.ORG ") == "jan.jansen@example.org"
    for notation in ("06-12345678", "+31 6 1234 5678", "0031612345678", "(06) 1234 5678", "+31612345678"):
        assert phone_key(notation) == "+31612345678"
    assert phone_key("12-34") == "1234"  # not a number anywhere: its digits
    assert phone_key("+32 470 12 34 56") == "+32470123456"


def test_the_models_describe_themselves_as_json_schema() -> None:
    schema = CREATE.model_json_schema()
    assert {"name", "email", "privacyConsent"} <= set(schema["required"])
    phase = schema["properties"]["phase"]
    assert "oriënteren" in str(phase)
    assert schema["additionalProperties"] is False
    assert "InteractionInput" in schema["$defs"]
    update_schema = UPDATE.model_json_schema()
    assert "interactions" not in update_schema["properties"]
    assert "required" not in update_schema


def test_the_property_list_regions_check_against_matches_the_model() -> None:
    """Custom field keys may not clash with shared properties: that list must be the model's."""
    from onderwijsregio.candidates.properties import INPUT_PROPERTIES, SELF_SERVICE_ELIGIBLE

    attachment_fields = {"curriculumVitae", "otherAttachments"}  # added by the attachments issue
    assert set(CREATE.model_fields) | attachment_fields == set(INPUT_PROPERTIES)
    assert set(SELF_SERVICE_ELIGIBLE) <= set(UPDATE.model_fields)
