"""Evaluation: scores of colour against the original, and the old-film damage models are tested under."""
