"""ops stage of dasc."""
