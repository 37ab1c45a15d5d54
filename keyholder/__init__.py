"""What a key holder runs: one share of the sector pseudonym's threshold OPRF key, evaluated for
enrolled nodes on blinded elements only (issue 15; docs/explanation/sector-pseudonym.md)."""
