"""LeadFlow's domain: pure Python rules about contacts, accounts, leads and matching."""
