"""runtime stage of dasc."""
