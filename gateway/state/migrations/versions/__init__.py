"""The migration scripts, in order of their revision numbers."""
