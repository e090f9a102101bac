"""The names of the shared candidate properties (contract §3.2).

Region custom field keys may not take these names. The candidates issue builds the model itself;
a test there keeps this list equal to that model's properties.
"""

from __future__ import annotations

READ_ONLY_PROPERTIES = (
    "id",
    "regionId",
    "archived",
    "archivedAt",
    "createdAt",
    "updatedAt",
    "privacyConsentAt",
)
INPUT_PROPERTIES = (
    "name",
    "email",
    "privacyConsent",
    "phone",
    "phase",
    "sectors",
    "functions",
    "qualifications",
    "priorEducation",
    "linkedinUrl",
    "dateOfBirth",
    "motivation",
    "notes",
    "address",
    "city",
    "postalCode",
    "outflowReason",
    "customFields",
    "curriculumVitae",
    "otherAttachments",
    "interactions",
)
SHARED_PROPERTIES = frozenset(READ_ONLY_PROPERTIES + INPUT_PROPERTIES)

# What a region may open to candidate self-service (contract §3.5). Left out on purpose: the email
# (it is the session's identity), staff-owned fields (phase, notes, outflowReason) and the
# fields with their own routes (interactions, attachments).
SELF_SERVICE_ELIGIBLE = frozenset(
    {
        "name",
        "phone",
        "privacyConsent",
        "sectors",
        "functions",
        "qualifications",
        "priorEducation",
        "linkedinUrl",
        "dateOfBirth",
        "motivation",
        "address",
        "city",
        "postalCode",
        "customFields",
    }
)
DEFAULT_SELF_SERVICE_FIELDS = ("phone", "privacyConsent", "motivation")
