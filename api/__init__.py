"""LeadFlow's GraphQL API, HTTP app and command line."""
