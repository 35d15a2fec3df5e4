"""The ``lowlabel`` command line (DESIGN.md section 4)."""
