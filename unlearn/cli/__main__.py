"""``python -m unlearn.cli``: the ``unlearn`` command."""

from unlearn.cli import main

main()
