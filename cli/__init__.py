"""cli stage of dasc."""
