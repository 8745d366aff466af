"""dsl stage of dasc."""
