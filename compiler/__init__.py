"""compiler stage of dasc."""
