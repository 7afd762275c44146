"""Real entropy coding: frozen integer tables, bit strings and the .mnc file format."""
