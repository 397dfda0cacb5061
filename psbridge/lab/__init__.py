"""The embedded lab: a faithful twin of a CRM deployment and its cloud, on loopback."""
