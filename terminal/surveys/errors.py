"""Errors the survey stores raise for service mode (the tablet API's are ``answers.Rejected``)."""
from __future__ import annotations


class SurveyInputError(ValueError):
    """Bad input from service mode (a clear message for the form)."""


class BurstReviewError(SurveyInputError):
    """A review that cannot be recorded; ``code`` says why (nothing was changed)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)
