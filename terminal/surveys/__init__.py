"""Tablet quality surveys: definitions (versioned, branching), the answer store with
anti-gaming, reports and charts. The web side lives in ``terminal.views.survey``."""
