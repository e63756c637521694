"""kagura."""
