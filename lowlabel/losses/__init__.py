"""Losses as small modules or pure functions: :mod:`.mmd` (multi-kernel MMD), :mod:`.universum`, ..."""
