"""schema.graphql is generated from the code and holds the API contract's names."""

from __future__ import annotations

from pathlib import Path

from api.graphql import build_schema

SCHEMA = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_schema_file_is_current() -> None:
    assert SCHEMA.read_text() == build_schema().as_str() + "\n", (
        "schema.graphql drifted: run `leadflow schema -o schema.graphql`"
    )


def test_contract_names_are_present() -> None:
    sdl = SCHEMA.read_text()
    for name in [
        "interface Node",
        "type UserError",
        "enum UserErrorCode",
        "type Viewer",
        "type Settings",
        "type Account implements Node",
        "type Contact implements Node",
        "type Lead implements Node",
        "type MatchingStrategy implements Node",
        "input FormSubmissionInput",
        "type ImportPayload",
        "enum LeadSource",
        "enum LeadStage",
        "enum LeadStatusReason",
        "enum LeadState",
        "input LeadFilter",
        "input LeadOrder",
        "enum OrderDirection",
        "type DeletePayload",
        "setFeatureSwitch(",
        "createAccount(",
        "updateAccount(",
        "createContact(",
        "updateContact(",
        "createLead(",
        "updateLead(",
        "submitForm(",
        "importRecords(",
        "createMatchingStrategy(",
        "updateMatchingStrategy(",
        "deleteMatchingStrategy(",
        "matchingStrategies(",
        "viewer:",
        "settings:",
        "node(id: ID!): Node",
        "leads(filter: LeadFilter",
        "totalCount: Int!",
        "hasNextPage: Boolean!",
        "endCursor: String",
    ]:
        assert name in sdl, name
