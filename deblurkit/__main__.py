"""``python -m deblurkit`` (also what ``torchrun -m deblurkit`` runs)."""

from .cli import main

main()
