"""``dfo train | evaluate | plot | render``: each module exposes ``add_arguments`` and ``run``."""
