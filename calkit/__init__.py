"""calkit."""
