"""Style transfer by the baselines of seed 004: Gatys et al.'s per-image optimisation (``gatys``)
and what every method hands the ``stylize`` command (``result``)."""
