"""spaces stage of dasc."""
