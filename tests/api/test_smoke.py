from tests.conftest import Api


async def test_create_and_read_lead(api: Api) -> None:
    data = await api("""mutation { createLead(input: {topic: "Demo", email: " A@B.io "}) { lead { id email state stage source fullName scorable } userErrors { code message } } }""")
    lead = data["createLead"]["lead"]
    assert lead["email"] == "a@b.io"
    got = await api("query($id: ID!) { lead(id: $id) { topic } leads(first: 5) { totalCount edges { cursor node { id } } } }", {"id": lead["id"]})
    assert got["lead"]["topic"] == "Demo"
    assert got["leads"]["totalCount"] == 1
