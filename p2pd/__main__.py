"""
C{python -m p2pd ...}: the same as the C{p2pd} command.
"""

from p2pd.cli import main

main()
