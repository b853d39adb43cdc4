"""Scripts and configs that reproduce the paper's experiments and go past them."""
